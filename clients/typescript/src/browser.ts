/**
 * Several tabs, one device: the browser profile is the device (its id, token,
 * outbox and data live in IndexedDB, shared by every tab of the origin).
 *
 * `TabCoordinator` lets one tab sync at a time (Web Locks) and tells the
 * other tabs when something changed (`BroadcastChannel`), so they reload what
 * they show. Without Web Locks every tab syncs on its own: still safe (see
 * README.md, "Several tabs"), only wasteful. Without `BroadcastChannel` no tab
 * hears of the others' changes.
 *
 * `requestPersistence()` and `estimateStorage()` wrap the Storage API: a
 * persisted origin's IndexedDB is not evicted under storage pressure, and an
 * unsynced outbox is worth keeping.
 */

import { changedAnything, type SyncClient, type SyncOptions, type SyncReport } from "./client.js";

/** The part of `navigator.locks` used here (a fake is enough in tests). */
export interface LockManagerLike {
  request<T>(
    name: string,
    options: { mode?: "exclusive" | "shared"; ifAvailable?: boolean },
    callback: (lock: unknown) => Promise<T> | T,
  ): Promise<T>;
}

/** What another tab announced. */
export interface ChangeNotice {
  /** The id of the tab that announced it (random, per `TabCoordinator`). */
  from: string;
  /** Its sync's report, when the change came from a sync; `null` for a local edit. */
  report: SyncReport | null;
}

export interface TabCoordinatorOptions {
  /** Names the lock and the channel; use the `IndexedDbStorage`'s name. Default `"syncserver"`. */
  name?: string;
  /** `navigator.locks` by default; `null`: no lock (each tab syncs on its own). */
  locks?: LockManagerLike | null;
  /** Makes the channel; the global `BroadcastChannel` by default; `null`: none. */
  channel?: ((name: string) => BroadcastChannel) | null;
}

type Nav = { locks?: LockManagerLike; storage?: Partial<StorageManager>; permissions?: Permissions };

function nav(): Nav | undefined {
  return (globalThis as { navigator?: Nav }).navigator;
}

export class TabCoordinator {
  readonly name: string;
  /** This tab's id in notices. */
  readonly tabId: string = globalThis.crypto.randomUUID();
  private readonly locks: LockManagerLike | null;
  private channel: BroadcastChannel | null;
  private readonly listeners = new Set<(notice: ChangeNotice) => void>();

  constructor(
    readonly client: SyncClient,
    options: TabCoordinatorOptions = {},
  ) {
    this.name = options.name ?? "syncserver";
    this.locks = options.locks === undefined ? (nav()?.locks ?? null) : options.locks;
    const make =
      options.channel === undefined
        ? typeof BroadcastChannel === "function"
          ? (name: string) => new BroadcastChannel(name)
          : null
        : options.channel;
    this.channel = make ? make(`${this.name}:changes`) : null;
    if (this.channel) this.channel.onmessage = (event: MessageEvent) => this.heard(event.data);
  }

  /** The name of the Web Lock held while this tab syncs. */
  get lockName(): string {
    return `${this.name}:sync`;
  }

  /**
   * `client.sync()`, while no other tab of the profile syncs: if one does,
   * this waits for it to finish, then syncs (quickly: that tab pushed the
   * shared outbox and moved the shared cursor). When it resolves, every edit
   * made before the call was pushed and the store is up to date, whichever
   * tab did the work. Announces the change to the other tabs when the sync
   * pushed or pulled anything.
   */
  async sync(options: SyncOptions = {}): Promise<SyncReport> {
    if (this.locks === null) return this.run(options);
    return this.locks.request(this.lockName, { mode: "exclusive" }, () => this.run(options));
  }

