/** The technician web app: served at /app/, talks to the same origin's /api/v1/. */
import { SyncClient, TabCoordinator } from "./client.ts";
import { App } from "./app.ts";
import { DATABASE, openStorage } from "./storage.ts";

export const APP_VERSION = "0.1.0";

async function main(): Promise<void> {
  const root = document.getElementById("app");
  if (!root) throw new Error("no #app element");
  const { storage, persistent } = await openStorage();
  document.documentElement.dataset["storage"] = persistent ? "indexeddb" : "memory";
  const client = new SyncClient({
    baseUrl: location.origin,
    storage,
    appVersion: APP_VERSION,
    // Interactive: give up sooner than a background worker would; the loop retries.
    retry: { attempts: 3, maxDelayMs: 4_000 },
    timeoutMs: 20_000,
  });
  // The tabs of this profile share the database (one device): they sync one
  // at a time and tell each other what changed (same name as the database).
  const tabs = new TabCoordinator(client, { name: DATABASE });
  const app = new App(client, tabs, root, persistent);
  await app.start();
  document.documentElement.dataset["ready"] = "1";
  if ("serviceWorker" in navigator) {
    try {
      await navigator.serviceWorker.register(new URL("sw.js", document.baseURI), { scope: new URL("./", document.baseURI).pathname });
    } catch (error) {
      console.warn("service worker not registered", error);
    }
  }
}

void main();
