/**
 * `SyncClient`: one device, its local store, and the sync loop (a port of
 * the Python reference client's client/sync.py; client/README.md walks
 * through the loop step by step).
 *
 *     const client = new SyncClient({ baseUrl, storage: new MemoryStorage() });
 *     await client.login("alice", password);            // once; the token is kept
 *     await client.registerDevice({ platform: "web", name: "Chrome" });
 *     const id = await client.create("fieldwork.customer", { name: "Acme" });
 *     await client.update("fieldwork.customer", id, { phone: "555" }); // offline is fine
 *     const report = await client.sync({ onProgress: (p) => bar(p.pulled, p.total) });
 *     const photo = await client.files.attach(blob, { name: "after.jpg" }); // files: files.ts
 *     await client.update("fieldwork.workorder", orderId, { photo });        // the bytes go with the next sync
 */

import {
  ApiError,
  ConflictSettled,
  NetworkError,
  NotFound,
  NotLoggedIn,
  StaleResolution,
  UnsentChanges,
  UpgradeRequired,
  ValidationError,
} from "./errors.js";
import {
  type ApiResponse,
  type FetchLike,
  type RequestOptions,
  type RetryPolicy,
  SCHEMA_VERSION,
  Transport,
  backoff,
  schemaHeader,
} from "./http.js";
import { Files, type UploadProgress } from "./files.js";
import { type Errors, type ModelDescription, ModelSpec } from "./schema.js";
import type { Data, LocalConflict, Mutation, PendingUpload, Rejection, StorageAdapter } from "./storage.js";
import {
  type ConflictDescription,
  type LocalObject,
  LocalStore,
  type PulledChange,
  type PushResult,
  type PushStatus,
  newId,
  now,
} from "./store.js";

/** The server's maximum per push (docs/protocol.md, "Push"). */
export const PUSH_BATCH = 500;
export const PULL_PATH = "/api/v1/sync/pull/";
export const LIVE_PATH = "/api/v1/sync/live/";
const PUSH_PATH = "/api/v1/sync/push/";
/**
 * Targeted re-fetches one sync goes through; past these a further `410`
 * naming models is taken as a full start-over, which always ends.
 */
const MAX_REFETCHES = 3;
/** A live pull counts as lost this long after its wait should have ended. */
const LIVE_TIMEOUT_MARGIN_MS = 15_000;
const POLLS_BEFORE_LIVE = 3;

export type Platform = "android" | "ios" | "web";
export type ResolveChoice = "server" | "client" | "fields";

/** Handed to `onProgress` after each pulled page. */
export interface Progress {
  /** Changes received so far in this sync. */
  pulled: number;
  /** The server's estimate of what is still to come (approximate). */
  remaining: number;
  /** `pulled + remaining`: for a progress bar. */
  total: number;
  /** An initial sync (or a re-fetch): the one worth a progress bar. */
  initial: boolean;
}

export interface SyncReport {
  /** Push results by status. */
  pushed: Partial<Record<PushStatus, number>>;
  /** Changes received. */
  pulled: number;
  /** This sync (re)built the store from scratch. */
  initial: boolean;
  /** Because the cursor was refused (`410` / `400 bad_cursor`). */
  resynced: boolean;
  /** Models fetched again (`410` naming them). */
  refetched: string[];
  /** Conflict ids opened by this sync's pushes. */
  conflicts: string[];
  /** Mutation ids rejected. */
  rejected: string[];
  /** The sha256 of the files this sync uploaded (files.ts). */
  uploaded: string[];
}

export function emptyReport(): SyncReport {
  return {
    pushed: {},
    pulled: 0,
    initial: false,
    resynced: false,
    refetched: [],
    conflicts: [],
    rejected: [],
    uploaded: [],
  };
}

export interface SyncOptions {
  /** After each pulled page. */
  onProgress?: (progress: Progress) => void;
  /** After each part of a file uploaded. */
  onUpload?: (progress: UploadProgress) => void;
}

export interface Page {
  changes: PulledChange[];
  cursor: string;
  has_more: boolean;
  remaining: number;
}

export interface ResolveAnswer {
  conflict: { id: string; status: string; resolved_version?: number | null; [key: string]: unknown };
  object: { model: string; id: string; version: number; data: Data | null };
}