  /**
   * A sync only if no other tab is syncing right now; `null` when one is (it
   * will announce what it changed). For timers and `online` / `focus`
   * handlers running in every tab.
   */
  async trySync(options: SyncOptions = {}): Promise<SyncReport | null> {
    if (this.locks === null) return this.run(options);
    return this.locks.request(this.lockName, { mode: "exclusive", ifAvailable: true }, (lock) =>
      lock === null ? null : this.run(options),
    );
  }

  /**
   * Call `cb` when another tab announces a change (its sync, or a local edit
   * it announced): reload what you show. Not called for this tab's own
   * announcements. Returns the unsubscribe function.
   */
  onChange(cb: (notice: ChangeNotice) => void): () => void {
    this.listeners.add(cb);
    return () => {
      this.listeners.delete(cb);
    };
  }

  /**
   * Tell the other tabs that the shared store changed: done by `sync()`;
   * call it after local edits (`client.create/update/delete`), which the
   * other tabs show too.
   */
  announce(report: SyncReport | null = null): void {
    const notice: ChangeNotice = { from: this.tabId, report };
    try {
      this.channel?.postMessage(notice);
    } catch {
      // Closed meanwhile: nobody to tell.
    }
  }

  /** Stop listening and close the channel (a lock held by a sync under way is released when it ends). */
  close(): void {
    this.listeners.clear();
    if (this.channel) {
      this.channel.onmessage = null;
      this.channel.close();
      this.channel = null;
    }
  }

  private async run(options: SyncOptions): Promise<SyncReport> {
    // Another tab may have logged in again or registered a new device id
    // since this client loaded them: take the shared store's.
    const store = this.client.store;
    this.client.api.token = await store.get("token");
    this.client.api.deviceId = await store.get("device_id");
    const report = await this.client.sync(options);
    if (changedAnything(report)) this.announce(report);
    return report;
  }

  private heard(data: unknown): void {
    if (typeof data !== "object" || data === null) return;
    const notice = data as Partial<ChangeNotice>;
    if (typeof notice.from !== "string" || notice.from === this.tabId) return;
    const heard: ChangeNotice = { from: notice.from, report: notice.report ?? null };
    for (const listener of [...this.listeners]) {
      try {
        listener(heard);
      } catch (error) {
        // One listener's failure must not keep the others from hearing.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

export type PersistenceState = "persisted" | "prompt" | "denied" | "unsupported";

/**
 * Ask the browser to keep this origin's storage (IndexedDB included) under
 * storage pressure instead of evicting it: `persisted` (granted, now or
 * before), `prompt` (not granted; asking again later may be, e.g. after the
 * user installed the app or interacted more), `denied`, or `unsupported`
 * (no Storage API: storage is best-effort). Best called from a user gesture
 * (Firefox shows a prompt).
 */
export async function requestPersistence(): Promise<PersistenceState> {
  const navigator = nav();
  const storage = navigator?.storage;
  if (typeof storage?.persist !== "function") return "unsupported";
  if (typeof storage.persisted === "function" && (await storage.persisted())) return "persisted";
  if (await storage.persist()) return "persisted";
  try {
    const status = await navigator?.permissions?.query({ name: "persistent-storage" });
    if (status?.state === "prompt") return "prompt";
  } catch {
    // No Permissions API, or it does not know this permission.
  }
  return "denied";
}

export interface StorageEstimateResult {
  /** Bytes used by this origin. */
  usage: number;
  /** Bytes it may use. */
  quota: number;
  /** `usage / quota`, 0..1. */
  fraction: number;
  /** Whether the storage is persisted; `null` when unknown. */
  persisted: boolean | null;
}

/** How much of its quota the origin uses, or `null` where the Storage API is missing. */
export async function estimateStorage(): Promise<StorageEstimateResult | null> {
  const storage = nav()?.storage;
  if (typeof storage?.estimate !== "function") return null;
  const { usage = 0, quota = 0 } = await storage.estimate();
  const persisted = typeof storage.persisted === "function" ? await storage.persisted() : null;
  return { usage, quota, fraction: quota > 0 ? usage / quota : 0, persisted };
}
