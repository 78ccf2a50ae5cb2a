/**
 * When the app syncs: on start, when the browser comes back online, shortly
 * after each edit (debounced), every 30 s, on "Sync now", and when the
 * service worker relays a push message. It keeps what the status bar shows:
 * online or not, pending changes, open conflicts, the last sync and the last
 * error.
 *
 * Every sync goes through the `TabCoordinator` (clients/typescript/src/browser.ts):
 * the tabs of this browser profile share one device (one IndexedDB database,
 * one outbox, one cursor) and sync one at a time under a Web Lock. Background
 * triggers (the timer, `online`, start) use `trySync`, which does nothing when
 * another tab is syncing right now (that tab pushes the shared outbox and
 * announces what changed); the triggers that must see their own effect ("Sync
 * now", an edit to push, a push message saying the server has news) use
 * `sync`, which waits for the other tab's sync to end and then syncs.
 */
import {
  ApiError,
  NetworkError,
  NotLoggedIn,
  StorageFull,
  type SyncClient,
  type SyncReport,
  type TabCoordinator,
  UpgradeRequired,
} from "./client.ts";

export interface SyncState {
  /** `navigator.onLine`, and the server answered the last request. */
  online: boolean;
  syncing: boolean;
  pending: number;
  /** Object ids ("model id") with edits in the outbox. */
  pendingObjects: Set<string>;
  conflicts: number;
  rejections: number;
  lastSync: string | null;
  error: string | null;
}

/** What started a sync (kept in the record below). */
export type SyncReason = "start" | "online" | "timer" | "edit" | "button" | "push" | "woken";

export interface SyncLoopOptions {
  /** The periodic sync; `null`: none (`?poll=off`, for tests of the other triggers). */
  intervalMs?: number | null;
  debounceMs?: number;
  /** After a sync that pushed or pulled something, or settled a conflict. */
  onData?: (report: SyncReport) => void;
  /** The token was refused: log in again. */
  onLoggedOut?: () => void;
}

/**
 * One sync this tab ran (the lock held), or a background trigger skipped
 * because another tab was syncing. Kept on `window.webappSyncs` (the last
 * 200) so that tests can see which tab synced when and why; written by the
 * code that runs the sync, not by the tests.
 */
export interface SyncRecord {
  tab: string;
  reason: SyncReason;
  /** `Date.now()` when `client.sync()` was called (inside the lock) and when it settled. */
  start: number;
  end: number;
  /** `false`: `trySync` found another tab syncing and did nothing. */
  ran: boolean;
  pushed: number;
  pulled: number;
  error: string | null;
}

declare global {
  interface Window {
    webappSyncs?: SyncRecord[];
  }
}

export const STORAGE_FULL = "This device is out of storage";

/** The message shown for a `StorageFull`: the edit or the page was not written, nothing is lost. */
export function storageFullText(): string {
  return `${STORAGE_FULL}: nothing more can be saved here. Sync, free some space (other sites' data, downloads) and try again; edits already saved are kept.`;
}

/** The loop whose syncs a client's wrapped `sync` records (a new login makes a new loop). */
const recorders = new WeakMap<SyncClient, SyncLoop>();