export interface SyncClientOptions {
  /** The server, e.g. `https://sync.example.com` (no trailing `/api/…`). */
  baseUrl: string;
  storage: StorageAdapter;
  /** Inject a `fetch` (tests, a platform's own); the global one by default. */
  fetch?: FetchLike;
  /** `X-App-Version`, also sent as the device's `app_version` when it registers. */
  appVersion?: string;
  /**
   * The version of each model this build knows, as discovery gave it when the
   * app was written (`X-Schema-Version`). Absent: the app speaks the current
   * schema of every model.
   */
  schema?: Record<string, number>;
  /** Changes per pulled page (1..1000). */
  pageSize?: number;
  retry?: Partial<RetryPolicy>;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  timeoutMs?: number;
  /** Per try of a file's (or file part's) upload or download; 120 s by default. */
  transferTimeoutMs?: number;
  /** Gzip request bodies above this many bytes (when `CompressionStream` exists). */
  compressAbove?: number;
  /** Called with each push result once it is settled. */
  onResult?: (entry: Mutation, result: PushResult) => void;
}

export interface Status {
  server: string;
  username: string | null;
  deviceId: string | null;
  lastSync: string | null;
  initialSyncDone: boolean;
  objects: number;
  pending: Mutation[];
  /** Files attached here whose bytes the server does not have yet. */
  pendingUploads: PendingUpload[];
  openConflicts: LocalConflict[];
  rejections: Rejection[];
  /** What the last pull or push answer said of this app version's deprecation (RFC 9745, RFC 8594). */
  deprecation: Deprecation | null;
}

/** `Deprecation`, `Sunset` and `Link` headers: this app version is on its way out. */
export interface Deprecation {
  /** When it was deprecated (the `Deprecation: @<unix seconds>` header), as ISO-8601. */
  deprecatedAt: string | null;
  /** When it stops pulling (`Sunset`), as ISO-8601. */
  sunsetAt: string | null;
  /** Where to get the new version (`Link: <…>; rel="deprecation"`). */
  url: string | null;
}

export interface FollowOptions {
  /** Ends `follow()`: it returns when aborted (a waiting live pull is cancelled). */
  signal: AbortSignal;
  /** Seconds a live pull waits for a change (the server caps it, 50 by default). */
  wait?: number;
  /** While live pulls cannot be had: a `sync()` this often. */
  pollEveryMs?: number;
  /** After every sync or applied live page that pushed or pulled anything. */
  onSync?: (report: SyncReport) => void;
}

/** A minimal mutex: one sync, push or pull at a time. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

function uuid(value: string): string {
  if (!/^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i.test(value)) {
    throw new NotFound(`${JSON.stringify(value)} is not an object id (a UUID).`);
  }
  const hex = value.replace(/-/g, "").toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** 410 `resync_required` or 400 `bad_cursor`: start over. */
function cursorRefused(error: unknown): error is ApiError {
  return error instanceof ApiError && (error.code === "resync_required" || error.code === "bad_cursor");
}

/** 410 `resync_required` naming `models` and a `cursor`: fetch those models again, then go on from that cursor. */
function targeted(error: unknown): { models: string[]; cursor: string } | null {
  if (!(error instanceof ApiError) || error.code !== "resync_required") return null;
  const { models, cursor } = error.body as { models?: unknown; cursor?: unknown };
  if (!Array.isArray(models) || models.length === 0 || typeof cursor !== "string" || !cursor) return null;
  return { models: models.map(String), cursor };
}

function count(report: SyncReport, status: PushStatus): void {
  report.pushed[status] = (report.pushed[status] ?? 0) + 1;
}

/** Whether a sync changed anything here or on the server (for `onSync`, and to tell other tabs). */
export function changedAnything(report: SyncReport): boolean {
  return (
    Object.keys(report.pushed).length > 0 ||
    report.pulled > 0 ||
    report.resynced ||
    report.refetched.length > 0 ||
    report.uploaded.length > 0
  );
}

export class SyncClient {
  readonly store: LocalStore;
  readonly api: Transport;
  /** Files in `blob` fields: `attach`, `fetch`, `uploadPending` (files.ts). */
  readonly files: Files;
  readonly baseUrl: string;
  readonly appVersion: string | null;
  /** The pinned schema, lowercased labels; `null`: the current one. */
  readonly schema: Record<string, number> | null;
  readonly pageSize: number;
  private readonly schemaValue: string | null;
  private readonly onResult: SyncClientOptions["onResult"];
  private readonly syncing = new Mutex();
  private readonly random: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private specsCache: Map<string, ModelSpec> | null = null;
  private opened: Promise<void> | null = null;

