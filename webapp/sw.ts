/**
 * The app shell's service worker (scope /app/): the shell (index.html, app.js,
 * app.css, the manifest and icons) comes from a cache, so the app opens with
 * no network; the cache is named after the build, so a new build replaces it.
 * Nothing else is cached: the API (/api/…) and anything outside the shell
 * always go to the network.
 *
 * Push messages (Web Push; the server's FCM data message `{"type": "sync",
 * …}`) wake the app: open windows are told to sync, and when none is open a
 * mark is left so that the next one opened syncs at once (src/wake.ts). No
 * notification is shown: the message only means "something changed".
 */
import { parsePush, type SyncMessage, WAKE_CACHE, WAKE_PATH } from "./src/wake.ts";

const sw = self as unknown as ServiceWorkerGlobalScope;
declare const __SHELL_VERSION__: string;

const CACHE = `webapp-shell-${__SHELL_VERSION__}`;
const SHELL = ["./", "app.js", "app.css", "manifest.webmanifest", "icon.svg", "icon-maskable.svg"];
const scope = new URL(sw.registration.scope);
const shellUrls = new Set(SHELL.map((path) => new URL(path, scope).href));
const INDEX = new URL("./", scope).href;

sw.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      // `reload`: past the HTTP cache, so the shell cached is this build's.
      await cache.addAll(SHELL.map((path) => new Request(new URL(path, scope), { cache: "reload" })));
      await sw.skipWaiting();
    })(),
  );
});

sw.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) {
        if (key.startsWith("webapp-shell-") && key !== CACHE) await caches.delete(key);
      }
      await sw.clients.claim();
    })(),
  );
});

sw.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== scope.origin) return;
  // A navigation anywhere in the app (/app/, /app/?x, /app/index.html) is the shell's page.
  const key = request.mode === "navigate" ? INDEX : url.origin + url.pathname;
  if (!shellUrls.has(key)) return; // the API and everything else: the network, untouched
  event.respondWith(
    (async () => {
      const cached = await caches.match(key, { cacheName: CACHE });
      if (cached) return cached;
      const response = await fetch(request);
      if (response.ok) {
        const cache = await caches.open(CACHE);
        await cache.put(key, response.clone());
      }
      return response;
    })(),
  );
});

sw.addEventListener("push", (event) => {
  let text: string | null = null;
  try {
    text = event.data ? event.data.text() : null;
  } catch {
    text = null;
  }
  const message: SyncMessage = { type: "sync", hint: parsePush(text) };
  event.waitUntil(
    (async () => {
      // Windows of this scope, controlled by this worker or not yet (the first load).
      const windows = await sw.clients.matchAll({ type: "window", includeUncontrolled: true });
      if (windows.length > 0) {
        // Each tab syncs through its TabCoordinator: one at a time, the later ones quickly.
        for (const client of windows) client.postMessage(message);
        return;
      }
      const cache = await caches.open(WAKE_CACHE);
      await cache.put(
        new URL(WAKE_PATH, scope).href,
        new Response(JSON.stringify({ at: new Date().toISOString(), hint: message.hint }), {
          headers: { "Content-Type": "application/json" },
        }),
      );
    })(),
  );
});
