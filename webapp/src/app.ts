/**
 * The screens: log in, today's work orders, one work order, conflicts. Routing
 * is by hash (`#/`, `#/all`, `#/wo/<id>`, `#/conflicts`) so that the server
 * only ever serves /app/ itself.
 */
import {
  ApiError,
  ConflictSettled,
  type Data,
  FileNotReady,
  type FileReference,
  type LocalConflict,
  NetworkError,
  type PersistenceState,
  StaleResolution,
  StorageFull,
  type SyncClient,
  type TabCoordinator,
  ValidationError,
  requestPersistence,
} from "./client.ts";
import { h, hasUnsavedInput, localDate, mount, timeOf } from "./dom.ts";
import { listenForPush, type PushState, registerPush, takeWakeMark } from "./push.ts";
import { storageFullText, SyncLoop, type SyncReason, type SyncState } from "./sync.ts";

const WORK_ORDER = "fieldwork.workorder";
const CUSTOMER = "fieldwork.customer";
const NOTE = "fieldwork.note";

export const STATUSES: [string, string][] = [
  ["open", "Open"],
  ["scheduled", "Scheduled"],
  ["in_progress", "In progress"],
  ["done", "Done"],
  ["cancelled", "Cancelled"],
];
const STATUS_LABEL = new Map(STATUSES);
const FIELD_LABEL: Record<string, string> = {
  title: "Title",
  description: "Description",
  status: "Status",
  priority: "Priority",
  scheduled_for: "Scheduled for",
  due_at: "Due",
  estimated_hours: "Estimated hours",
  customer: "Customer",
  body: "Note",
  name: "Name",
  phone: "Phone",
  email: "Email",
  address: "Address",
};

type Route = { view: "today" } | { view: "all" } | { view: "order"; id: string } | { view: "conflicts" };