  constructor(options: SyncClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.store = new LocalStore(options.storage);
    this.appVersion = options.appVersion ?? null;
    if (options.schema !== undefined && Object.keys(options.schema).length === 0) {
      throw new Error("schema names no model: the app would sync nothing");
    }
    this.schema = options.schema
      ? Object.fromEntries(Object.entries(options.schema).map(([label, v]) => [label.toLowerCase(), Math.trunc(v)]))
      : null;
    this.schemaValue = this.schema ? schemaHeader(this.schema) : null;
    this.pageSize = options.pageSize ?? 500;
    this.onResult = options.onResult;
    this.random = options.random ?? Math.random;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    const transport: ConstructorParameters<typeof Transport>[0] = {
      baseUrl: this.baseUrl,
      appVersion: this.appVersion,
      schema: this.schemaValue,
      outbox: () => this.store.outboxState(),
      random: this.random,
      sleep: this.sleep,
    };
    if (options.fetch) transport.fetch = options.fetch;
    if (options.retry) transport.retry = options.retry;
    if (options.timeoutMs !== undefined) transport.timeoutMs = options.timeoutMs;
    if (options.transferTimeoutMs !== undefined) transport.transferTimeoutMs = options.transferTimeoutMs;
    if (options.compressAbove !== undefined) transport.compressAbove = options.compressAbove;
    this.api = new Transport(transport);
    this.files = new Files(this.store, this.api, (method, path, options) => this.call(method, path, options));
  }

  /** Loads the token and device id from the store (done by every call; idempotent). */
  open(): Promise<void> {
    this.opened ??= (async () => {
      if ((await this.store.get("base_url")) !== this.baseUrl) await this.store.set("base_url", this.baseUrl);
      this.api.token = await this.store.get("token");
      this.api.deviceId = await this.store.get("device_id");
    })().catch((error: unknown) => {
      this.opened = null;
      throw error;
    });
    return this.opened;
  }

  async username(): Promise<string | null> {
    return this.store.get("username");
  }

  async deviceId(): Promise<string | null> {
    await this.open();
    return this.api.deviceId;
  }

  // --- account and device ----------------------------------------------------

  /**
   * Get a token and keep it. Throws `ApiError` with code
   * `invalid_credentials` (400) or `throttled` / `too_many_attempts` (429,
   * with `retryAfter`) for the app to show.
   */
  async login(username: string, password: string): Promise<void> {
    await this.open();
    const response = await this.api.request<{ token: string }>("POST", "/api/v1/auth/token/", {
      json: { username, password },
    });
    await this.useToken(username, response.body.token);
  }

  /** Sign in with a token obtained elsewhere. Another user than the last starts from an empty store. */
  async useToken(username: string, token: string): Promise<void> {
    await this.open();
    const previous = await this.store.get("username");
    if (previous !== null && previous !== username) {
      // A cursor and the local data belong to one account: another user
      // starts afresh, on a device id of their own.
      await this.store.forgetAccount();
      this.api.deviceId = null;
      this.specsCache = null;
    }
    await this.store.setMany({ username, token });
    this.api.token = token;
  }

  /**
   * Register this installation; idempotent. Returns the device id, generated
   * once and kept; `409 device_taken` (another user registered it) makes a
   * new one.
   */
  async registerDevice(options: { platform?: Platform; name?: string; pushToken?: string } = {}): Promise<string> {
    await this.open();
    const platform = options.platform ?? ((await this.store.get("platform")) as Platform | null) ?? "web";
    const body: Data = { platform };
    if (options.name) body["name"] = options.name;
    if (options.pushToken !== undefined) body["push_token"] = options.pushToken;
    if (this.appVersion) body["app_version"] = this.appVersion;
    for (let i = 0; i < 3; i += 1) {
      const id = (await this.store.get("device_id")) ?? newId();
      try {
        await this.call("POST", "/api/v1/devices/", { json: { id, ...body }, expect: [200, 201] }, false);
      } catch (error) {
        if (!(error instanceof ApiError) || error.code !== "device_taken") throw error;
        await this.store.set("device_id", null);
        continue;
      }
      await this.store.setMany({ device_id: id, platform });
      this.api.deviceId = id;
      return id;
    }
    throw new Error("could not find a free device id");
  }

  // --- discovery and validation ------------------------------------------------

  /** Fetch discovery's field metadata and keep it for offline validation. */
  async refreshModels(): Promise<Map<string, ModelSpec>> {
    await this.open();
    const response = await this.call<ModelDescription[]>("GET", "/api/v1/sync/models/");
    await this.store.set("models", JSON.stringify(response.body));
    this.specsCache = null;
    return this.specs();
  }

  /**
   * The models this app knows: every one discovery describes or, with a
   * pinned `schema`, those it names.
   */
  async specs(): Promise<Map<string, ModelSpec>> {
    if (this.specsCache === null) {
      const kept = await this.store.get("models");
      const described = kept ? (JSON.parse(kept) as ModelDescription[]) : [];
      this.specsCache = new Map(
        described
          .filter((d) => this.schema === null || d.model in this.schema)
          .map((d) => [d.model, new ModelSpec(d)]),
      );
    }
    return this.specsCache;
  }

  /**
   * Whether edits of this model are checked offline: not for a model the app
   * speaks at another version than discovery's (it edits another shape; the
   * server, which translates, is the only judge).
   */
  validates(spec: ModelSpec): boolean {
    return this.schema === null || this.schema[spec.label] === spec.version;
  }

