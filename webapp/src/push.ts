/**
 * Push wake-ups, the page's side (the worker's is in sw.ts, the shared
 * parts in wake.ts).
 *
 * `listenForPush` hands the worker's `{type: "sync"}` messages to the app;
 * `takeWakeMark` says whether a push came while no window was open (and
 * removes the mark). `registerPush` subscribes this browser to Web Push when
 * the server gave a VAPID public key (`<meta name="push-public-key">` in
 * index.html), and registers the subscription as the device's `push_token`.
 */
import type { SyncClient } from "./client.ts";
import { isSyncMessage, type SyncMessage, WAKE_CACHE, WAKE_PATH } from "./wake.ts";

function scope(): string {
  return new URL("./", document.baseURI).href;
}

/** Call `onSync` for each sync message from the service worker. Returns the unsubscribe function. */
export function listenForPush(onSync: (message: SyncMessage) => void): () => void {
  if (!("serviceWorker" in navigator)) return () => {};
  const container = navigator.serviceWorker;
  const listener = (event: MessageEvent): void => {
    if (isSyncMessage(event.data)) onSync(event.data);
  };
  container.addEventListener("message", listener);
  // Messages posted before the page was ready wait in the queue until this.
  container.startMessages();
  return () => container.removeEventListener("message", listener);
}

/** Whether a push came while no window was open; the mark is removed. */
export async function takeWakeMark(): Promise<boolean> {
  if (typeof caches === "undefined") return false;
  try {
    if (!(await caches.has(WAKE_CACHE))) return false;
    const cache = await caches.open(WAKE_CACHE);
    return await cache.delete(new URL(WAKE_PATH, scope()).href);
  } catch {
    return false;
  }
}

export type PushState =
  | "subscribed" // the subscription is the device's push_token
  | "not-configured" // no VAPID key given by the server: no Web Push, the app polls
  | "unsupported" // no service worker / PushManager / Notification here
  | "needs-permission" // the key is there; subscribing waits for the user (a button)
  | "denied" // notifications (needed to subscribe in Chrome) are blocked
  | "failed"; // the browser refused the subscription (see the console)

/** The server's VAPID public key (URL-safe base64), or null when none is configured. */
export function vapidPublicKey(): string | null {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="push-public-key"]');
  const key = meta?.content.trim() ?? "";
  return key === "" ? null : key;
}

function pushSupported(): boolean {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

const SENT = "webapp_push_token";

/**
 * Subscribe to Web Push and register the subscription (its JSON: endpoint
 * and keys) as this device's `push_token`; skipped quietly, with the reason
 * as the answer, when no key is configured or the browser cannot. Call it
 * from a user gesture the first time: Chrome subscribes only with
 * `userVisibleOnly: true`, which asks for the notification permission.
 * Idempotent: an unchanged subscription is not sent again.
 */
export async function registerPush(client: SyncClient, options: { ask?: boolean } = {}): Promise<PushState> {
  const key = vapidPublicKey();
  if (key === null) {
    console.info("Web Push: no VAPID public key configured (meta push-public-key); the app syncs by polling.");
    return "not-configured";
  }
  if (!pushSupported()) return "unsupported";
  if (Notification.permission === "denied") return "denied";
  if (Notification.permission !== "granted" && !options.ask) return "needs-permission";
  try {
    const registration = await navigator.serviceWorker.ready;
    let subscription = await registration.pushManager.getSubscription();
    if (subscription === null) {
      // Chrome refuses `userVisibleOnly: false`. The worker still shows no
      // notification (README.md, "Push wake-ups", says what Chrome does then).
      subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    }
    const token = JSON.stringify(subscription.toJSON());
    if ((await client.store.get(SENT)) !== token) {
      await client.registerDevice({ platform: "web", pushToken: token });
      await client.store.set(SENT, token);
    }
    return "subscribed";
  } catch (error) {
    console.warn("Web Push: not subscribed", error);
    return (Notification.permission as NotificationPermission) === "denied" ? "denied" : "failed";
  }
}