export class SyncLoop {
  readonly state: SyncState = {
    online: navigator.onLine,
    syncing: false,
    pending: 0,
    pendingObjects: new Set(),
    conflicts: 0,
    rejections: 0,
    lastSync: null,
    error: null,
  };
  private readonly listeners = new Set<(state: SyncState) => void>();
  private readonly intervalMs: number | null;
  private readonly debounceMs: number;
  private interval: ReturnType<typeof setInterval> | null = null;
  private debounce: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<void> | null = null;
  /** A trigger that came while a sync ran: one more after it (the strongest asked for). */
  private again: { reason: SyncReason; wait: boolean } | null = null;
  private reachable = true;
  private stopped = false;
  /** Why the `client.sync()` under way was started (read by `record`). */
  private reason: SyncReason = "start";
  /** Follow-up syncs after a push message whose sync brought nothing (see `once`). */
  private pushRetries = 0;
  private pushRetry: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly client: SyncClient,
    private readonly tabs: TabCoordinator,
    private readonly options: SyncLoopOptions = {},
  ) {
    this.intervalMs = options.intervalMs === undefined ? 30_000 : options.intervalMs;
    this.debounceMs = options.debounceMs ?? 1_500;
    this.record();
  }

  private readonly wentOnline = (): void => {
    this.reachable = true;
    void this.syncNow("online");
  };

  private readonly wentOffline = (): void => {
    void this.refresh();
  };

  /** Start the triggers; `first` is the start-up sync's reason (`woken`: a push came while no page was open). */
  start(first: SyncReason = "start"): void {
    this.stopped = false;
    window.addEventListener("online", this.wentOnline);
    window.addEventListener("offline", this.wentOffline);
    if (this.intervalMs !== null && this.intervalMs > 0) {
      this.interval = setInterval(() => void this.syncNow("timer"), this.intervalMs);
    }
    void this.syncNow(first);
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener("online", this.wentOnline);
    window.removeEventListener("offline", this.wentOffline);
    if (this.interval !== null) clearInterval(this.interval);
    if (this.debounce !== null) clearTimeout(this.debounce);
    if (this.pushRetry !== null) clearTimeout(this.pushRetry);
    this.interval = this.debounce = this.pushRetry = null;
  }

  subscribe(listener: (state: SyncState) => void): () => void {
    this.listeners.add(listener);
    listener(this.state);
    return () => this.listeners.delete(listener);
  }

  /** After a local edit: show it pending at once, push it shortly. */
  edited(): void {
    void this.refresh();
    if (this.debounce !== null) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.syncNow("edit");
    }, this.debounceMs);
  }

  /**
   * One sync (a call while one runs makes one more after it). Never throws.
   * Waits for another tab's sync, then syncs, for the reasons that must see
   * their effect ("Sync now", an edit, a push message, a wake-up); the
   * background ones skip when another tab is syncing.
   */
  syncNow(reason: SyncReason = "button"): Promise<void> {
    const wait = reason === "button" || reason === "edit" || reason === "push" || reason === "woken";
    if (this.running) {
      if (!this.again || (wait && !this.again.wait)) this.again = { reason, wait };
      return this.running;
    }
    this.running = (async () => {
      let next: { reason: SyncReason; wait: boolean } | null = { reason, wait };
      while (next && !this.stopped) {
        this.again = null;
        await this.once(next.reason, next.wait);
        next = navigator.onLine ? this.again : null;
      }
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async once(reason: SyncReason, wait: boolean): Promise<void> {
    if (!navigator.onLine) {
      await this.refresh();
      return;
    }
    this.state.syncing = true;
    this.emit();
    this.reason = reason;
    try {
      const report = wait ? await this.tabs.sync() : await this.tabs.trySync();
      if (report === null) {
        // Another tab is syncing the shared store; it announces what changed.
        this.log({ reason, ran: false, start: Date.now(), end: Date.now(), report: null, error: null });
        return;
      }
      this.reachable = true;
      this.state.error = null;
      const changed =
        Object.keys(report.pushed).length > 0 || report.pulled > 0 || report.resynced || report.refetched.length > 0;
      if (changed) this.options.onData?.(report);
      if (reason === "push") this.afterPush(report.pulled > 0);
    } catch (error) {
      if (error instanceof NetworkError) {
        this.reachable = false;
        this.state.error = null;
      } else if (error instanceof NotLoggedIn) {
        this.state.error = "Please log in again.";
        this.options.onLoggedOut?.();
      } else if (error instanceof UpgradeRequired) {
        this.state.error = "This app version is too old: reload to update it.";
      } else if (error instanceof StorageFull) {
        this.state.error = storageFullText();
      } else if (error instanceof ApiError) {
        this.reachable = true;
        this.state.error = `Sync failed: ${error.detail || error.code} (${error.status})`;
      } else {
        this.state.error = `Sync failed: ${error instanceof Error ? error.message : String(error)}`;
      }
    } finally {
      this.state.syncing = false;
      await this.refresh();
    }
  }

  /**
   * A push message says the server has news, but a pull can come too early
   * to see it: a change committed while an older transaction is still open
   * is held back (docs/protocol.md, "Live pulls"). When the sync a push
   * started brought nothing, try again twice (after 2 s and 6 s): cheap,
   * and without it a change could wait for the next periodic sync.
   */
  private afterPush(pulled: boolean): void {
    if (this.pushRetry !== null) clearTimeout(this.pushRetry);
    this.pushRetry = null;
    if (pulled || this.pushRetries >= 2) {
      this.pushRetries = 0;
      return;
    }
    this.pushRetries += 1;
    this.pushRetry = setTimeout(() => {
      this.pushRetry = null;
      void this.syncNow("push");
    }, 2_000 * (2 * this.pushRetries - 1));
  }

  /**
   * Wrap `client.sync` so that each sync this tab really runs (inside the
   * coordinator's lock) is recorded on `window.webappSyncs` with its reason.
   */
  private record(): void {
    const client = this.client;
    const wrapped = recorders.has(client);
    recorders.set(client, this);
    if (wrapped) return; // once per client: the wrapper asks `recorders` for the current loop
    const inner = client.sync.bind(client);
    client.sync = async (options) => {
      const loop = recorders.get(client);
      const start = Date.now();
      const reason = loop?.reason ?? "button";
      try {
        const report = await inner(options);
        loop?.log({ reason, ran: true, start, end: Date.now(), report, error: null });
        return report;
      } catch (error) {
        loop?.log({ reason, ran: true, start, end: Date.now(), report: null, error: String(error) });
        throw error;
      }
    };
  }

  private log(entry: { reason: SyncReason; ran: boolean; start: number; end: number; report: SyncReport | null; error: string | null }): void {
    const records = (window.webappSyncs ??= []);
    records.push({
      tab: this.tabs.tabId,
      reason: entry.reason,
      start: entry.start,
      end: entry.end,
      ran: entry.ran,
      pushed: entry.report ? Object.values(entry.report.pushed).reduce((a: number, b) => a + (b ?? 0), 0) : 0,
      pulled: entry.report?.pulled ?? 0,
      error: entry.error,
    });
    if (records.length > 200) records.splice(0, records.length - 200);
  }

  /** Re-read the counts from the store and tell the listeners. */
  async refresh(): Promise<void> {
    const status = await this.client.status();
    this.state.online = navigator.onLine && this.reachable;
    this.state.pending = status.pending.length;
    this.state.pendingObjects = new Set(status.pending.map((m) => `${m.model} ${m.objectId}`));
    this.state.conflicts = status.openConflicts.length;
    this.state.rejections = status.rejections.length;
    this.state.lastSync = status.lastSync;
    this.emit();
  }

  private emit(): void {
    for (const listener of this.listeners) listener(this.state);
  }
}