  /** `fieldwork.workorder`, or just `workorder` when that is unambiguous. */
  async spec(model: string): Promise<ModelSpec> {
    let specs = await this.specs();
    if (specs.size === 0) specs = await this.refreshModels();
    const name = model.toLowerCase();
    const direct = specs.get(name);
    if (direct) return direct;
    const matches = [...specs.values()].filter((s) => s.label.split(".", 2)[1] === name);
    if (matches.length === 1 && matches[0]) return matches[0];
    throw new NotFound(`No synced model ${JSON.stringify(model)}; known: ${[...specs.keys()].sort().join(", ")}.`);
  }

  private async check(spec: ModelSpec, data: Data, creating: boolean): Promise<void> {
    const errors: Errors = spec.validate(data, creating);
    const specs = await this.specs();
    for (const [name, value] of Object.entries(data)) {
      const field = spec.fields.get(name);
      if (
        field !== undefined &&
        field.type === "reference" &&
        field.model !== null &&
        specs.has(field.model) &&
        typeof value === "string" &&
        !(name in errors) &&
        (await this.store.local(field.model, value)) === null
      ) {
        // The server takes a reference only to a live object in our scope, which we would hold.
        errors[name] = [`No ${field.model} with this id in your scope.`];
      }
    }
    if (Object.keys(errors).length > 0) throw new ValidationError(errors);
  }

  // --- local data (works offline) ---------------------------------------------

  /** An object as the user sees it (server copy + pending edits); `null` if absent or deleted. */
  async get(model: string, id: string): Promise<Data | null> {
    const spec = await this.spec(model);
    return this.store.local(spec.label, uuid(id));
  }

  /** Every object (of `model`) as the user sees it, sorted by model and id. */
  async all(model?: string): Promise<LocalObject[]> {
    return this.store.localAll(model === undefined ? undefined : (await this.spec(model)).label);
  }

  /** Create an object offline; returns its id (a UUID chosen here unless given). */
  async create(model: string, data: Data, options: { id?: string } = {}): Promise<string> {
    await this.open();
    const spec = await this.spec(model);
    const checked = this.validates(spec);
    if (checked) await this.check(spec, data, true);
    const id = options.id ? uuid(options.id) : newId();
    // The defaults discovery announces, so the local view shows what the server will store.
    const defaults = checked ? spec.defaults() : {};
    await this.store.queueCreate(spec.label, id, { ...defaults, ...data }, this.schemaValue);
    return id;
  }

  /** Change fields offline; returns the mutation id carrying the edit (`null` when nothing changed). */
  async update(model: string, id: string, changes: Data): Promise<string | null> {
    await this.open();
    const spec = await this.spec(model);
    if (this.validates(spec)) await this.check(spec, changes, false);
    return this.store.queueUpdate(spec.label, uuid(id), changes, this.schemaValue);
  }

  /** Delete offline; returns the mutation id (`null` when it cancelled a create never pushed). */
  async delete(model: string, id: string): Promise<string | null> {
    await this.open();
    const spec = await this.spec(model);
    return this.store.queueDelete(spec.label, uuid(id), this.schemaValue);
  }

  // --- the sync loop -------------------------------------------------------------

  /**
   * Push the outbox, then pull until up to date, then upload the files
   * attached here (data first: an edit never waits for its photo). Safe to
   * interrupt at any point and to call again: nothing is lost or applied
   * twice, and an upload goes on from the parts the server has. Two calls do
   * not interleave (the second waits for the first).
   *
   * Throws `UpgradeRequired` when this app version may no longer pull: the
   * outbox was pushed first (its `report` says how). An upload that fails
   * (`NetworkError`, or `ApiError` for a file refused for good) throws after
   * the data was synced; the file stays queued.
   */
  sync(options: SyncOptions = {}): Promise<SyncReport> {
    return this.syncing.run(() => this.runSync(options));
  }

  private async runSync({ onProgress, onUpload }: SyncOptions): Promise<SyncReport> {
    await this.open();
    if (!this.api.token) throw new NotLoggedIn("Log in first.");
    if (!this.api.deviceId) await this.registerDevice();
    if ((await this.specs()).size === 0) await this.refreshModels();
    const report = emptyReport();
    await this.runPush(report);
    try {
      await this.runPull(report, onProgress);
    } catch (error) {
      // Its pushes were taken (just above); its pulls will not be until the app is upgraded.
      if (error instanceof UpgradeRequired) error.report = report;
      throw error;
    }
    if ((await this.store.conflicts("open")).length > 0) await this.refreshConflicts();
    // The bytes of files attached here, after the data (files.ts).
    if ((await this.store.pendingUploads()).length > 0) {
      report.uploaded = await this.files.uploadPending(onUpload ? { onProgress: onUpload } : {});
    }
    await this.store.pruneTombstones();
    await this.store.set("last_sync", now());
    return report;
  }