function parseRoute(hash: string): Route {
  const path = hash.replace(/^#\/?/, "");
  if (path === "all") return { view: "all" };
  if (path === "conflicts") return { view: "conflicts" };
  const order = /^wo\/([0-9a-f-]{36})$/i.exec(path);
  if (order?.[1]) return { view: "order", id: order[1] };
  return { view: "today" };
}

function show(value: unknown): string {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "string" && STATUS_LABEL.has(value)) return STATUS_LABEL.get(value) as string;
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function errorText(error: unknown): string {
  if (error instanceof StorageFull) return storageFullText();
  if (error instanceof ValidationError) return error.message;
  if (error instanceof NetworkError) return "The server cannot be reached: try again when online.";
  if (error instanceof ApiError) return error.detail || error.code;
  return error instanceof Error ? error.message : String(error);
}

export class App {
  private readonly main: HTMLElement;
  private readonly bar: HTMLElement;
  private readonly nav: HTMLElement;
  private loop: SyncLoop | null = null;
  private flash: { text: string; kind: "info" | "error" } | null = null;
  /** The fields at stake per conflict, as the server described them. */
  private readonly stakes = new Map<string, string[]>();
  /** The browser's answer to `requestPersistence()` (asked once per page, after login). */
  private storage: PersistenceState | null = null;
  /** Web Push, when the server configured it (push.ts). */
  private push: PushState | null = null;

  constructor(
    private readonly client: SyncClient,
    private readonly tabs: TabCoordinator,
    private readonly root: HTMLElement,
    private readonly persistent: boolean,
  ) {
    this.nav = h("nav", { id: "nav" });
    this.bar = h("footer", { id: "status-bar", role: "status" });
    this.main = h("main", { id: "main" });
    mount(root, h("header", { id: "top" }, h("h1", {}, "Field jobs"), this.nav), this.bar, this.main);
    window.addEventListener("hashchange", () => void this.render());
  }

  async start(): Promise<void> {
    // Another tab synced, edited, logged in or out: show it.
    this.tabs.onChange(() => void this.heard());
    // The service worker relays a push message: the server has news.
    listenForPush(() => void this.loop?.syncNow("push"));
    // A push came while no window was open: sync at once (waiting for another tab's sync if one runs).
    const woken = await takeWakeMark();
    if (await this.loggedIn()) this.startLoop(woken ? "woken" : "start");
    await this.render();
  }

  /** Another tab changed the shared store. */
  private async heard(): Promise<void> {
    const loggedIn = await this.loggedIn();
    if (loggedIn && !this.loop) this.startLoop();
    if (!loggedIn && this.loop) {
      this.loop.stop();
      this.loop = null;
    }
    await this.loop?.refresh();
    await this.render(true);
  }

  /** `?poll=off` (or `localStorage["webapp.poll"] = "off"`): no periodic sync; `?poll=<seconds>`: another period. */
  private pollMs(): number | null {
    const setting = new URLSearchParams(location.search).get("poll") ?? localStorage.getItem("webapp.poll");
    if (setting === null || setting === "") return 30_000;
    if (setting === "off" || setting === "0") return null;
    const seconds = Number(setting);
    return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 30_000;
  }

  private async loggedIn(): Promise<boolean> {
    return (await this.client.store.get("token")) !== null;
  }

  private startLoop(first: SyncReason = "start"): void {
    if (this.loop) return;
    this.loop = new SyncLoop(this.client, this.tabs, {
      intervalMs: this.pollMs(),
      onData: () => {
        // Pulled or pushed something: redraw, unless the user is typing.
        void this.render(true);
      },
      onLoggedOut: () => void this.logOut(),
    });
    this.loop.subscribe((state) => this.renderBar(state));
    this.loop.start(first);
    void this.deviceSettings();
  }

  /** Once per page, logged in: ask to keep the storage, and subscribe to push if the server can send any. */
  private async deviceSettings(ask = false): Promise<void> {
    if (this.storage === null) {
      this.storage = this.persistent ? await requestPersistence() : "unsupported";
      if (this.loop) this.renderBar(this.loop.state);
    }
    if (this.push === null || ask) {
      this.push = await registerPush(this.client, { ask });
      if (this.loop) this.renderBar(this.loop.state);
    }
  }

  private async logOut(): Promise<void> {
    this.loop?.stop();
    this.loop = null;
    // The data stays for this user's next login; another user starts afresh.
    await this.client.store.set("token", null);
    this.client.api.token = null;
    this.tabs.announce();
    location.hash = "#/";
    await this.render();
  }

  private say(text: string, kind: "info" | "error" = "info"): void {
    this.flash = { text, kind };
  }

  // --- chrome -----------------------------------------------------------------------

  private renderBar(state: SyncState): void {
    const pending =
      state.pending === 0 ? "No pending changes" : `${state.pending} pending change${state.pending === 1 ? "" : "s"}`;
    mount(
      this.bar,
      h("span", { id: "net", class: state.online ? "online" : "offline" }, state.online ? "Online" : "Offline"),
      h("span", { id: "pending", class: state.pending ? "busy" : "" }, pending),
      state.conflicts > 0
        ? h("a", { id: "conflict-count", href: "#/conflicts", class: "warn" }, `${state.conflicts} conflict${state.conflicts === 1 ? "" : "s"}`)
        : null,
      state.rejections > 0
        ? h("a", { id: "rejection-count", href: "#/conflicts", class: "warn" }, `${state.rejections} refused`)
        : null,
      h("span", { id: "last-sync" }, state.syncing ? "Syncing…" : `Last sync: ${timeOf(state.lastSync)}`),
      state.error ? h("span", { id: "sync-error", class: "error" }, state.error) : null,
      this.storage === null
        ? null
        : h(
            "span",
            { id: "storage", class: this.storage === "persisted" ? "" : "muted", title: `navigator.storage.persist(): ${this.storage}` },
            !this.persistent
              ? "Storage: this page only"
              : this.storage === "persisted"
                ? "Storage: persisted"
                : "Storage: may be cleared by the browser",
          ),
      this.push === null || this.push === "not-configured"
        ? null
        : this.push === "needs-permission"
          ? h("button", { id: "enable-push", type: "button", class: "link", onclick: () => void this.deviceSettings(true) }, "Enable wake-ups")
          : h("span", { id: "push", class: "muted" }, this.push === "subscribed" ? "Wake-ups: on" : `Wake-ups: ${this.push}`),
      h("button", { id: "sync-now", type: "button", disabled: state.syncing, onclick: () => void this.loop?.syncNow("button") }, "Sync now"),
    );
    const link = this.nav.querySelector("#nav-conflicts");
    if (link) link.textContent = state.conflicts ? `Conflicts (${state.conflicts})` : "Conflicts";
  }

  private async renderNav(): Promise<void> {
    if (!(await this.loggedIn())) {
      mount(this.nav);
      return;
    }
    const conflicts = this.loop?.state.conflicts ?? 0;
    mount(
      this.nav,
      h("a", { href: "#/" }, "Today"),
      h("a", { href: "#/all" }, "All"),
      h("a", { id: "nav-conflicts", href: "#/conflicts" }, conflicts ? `Conflicts (${conflicts})` : "Conflicts"),
      h("span", { class: "user" }, (await this.client.username()) ?? ""),
      h("button", { type: "button", class: "link", onclick: () => void this.logOut() }, "Log out"),
    );
  }

  private flashBox(): HTMLElement | null {
    if (!this.flash) return null;
    const box = h("p", { id: "flash", class: `flash ${this.flash.kind}` }, this.flash.text);
    this.flash = null;
    return box;
  }

  private photoUrl: string | null = null;

  /** A work order's photo: from this device, or fetched once from the server, then kept. */
  private async showPhoto(box: HTMLElement, ref: FileReference): Promise<void> {
    try {
      const bytes = await this.client.files.fetch(ref);
      if (this.photoUrl) URL.revokeObjectURL(this.photoUrl);
      this.photoUrl = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: ref.content_type }));
      mount(box, h("img", { id: "photo-img", src: this.photoUrl, alt: ref.name }), h("p", { class: "muted" }, ref.name));
    } catch (error) {
      const text =
        error instanceof FileNotReady
          ? "The photo is not on the server yet: it shows here once the device that took it has sent it."
          : errorText(error);
      mount(box, h("p", { id: "photo-state", class: "muted" }, text));
    }
  }

  /**
   * Draw the page for the route. A `background` redraw (data came in) never
   * replaces a page the user is typing in: neither when it starts nor when
   * its view is ready, since building it awaits the store and the user may
   * start typing meanwhile. The next redraw (their submit, a route change,
   * the next sync) brings the page up to date.
   */
  async render(background = false): Promise<void> {
    if (background && hasUnsavedInput(this.main)) return;
    await this.renderNav();
    if (!(await this.loggedIn())) {
      this.bar.hidden = true;
      mount(this.main, this.flashBox(), this.loginView());
      return;
    }
    this.bar.hidden = false;
    const route = parseRoute(location.hash);
    let view: HTMLElement;
    if (route.view === "order") view = await this.orderView(route.id);
    else if (route.view === "conflicts") view = await this.conflictsView();
    else view = await this.listView(route.view === "all");
    if (background && hasUnsavedInput(this.main)) return;
    mount(this.main, this.flashBox(), view);
  }

  // --- log in -------------------------------------------------------------------

  private loginView(): HTMLElement {
    const username = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
    const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
    const message = h("p", { id: "login-error", class: "error", role: "alert" });
    const button = h("button", { type: "submit" }, "Log in");
    const form = h(
      "form",
      { id: "login", class: "card" },
      h("h2", {}, "Log in"),
      h("label", { for: "username" }, "Username"),
      username,
      h("label", { for: "password" }, "Password"),
      password,
      button,
      message,
      this.persistent ? null : h("p", { class: "hint" }, "This browser keeps your data only until the page is closed."),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void (async () => {
        button.disabled = true;
        message.textContent = "";
        try {
          await this.client.login(username.value.trim(), password.value);
          await this.client.registerDevice({ platform: "web", name: `Web app (${navigator.platform || "browser"})` });
          this.tabs.announce(); // the other tabs, showing the login, follow
          this.startLoop();
          location.hash = "#/";
          await this.render();
        } catch (error) {
          message.textContent =
            error instanceof ApiError && error.code === "invalid_credentials"
              ? "Wrong username or password."
              : error instanceof NetworkError || !navigator.onLine
                ? "You are offline: logging in needs the network."
                : errorText(error);
          button.disabled = false;
        }
      })();
    });
    return form;
  }

  // --- the list -------------------------------------------------------------------

  private async customers(): Promise<Map<string, Data>> {
    return new Map((await this.client.all(CUSTOMER)).map((c) => [c.id, c.data]));
  }

  private async listView(all: boolean): Promise<HTMLElement> {
    const today = localDate();
    const orders = await this.client.all(WORK_ORDER);
    const customers = await this.customers();
    const active = (s: unknown): boolean => s !== "done" && s !== "cancelled";
    const shown = orders
      .filter(({ data }) =>
        all ? true : data["scheduled_for"] === today || (!data["scheduled_for"] && active(data["status"])),
      )
      .sort((a, b) =>
        `${a.data["scheduled_for"] ?? "9999"} ${a.data["title"]}`.localeCompare(`${b.data["scheduled_for"] ?? "9999"} ${b.data["title"]}`),
      );
    const pending = this.loop?.state.pendingObjects ?? new Set<string>();
    const synced = (await this.client.status()).lastSync !== null;
    return h(
      "section",
      { id: "orders" },
      h("h2", {}, all ? "All work orders" : `Today, ${new Date().toLocaleDateString()}`),
      h(
        "p",
        { class: "hint" },
        all
          ? "Every work order of yours and your team's, by date."
          : "Scheduled for today, and open ones without a date.",
      ),
      shown.length === 0
        ? h("p", { class: "empty" }, synced ? "Nothing here." : "Loading… (the first sync needs the network)")
        : h(
            "ul",
            { class: "orders" },
            shown.map(({ id, data }) =>
              h(
                "li",
                { class: "order", "data-id": id },
                h(
                  "a",
                  { href: `#/wo/${id}` },
                  h("span", { class: "title" }, show(data["title"])),
                  h("span", { class: "customer" }, show(customers.get(String(data["customer"]))?.["name"])),
                  h("span", { class: `status status-${String(data["status"])}` }, show(data["status"])),
                  h("span", { class: "date" }, show(data["scheduled_for"])),
                  pending.has(`${WORK_ORDER} ${id}`) ? h("span", { class: "badge" }, "not synced") : null,
                ),
              ),
            ),
          ),
    );
  }

  // --- one work order -----------------------------------------------------------------

  private async orderView(id: string): Promise<HTMLElement> {
    const order = await this.client.get(WORK_ORDER, id);
    if (order === null) {
      return h("section", {}, h("p", { class: "empty" }, "This work order is not (or no longer) here."), h("a", { href: "#/" }, "Back"));
    }
    const customer = order["customer"] ? await this.client.get(CUSTOMER, String(order["customer"])) : null;
    const notes = (await this.client.all(NOTE))
      .filter((n) => n.data["work_order"] === id)
      .sort((a, b) => Number(Boolean(b.data["pinned"])) - Number(Boolean(a.data["pinned"])));
    const pending = this.loop?.state.pendingObjects ?? new Set<string>();
    const conflicts = (await this.client.conflicts("open")).filter((c) => c.objectId === id);

    const edit = async (changes: Data, done: string): Promise<void> => {
      try {
        await this.client.update(WORK_ORDER, id, changes);
        this.tabs.announce();
        this.say(done);
      } catch (error) {
        this.say(errorText(error), "error");
      }
      this.loop?.edited();
      await this.render();
    };

    const description = h("textarea", { id: "description", rows: 4, "aria-label": "Description", value: order["description"] ?? "" });
    const photo = (order["photo"] ?? null) as FileReference | null;
    const photoView = h("div", { id: "photo-view" }, h("p", { class: "muted" }, photo ? `${photo.name}…` : "No photo yet."));
    if (photo) void this.showPhoto(photoView, photo);
    const picker = h("input", { type: "file", id: "photo-input", accept: "image/*", capture: "environment", class: "visually-hidden" });
    picker.addEventListener("change", () => {
      const file = picker.files?.[0];
      if (!file) return;
      void (async () => {
        try {
          // Kept on this device and queued: the edit syncs now, the bytes after it.
          const ref = await this.client.files.attach(file, { name: file.name });
          await edit({ photo: ref }, "Photo attached.");
        } catch (error) {
          this.say(errorText(error), "error");
          await this.render();
        }
      })();
    });
    const noteBody = h("textarea", { id: "new-note", rows: 3, "aria-label": "New note", placeholder: "What did you find, what did you do?" });

    return h(
      "section",
      { id: "order", "data-id": id },
      h("a", { href: "#/", class: "back" }, "← Today"),
      h("h2", { id: "order-title" }, show(order["title"])),
      conflicts.length
        ? h("p", { class: "flash error" }, "This work order has a conflict to settle. ", h("a", { href: "#/conflicts" }, "Settle it"))
        : null,
      pending.has(`${WORK_ORDER} ${id}`) ? h("p", { class: "badge" }, "Changes not synced yet") : null,
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Customer"),
        h("dd", { id: "order-customer" }, show(customer?.["name"])),
        customer?.["address"] ? [h("dt", {}, "Address"), h("dd", {}, show(customer["address"]))] : null,
        customer?.["phone"] ? [h("dt", {}, "Phone"), h("dd", {}, h("a", { href: `tel:${String(customer["phone"])}` }, show(customer["phone"])))] : null,
        h("dt", {}, "Status"),
        h("dd", { id: "order-status", class: `status status-${String(order["status"])}` }, show(order["status"])),
        h("dt", {}, "Scheduled for"),
        h("dd", {}, show(order["scheduled_for"])),
        h("dt", {}, "Priority"),
        h("dd", {}, show(order["priority"])),
        order["estimated_hours"] != null ? [h("dt", {}, "Estimated hours"), h("dd", {}, show(order["estimated_hours"]))] : null,
      ),
      h(
        "div",
        { class: "statuses", role: "group", "aria-label": "Change status" },
        STATUSES.map(([value, label]) =>
          h(
            "button",
            {
              type: "button",
              "data-status": value,
              class: order["status"] === value ? "current" : "",
              disabled: order["status"] === value,
              onclick: () => void edit({ status: value }, `Status: ${label}.`),
            },
            label,
          ),
        ),
      ),
      h(
        "form",
        {
          class: "card",
          onsubmit: (event: Event) => {
            event.preventDefault();
            void edit({ description: description.value }, "Description saved.");
          },
        },
        h("h3", {}, "Description"),
        description,
        h("button", { type: "submit" }, "Save description"),
      ),
      h(
        "section",
        { class: "card", id: "photo" },
        h("h3", {}, "Photo"),
        photoView,
        h("label", { for: "photo-input", class: "button" }, photo ? "Replace the photo" : "Attach a photo"),
        picker,
      ),
      h(
        "section",
        { class: "card", id: "notes" },
        h("h3", {}, `Notes (${notes.length})`),
        h(
          "ul",
          { class: "notes" },
          notes.map((n) =>
            h(
              "li",
              { class: n.data["pinned"] ? "pinned" : "" },
              show(n.data["body"]),
              pending.has(`${NOTE} ${n.id}`) ? h("span", { class: "badge" }, "not synced") : null,
            ),
          ),
        ),
        h(
          "form",
          {
            onsubmit: (event: Event) => {
              event.preventDefault();
              const body = noteBody.value.trim();
              if (!body) return;
              void (async () => {
                try {
                  await this.client.create(NOTE, { work_order: id, body, team: order["team"] ?? null });
                  this.tabs.announce();
                  this.say("Note added.");
                } catch (error) {
                  this.say(errorText(error), "error");
                }
                this.loop?.edited();
                await this.render();
              })();
            },
          },
          noteBody,
          h("button", { type: "submit" }, "Add note"),
        ),
      ),
    );
  }

  // --- conflicts ------------------------------------------------------------------------

  /** The fields at stake: as the server said (when it could be asked), else those that differ. */
  private async fieldsAtStake(conflict: LocalConflict, server: Data | null): Promise<string[]> {
    const known = this.stakes.get(conflict.conflictId);
    if (known) return known;
    if (navigator.onLine) {
      try {
        const described = await this.client.conflictDetails(conflict.conflictId);
        if (Array.isArray(described["fields"])) {
          const fields = (described["fields"] as unknown[]).map(String);
          this.stakes.set(conflict.conflictId, fields);
          return fields;
        }
      } catch {
        // Offline or gone: fall back on what the local copy shows.
      }
    }
    const mine = conflict.clientData ?? {};
    return Object.keys(mine).filter((f) => JSON.stringify(mine[f]) !== JSON.stringify(server?.[f]));
  }

  private async conflictsView(): Promise<HTMLElement> {
    const conflicts = await this.client.conflicts("open");
    const rejections = await this.client.rejections();
    const cards: HTMLElement[] = [];
    for (const conflict of conflicts) {
      const copy = await this.client.store.serverCopy(conflict.model, conflict.objectId);
      const server = copy ? copy.data : conflict.serverData;
      const fields = await this.fieldsAtStake(conflict, server);
      const mine = conflict.clientData ?? {};
      const title = show(server?.["title"] ?? server?.["name"] ?? mine["title"] ?? conflict.objectId.slice(0, 8));
      const resolve = (choice: "server" | "client"): void => {
        void (async () => {
          try {
            await this.client.resolve(conflict.conflictId, choice);
            this.tabs.announce();
            this.say(choice === "server" ? "Kept the server's version." : "Kept your version.");
          } catch (error) {
            if (error instanceof StaleResolution) this.say("It changed on the server meanwhile: look again and choose.", "error");
            else if (error instanceof ConflictSettled) this.say("Someone already settled this conflict.");
            else this.say(errorText(error), "error");
          }
          await this.loop?.refresh();
          await this.render();
        })();
      };
      cards.push(
        h(
          "article",
          { class: "card conflict", "data-conflict": conflict.conflictId },
          h(
            "h3",
            {},
            conflict.model === WORK_ORDER ? h("a", { href: `#/wo/${conflict.objectId}` }, title) : title,
            h("small", {}, ` ${conflict.model.split(".")[1] ?? conflict.model} · ${timeOf(conflict.createdAt)}`),
          ),
          server === null ? h("p", {}, "Deleted on the server meanwhile.") : null,
          conflict.clientData === null ? h("p", {}, "You deleted it; it was changed on the server.") : null,
          h(
            "table",
            {},
            h("thead", {}, h("tr", {}, h("th", {}, "Field"), h("th", {}, "Server"), h("th", {}, "Yours"))),
            h(
              "tbody",
              {},
              fields.map((f) =>
                h(
                  "tr",
                  { "data-field": f },
                  h("th", {}, FIELD_LABEL[f] ?? f),
                  h("td", { class: "server" }, show(server?.[f])),
                  h("td", { class: "client" }, show(mine[f])),
                ),
              ),
            ),
          ),
          h(
            "div",
            { class: "actions" },
            h("button", { type: "button", class: "keep-server", onclick: () => resolve("server") }, "Keep server's"),
            h("button", { type: "button", class: "keep-mine", onclick: () => resolve("client") }, "Keep mine"),
          ),
        ),
      );
    }
    return h(
      "section",
      { id: "conflicts" },
      h("h2", {}, "Conflicts"),
      cards.length ? cards : h("p", { class: "empty" }, "No open conflicts."),
      rejections.length
        ? h(
            "div",
            { id: "rejections" },
            h("h2", {}, "Refused by the server"),
            rejections.map((r) =>
              h(
                "article",
                { class: "card rejection" },
                h("p", {}, `${r.op} of ${r.model.split(".")[1] ?? r.model}: ${r.reason ?? ""}`),
                h("ul", {}, Object.entries(r.errors).map(([f, msgs]) => h("li", {}, `${FIELD_LABEL[f] ?? f}: ${msgs.join(" ")}`))),
                h(
                  "button",
                  {
                    type: "button",
                    onclick: () =>
                      void (async () => {
                        await this.client.dismissRejection(r.mutationId);
                        this.tabs.announce();
                        await this.loop?.refresh();
                        await this.render();
                      })(),
                  },
                  "Dismiss",
                ),
              ),
            ),
          )
        : null,
    );
  }
}
