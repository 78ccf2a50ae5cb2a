/**
 * Shared by the service worker (sw.ts) and the page: how a push message
 * reaches the app.
 *
 * - A window of the app is open: the worker posts `{type: "sync", hint}` to
 *   each one; the page syncs (through the `TabCoordinator`).
 * - None is open: the worker shows nothing and leaves a mark in the Cache
 *   Storage (`WAKE_CACHE`, entry `WAKE_PATH` under the scope); the next page
 *   opened finds it, removes it and syncs at once.
 */

/** The message the worker posts to the app's windows. */
export interface SyncMessage {
  type: "sync";
  /** What the push carried, parsed as leniently as possible (see `parsePush`). */
  hint: PushHint;
}

export interface PushHint {
  /** `"sync"`, `"conflict_resolved"`, …; `"sync"` when the payload said nothing readable. */
  type: string;
  cursor?: string;
  conflictId?: string;
}

/** Not a shell cache (`webapp-shell-…`): a new build's worker leaves it alone. */
export const WAKE_CACHE = "webapp-wake";
export const WAKE_PATH = "__woken";

/**
 * The server's data message, however it arrives: as sent (`{"type": "sync",
 * "cursor": …}`), wrapped by FCM's web push (`{"data": {…}, "from": …}`), as
 * text, or empty. Any push means "something changed": whatever cannot be
 * read is a `sync`.
 */
export function parsePush(text: string | null): PushHint {
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  const pick = (value: unknown): Record<string, unknown> | null =>
    typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  const outer = pick(body);
  const data = pick(outer?.["data"]) ?? pick(outer?.["notification"]) ?? outer;
  const hint: PushHint = { type: typeof data?.["type"] === "string" ? (data["type"] as string) : "sync" };
  if (typeof data?.["cursor"] === "string") hint.cursor = data["cursor"] as string;
  if (typeof data?.["conflict_id"] === "string") hint.conflictId = data["conflict_id"] as string;
  return hint;
}

export function isSyncMessage(data: unknown): data is SyncMessage {
  return typeof data === "object" && data !== null && (data as { type?: unknown }).type === "sync";
}