  /** Send the outbox, oldest first, in batches, and settle every result. */
  push(): Promise<SyncReport> {
    return this.syncing.run(async () => {
      await this.open();
      return this.runPush(emptyReport());
    });
  }

  private async runPush(report: SyncReport): Promise<SyncReport> {
    for (;;) {
      // Frozen as it is read, before the request leaves: if we crash or the
      // answer is lost, the next push resends exactly these mutations.
      const batch = await this.store.takeBatch(PUSH_BATCH);
      const first = batch[0];
      if (first === undefined) return report;
      const sentCursor = await this.store.cursor();
      const body: Data = {
        mutations: batch.map((m) => ({
          mutation_id: m.mutationId,
          model: m.model,
          op: m.op,
          id: m.objectId,
          base_version: m.baseVersion,
          data: m.data,
        })),
      };
      if (sentCursor !== null) body["cursor"] = sentCursor;
      // Entries made before the app was upgraded go out in the schema they were made in.
      const headers = first.schema !== this.schemaValue ? { [SCHEMA_VERSION]: first.schema } : undefined;
      const options: RequestOptions = { json: body, device: true };
      if (headers) options.headers = headers;
      const response = await this.call<{ results: PushResult[]; cursor: string }>("POST", PUSH_PATH, options);
      const results = response.body.results;
      await this.store.settleBatch(batch, results, sentCursor, response.body.cursor ?? null);
      batch.forEach((entry, i) => {
        const result = results[i] as PushResult;
        count(report, result.status);
        if (result.status === "conflict" && result.conflict_id) report.conflicts.push(result.conflict_id);
        else if (result.status === "rejected") report.rejected.push(entry.mutationId);
        this.onResult?.(entry, result);
      });
    }
  }

  /** Pull pages until `has_more` is false, each stored with its cursor. */
  pull(options: { onProgress?: (progress: Progress) => void } = {}): Promise<SyncReport> {
    return this.syncing.run(async () => {
      await this.open();
      return this.runPull(emptyReport(), options.onProgress);
    });
  }

  private pageParams(cursor: string | null): Record<string, string | number> {
    const params: Record<string, string | number> = { limit: this.pageSize };
    if (cursor !== null) params["cursor"] = cursor;
    return params;
  }

  private async runPull(report: SyncReport, onProgress?: (progress: Progress) => void): Promise<SyncReport> {
    let startedOver = false;
    let refetches = 0;
    for (;;) {
      if ((await this.store.refetch()) !== null) await this.runRefetch(report, onProgress);
      const cursor = await this.store.cursor();
      let page: Page;
      try {
        page = (await this.call<Page>("GET", PULL_PATH, { params: this.pageParams(cursor), device: true })).body;
      } catch (error) {
        // 410 naming models: fetch those again, then go on from its cursor;
        // kept before anything else is done, so an interruption resumes it.
        const named = targeted(error);
        if (named && cursor !== null && refetches < MAX_REFETCHES) {
          refetches += 1;
          await this.store.beginRefetch(named.models, named.cursor);
          continue;
        }
        // 410 (too old) or 400 bad_cursor: start over with an initial sync.
        // The local rows stay until it has brought their replacements, and
        // the outbox is untouched (it was pushed just before).
        if (cursorRefused(error) && cursor !== null && !startedOver) {
          await this.store.startOver();
          startedOver = report.resynced = true;
          continue;
        }
        throw error;
      }
      await this.applyPage(cursor, page, report, onProgress);
      if (!page.has_more) return report;
    }
  }

  /**
   * Fetch the models a `410` named again, as an initial sync of just them,
   * then set the cursor to the one it gave: the outbox first (its edits were
   * made on the data about to be replaced), then `?models=…` until
   * `has_more` is false, every page kept with its cursor.
   */
  private async runRefetch(report: SyncReport, onProgress?: (progress: Progress) => void): Promise<void> {
    await this.runPush(report);
    let restarted = false;
    for (;;) {
      const state = await this.store.refetch();
      if (state === null) return;
      const params: Record<string, string | number> = { limit: this.pageSize, models: state.models.join(",") };
      if (state.page !== null) params["cursor"] = state.page;
      let page: Page;
      try {
        page = (await this.call<Page>("GET", PULL_PATH, { params, device: true })).body;
      } catch (error) {
        // Its own cursor refused: start it again, its generation kept.
        if (cursorRefused(error) && state.page !== null && !restarted) {
          restarted = true;
          await this.store.restartRefetch();
          continue;
        }
        throw error;
      }
      await this.store.applyRefetchPage(page.changes, page.cursor, page.has_more);
      report.pulled += page.changes.length;
      report.initial = true;
      onProgress?.({ pulled: report.pulled, remaining: page.remaining, total: report.pulled + page.remaining, initial: true });
      if (!page.has_more) report.refetched = [...new Set([...report.refetched, ...state.models])].sort();
    }
  }

