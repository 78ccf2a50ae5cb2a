/**
 * When the app syncs: on start, when the browser comes back online, shortly
 * after each edit (debounced), every 30 s, and on "Sync now". It keeps what
 * the status bar shows: online or not, pending changes, open conflicts, the
 * last sync and the last error.
 */
import {
  ApiError,
  NetworkError,
  NotLoggedIn,
  type SyncClient,
  type SyncReport,
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

export interface SyncLoopOptions {
  intervalMs?: number;
  debounceMs?: number;
  /** After a sync that pushed or pulled something, or settled a conflict. */
  onData?: (report: SyncReport) => void;
  /** The token was refused: log in again. */
  onLoggedOut?: () => void;
}

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
  private readonly intervalMs: number;
  private readonly debounceMs: number;
  private interval: ReturnType<typeof setInterval> | null = null;
  private debounce: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private reachable = true;

  constructor(
    private readonly client: SyncClient,
    private readonly options: SyncLoopOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 30_000;
    this.debounceMs = options.debounceMs ?? 1_500;
  }

  private readonly wentOnline = (): void => {
    this.reachable = true;
    void this.syncNow();
  };

  private readonly wentOffline = (): void => {
    void this.refresh();
  };

  start(): void {
    window.addEventListener("online", this.wentOnline);
    window.addEventListener("offline", this.wentOffline);
    this.interval = setInterval(() => void this.syncNow(), this.intervalMs);
    void this.syncNow();
  }

  stop(): void {
    window.removeEventListener("online", this.wentOnline);
    window.removeEventListener("offline", this.wentOffline);
    if (this.interval !== null) clearInterval(this.interval);
    if (this.debounce !== null) clearTimeout(this.debounce);
    this.interval = this.debounce = null;
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
      void this.syncNow();
    }, this.debounceMs);
  }

  /** One sync (a call while one runs makes one more after it). Never throws. */
  syncNow(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.once();
      } while (this.again && navigator.onLine);
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async once(): Promise<void> {
    if (!navigator.onLine) {
      await this.refresh();
      return;
    }
    this.state.syncing = true;
    this.emit();
    try {
      const report = await this.client.sync();
      this.reachable = true;
      this.state.error = null;
      const changed =
        Object.keys(report.pushed).length > 0 || report.pulled > 0 || report.resynced || report.refetched.length > 0;
      if (changed) this.options.onData?.(report);
    } catch (error) {
      if (error instanceof NetworkError) {
        this.reachable = false;
        this.state.error = null;
      } else if (error instanceof NotLoggedIn) {
        this.state.error = "Please log in again.";
        this.options.onLoggedOut?.();
      } else if (error instanceof UpgradeRequired) {
        this.state.error = "This app version is too old: reload to update it.";
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