  private async applyPage(
    cursor: string | null,
    page: Page,
    report: SyncReport,
    onProgress?: (progress: Progress) => void,
  ): Promise<void> {
    const initial = cursor === null || (await this.store.get("initial_sync")) !== null;
    report.initial ||= initial;
    await this.store.applyPage(page.changes, page.cursor, page.has_more);
    report.pulled += page.changes.length;
    onProgress?.({ pulled: report.pulled, remaining: page.remaining, total: report.pulled + page.remaining, initial });
  }

  /**
   * What an initial sync would bring right now, `"model id" → {version,
   * data}`, without touching the store: to check that a device converged.
   */
  async fetchAll(): Promise<Map<string, { model: string; id: string; version: number; data: Data }>> {
    await this.open();
    const found = new Map<string, { model: string; id: string; version: number; data: Data }>();
    let cursor: string | null = null;
    for (;;) {
      const page: Page = (await this.call<Page>("GET", PULL_PATH, { params: this.pageParams(cursor), device: true })).body;
      for (const change of page.changes) {
        const key = `${change.model} ${change.id}`;
        if (change.op === "upsert" && change.data !== null) {
          found.set(key, { model: change.model, id: change.id, version: change.version, data: change.data });
        } else found.delete(key);
      }
      cursor = page.cursor;
      if (!page.has_more) return found;
    }
  }

  // --- in the foreground: live pulls -----------------------------------------------

  /**
   * Keep the store up to date while the app is on screen, until `signal` is
   * aborted: sync once, then keep a live pull open (answered as soon as
   * something changes in the user's scope, or after `wait` seconds), pushing
   * pending edits before each. Falls back to polling (`sync()` every
   * `pollEveryMs`) without live pulls on the server (404) or while none can be
   * had (429); backs off while the server cannot be reached. Throws
   * `UpgradeRequired`, `NotLoggedIn` and any other error `sync()` throws to
   * the app. `push()` and `sync()` may be called meanwhile: the live pull
   * waits without holding the sync lock.
   */
  async follow(options: FollowOptions): Promise<void> {
    const { signal, onSync } = options;
    const wait = options.wait ?? 30;
    const pollEvery = options.pollEveryMs ?? 60_000;
    if (wait < 1) throw new Error("wait must be at least a second");
    const tell = (report: SyncReport): void => {
      if (onSync && changedAnything(report)) onSync(report);
    };
    const pause = (ms: number): Promise<boolean> =>
      new Promise((resolve) => {
        if (signal.aborted) return resolve(true);
        const timer = setTimeout(() => {
          signal.removeEventListener("abort", stop);
          resolve(false);
        }, ms);
        const stop = (): void => {
          clearTimeout(timer);
          resolve(true);
        };
        signal.addEventListener("abort", stop, { once: true });
      });
    let troubles = 0;
    let dropped = 0;
    let polls = 0;
    let mustSync = true;
    while (!signal.aborted) {
      try {
        if ((await this.store.refetch()) !== null) mustSync = true;
        if (mustSync) {
          tell(await this.sync());
          mustSync = false;
        } else if (polls > 0) {
          if (await pause(pollEvery)) return;
          polls -= 1;
          tell(await this.sync());
        } else {
          if ((await this.store.pending()).length > 0) tell(await this.push());
          if ((await this.store.pendingUploads()).length > 0) {
            tell({ ...emptyReport(), uploaded: await this.files.uploadPending() });
          }
          const cursor = await this.store.cursor();
          let page: Page;
          try {
            page = (
              await this.call<Page>("GET", LIVE_PATH, {
                params: { ...this.pageParams(cursor), wait },
                device: true,
                retry: { attempts: 1 },
                timeoutMs: wait * 1000 + LIVE_TIMEOUT_MARGIN_MS,
                signal,
              })
            ).body;
          } catch (error) {
            if (signal.aborted) return;
            if (error instanceof UpgradeRequired) throw error;
            const named = targeted(error);
            if (named) {
              await this.syncing.run(async () => {
                if ((await this.store.cursor()) === cursor) await this.store.beginRefetch(named.models, named.cursor);
              });
              mustSync = true;
              continue;
            }
            if (cursorRefused(error)) {
              mustSync = true;
              continue;
            }
            if (error instanceof ApiError && (error.status === 404 || error.status === 429)) {
              // 404: a server without live pulls; 429: the user's other devices hold them all.
              polls = error.status === 404 ? Number.POSITIVE_INFINITY : POLLS_BEFORE_LIVE;
              continue;
            }
            dropped += 1;
            if (dropped > 1) polls = POLLS_BEFORE_LIVE;
            throw error;
          }
          dropped = 0;
          const report = emptyReport();
          await this.syncing.run(async () => {
            // The live pull waited without the lock: if the cursor moved
            // meanwhile, applying the page would set it back; drop it instead.
            if ((await this.store.cursor()) !== cursor) return;
            await this.applyPage(cursor, page, report);
            if (page.has_more) await this.runPull(report);
          });
          tell(report);
        }
        troubles = 0;
      } catch (error) {
        if (signal.aborted) return;
        if (!(error instanceof NetworkError) && !(error instanceof ApiError && error.status >= 500)) throw error;
        troubles += 1;
        if (await pause(backoff(this.api.retry, troubles, this.random))) return;
        mustSync = true;
      }
    }
  }

  // --- conflicts and rejections ------------------------------------------------------

  /** The conflicts kept locally (`status` `null`: all). */
  async conflicts(status: string | null = "open"): Promise<LocalConflict[]> {
    return this.store.conflicts(status);
  }

  /**
   * Bring the local conflict list up to date: conflicts raised on this
   * user's other devices, and those settled elsewhere.
   */
  async refreshConflicts(): Promise<LocalConflict[]> {
    const open = (await this.call<ConflictDescription[]>("GET", "/api/v1/sync/conflicts/", { params: { status: "open" } }))
      .body;
    for (const described of open) await this.store.recordConflict(described);
    const stillOpen = new Set(open.map((c) => c.id));
    for (const local of await this.store.conflicts("open")) {
      if (stillOpen.has(local.conflictId)) continue;
      try {
        await this.store.recordConflict(await this.conflictDetails(local.conflictId));
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 404) throw error;
        await this.store.conflictClosed(local.conflictId, "gone");
      }
    }
    return this.store.conflicts("open");
  }

  /** The server's account of a conflict: fields at stake, base / server / client values. */
  async conflictDetails(conflictId: string): Promise<ConflictDescription> {
    return (await this.call<ConflictDescription>("GET", `/api/v1/sync/conflicts/${uuid(conflictId)}/`)).body;
  }

  /**
   * Settle one of this user's conflicts from the app. `choice`: `server`
   * (keep the server's values), `client` (the values the user pushed) or
   * `fields` (`values` gives each field at stake). Checked against
   * `expectedVersion`, by default the version held locally. The resulting
   * object is stored at once. Throws `StaleResolution` (412: the object moved
   * on; its new state is stored) and `ConflictSettled` (409).
   */
  async resolve(
    conflictId: string,
    choice: ResolveChoice,
    values?: Data | null,
    options: { expectedVersion?: number; note?: string } = {},
  ): Promise<ResolveAnswer> {
    await this.open();
    const id = uuid(conflictId);
    let local = await this.store.conflict(id);
    if (local === null) {
      await this.store.recordConflict(await this.conflictDetails(id));
      local = await this.store.conflict(id);
    }
    let expected = options.expectedVersion;
    if (expected === undefined && local !== null) {
      expected = (await this.store.serverCopy(local.model, local.objectId))?.version ?? local.serverVersion ?? undefined;
    }
    const body: Data = { choice, expected_version: expected ?? null };
    if (values !== undefined && values !== null) body["values"] = values;
    if (options.note) body["note"] = options.note;
    let answer: ResolveAnswer;
    try {
      answer = (
        await this.call<ResolveAnswer>("POST", `/api/v1/sync/conflicts/${id}/resolve/`, { json: body, device: true })
      ).body;
    } catch (error) {
      if (error instanceof ApiError && error.status === 412) {
        const current = (error.body["object"] ?? null) as ResolveAnswer["object"] | null;
        if (current) await this.store.adoptResult(current.model, current.id, current.version, current.data);
        throw new StaleResolution(current as Record<string, unknown> | null);
      }
      if (error instanceof ApiError && error.status === 409) {
        const status = String(error.body["status"] ?? "resolved");
        await this.store.conflictClosed(id, status);
        throw new ConflictSettled(status);
      }
      if (error instanceof ApiError && error.status === 404) await this.store.conflictClosed(id, "gone");
      throw error;
    }
    const obj = answer.object;
    await this.store.adoptResult(obj.model, obj.id, obj.version, obj.data);
    await this.store.conflictClosed(id, "resolved", answer.conflict.resolved_version ?? null);
    return answer;
  }

  rejections(): Promise<Rejection[]> {
    return this.store.rejections();
  }

  dismissRejection(mutationId: string): Promise<void> {
    return this.store.dismissRejection(mutationId);
  }

  async status(): Promise<Status> {
    await this.open();
    const cursor = await this.store.cursor();
    return {
      server: this.baseUrl,
      username: await this.store.get("username"),
      deviceId: this.api.deviceId,
      lastSync: await this.store.get("last_sync"),
      initialSyncDone: cursor !== null && (await this.store.get("initial_sync")) === null,
      objects: (await this.store.serverCopies()).length,
      pending: await this.store.pending(),
      pendingUploads: await this.store.pendingUploads(),
      openConflicts: await this.store.conflicts("open"),
      rejections: await this.store.rejections(),
      deprecation: await this.deprecation(),
    };
  }

  /** What the last pull or push answer said of this app version's deprecation, kept for offline use. */
  async deprecation(): Promise<Deprecation | null> {
    await this.open();
    const kept = await this.store.get("deprecation");
    return kept === null ? null : (JSON.parse(kept) as Deprecation);
  }

  /**
   * Sign out (docs/protocol.md, "Logging out"): push the outbox and upload
   * the files attached here first, so that nothing edited offline is lost
   * because its author signed out; unregister this device; revoke the token
   * (every token of the user with `everywhere`); forget the account's local
   * data, its files included. Returns how many tokens were revoked. Throws
   * `UnsentChanges` when edits or files could not be sent, unless
   * `discardUnsent`.
   */
  async logout(options: { everywhere?: boolean; discardUnsent?: boolean } = {}): Promise<number> {
    await this.open();
    const unsent = async (): Promise<[number, number]> => [
      (await this.store.pending()).length,
      (await this.store.pendingUploads()).length,
    ];
    let [edits, uploads] = await unsent();
    if (edits + uploads > 0 && !options.discardUnsent) {
      try {
        await this.sync();
      } catch (error) {
        if (!(error instanceof NetworkError || error instanceof ApiError)) throw error;
      }
      [edits, uploads] = await unsent();
      if (edits + uploads > 0) {
        const what = [edits > 0 ? `${edits} edit(s)` : "", uploads > 0 ? `${uploads} file(s)` : ""].filter(Boolean);
        throw new UnsentChanges(
          `${what.join(" and ")} could not be sent; sync again, or log out with discardUnsent to drop them.`,
        );
      }
    }
    let revoked = 0;
    try {
      if (this.api.deviceId) {
        await this.call("DELETE", `/api/v1/devices/${this.api.deviceId}/`, { expect: [204, 404] }, false);
      }
      const answer = await this.call<{ revoked: number }>(
        "POST",
        "/api/v1/auth/logout/",
        { json: { everywhere: options.everywhere ?? false } },
        false,
      );
      revoked = answer.body.revoked;
    } catch (error) {
      if (!(error instanceof NotLoggedIn)) throw error; // revoked or expired already: signed out anyway
    }
    await this.store.forgetAccount();
    this.api.token = null;
    this.api.deviceId = null;
    this.specsCache = null;
    return revoked;
  }

  // --- plumbing ----------------------------------------------------------------------

  /** Keep what a pull or push answer says of deprecation; an answer without it clears it. */
  private async noteDeprecation(path: string, headers: Headers): Promise<void> {
    if (path !== PULL_PATH && path !== PUSH_PATH && path !== LIVE_PATH) return;
    const deprecated = headers.get("Deprecation");
    let found: Deprecation | null = null;
    if (deprecated !== null) {
      const seconds = /^@(\d+)$/.exec(deprecated.trim())?.[1];
      const sunset = headers.get("Sunset");
      const link = /<([^>]+)>\s*;[^,]*rel="?deprecation"?/.exec(headers.get("Link") ?? "")?.[1];
      found = {
        deprecatedAt: seconds === undefined ? null : new Date(Number(seconds) * 1000).toISOString(),
        sunsetAt: sunset === null || Number.isNaN(Date.parse(sunset)) ? null : new Date(sunset).toISOString(),
        url: link ?? null,
      };
    }
    const kept = found === null ? null : JSON.stringify(found);
    if ((await this.store.get("deprecation")) !== kept) await this.store.set("deprecation", kept);
  }

  /**
   * One API call: a refused token becomes `NotLoggedIn`, and a device the
   * server no longer knows (`403 device_forbidden`: deleted in the admin) is
   * registered again, once.
   */
  private async call<T>(method: string, path: string, options: RequestOptions = {}, reregister = true): Promise<ApiResponse<T>> {
    await this.open();
    for (let attempt = 0; ; attempt += 1) {
      try {
        const answer = await this.api.request<T>(method, path, options);
        await this.noteDeprecation(path, answer.headers);
        return answer;
      } catch (error) {
        if (error instanceof ApiError && error.headers) await this.noteDeprecation(path, error.headers);
        if (error instanceof ApiError && error.status === 401) throw new NotLoggedIn(error.detail);
        if (error instanceof ApiError && error.code === "device_forbidden" && reregister && attempt === 0) {
          await this.registerDevice();
          continue;
        }
        throw error;
      }
    }
  }
}
