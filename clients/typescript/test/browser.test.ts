/**
 * TabCoordinator: tabs of one profile share a device (one IndexedDB, here
 * fake-indexeddb), sync one at a time under a Web Lock (a minimal fake of
 * `navigator.locks`) and hear each other's changes over Node's own
 * BroadcastChannel. Plus the Storage API helpers.
 */

import "fake-indexeddb/auto";

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  type ChangeNotice,
  IndexedDbStorage,
  type LockManagerLike,
  SyncClient,
  TabCoordinator,
  estimateStorage,
  requestPersistence,
} from "../src/index.js";
import { CUSTOMER, DEVICE, FakeServer, MODELS, ids, page, upsert } from "./helpers.js";

const PULL = "/api/v1/sync/pull/";

/** Exclusive locks by name, granted in request order; `ifAvailable` gets `null` while one is held or queued. */
class FakeLocks implements LockManagerLike {
  private tails = new Map<string, Promise<void>>();
  private busy = new Map<string, number>();
  readonly granted: string[] = [];

  async request<T>(
    name: string,
    options: { mode?: "exclusive" | "shared"; ifAvailable?: boolean },
    callback: (lock: unknown) => Promise<T> | T,
  ): Promise<T> {
    assert.equal(options.mode, "exclusive");
    if (options.ifAvailable && (this.busy.get(name) ?? 0) > 0) return callback(null);
    this.busy.set(name, (this.busy.get(name) ?? 0) + 1);
    const previous = this.tails.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.tails.set(name, previous.then(() => mine));
    await previous;
    this.granted.push(name);
    try {
      return await callback({ name, mode: "exclusive" });
    } finally {
      this.busy.set(name, (this.busy.get(name) ?? 1) - 1);
      release();
    }
  }
}

let profiles = 0;

/** A browser profile: one database, one server; `tab()` opens a tab (its own connection and client). */
async function profile() {
  const name = `syncserver-tabs-${process.pid}-${(profiles += 1)}`;
  const server = new FakeServer();
  const locks = new FakeLocks();
  const tabs: Array<{ client: SyncClient; coordinator: TabCoordinator; storage: IndexedDbStorage }> = [];
  const tab = (options: { locks?: LockManagerLike | null } = {}) => {
    const storage = new IndexedDbStorage(name);
    const client = new SyncClient({ baseUrl: "https://sync.test", storage, fetch: server.fetch, sleep: async () => undefined });
    const coordinator = new TabCoordinator(client, { name, locks: options.locks === undefined ? locks : options.locks });
    tabs.push({ client, coordinator, storage });
    return { client, coordinator, storage };
  };
  const first = tab();
  await first.client.useToken("alice", "t0ken");
  await first.client.store.setMany({ device_id: DEVICE, models: JSON.stringify(MODELS) });
  const closeAll = async (): Promise<void> => {
    for (const t of tabs) {
      t.coordinator.close();
      await t.storage.close();
    }
  };
  return { name, server, locks, tab, first, closeAll };
}

/** The next notice `coordinator` hears. */
function nextNotice(coordinator: TabCoordinator): Promise<ChangeNotice> {
  return new Promise((resolve) => {
    const stop = coordinator.onChange((notice) => {
      stop();
      resolve(notice);
    });
  });
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe("TabCoordinator", () => {
  it("lets one tab sync at a time; the other waits, hears of the change, then syncs from where it ended", async () => {
    const { server, locks, tab, first: a, closeAll } = await profile();
    const b = tab();
    try {
      const log: string[] = [];
      const gate = deferred();
      const pulling = deferred();
      server.on("GET", PULL, async (call) => {
        log.push(`pull ${call.url.searchParams.get("cursor") ?? "-"}`);
        pulling.resolve();
        await gate.promise; // tab a's pull is in flight until released
        return page([upsert(CUSTOMER, ids.a, 1, { name: "A" })], "c1");
      });
      server.on("GET", PULL, (call) => {
        log.push(`pull ${call.url.searchParams.get("cursor") ?? "-"}`);
        return page([], "c1");
      });

      const heard = nextNotice(b.coordinator);
      const syncA = a.coordinator.sync();
      await pulling.promise;
      const syncB = b.coordinator.sync().then((report) => {
        log.push("b done");
        return report;
      });
      // b waits for the lock while a's pull is in flight.
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(log, ["pull -"]);
      assert.equal(await b.coordinator.trySync(), null); // busy: not even queued
      gate.resolve();

      const reportA = await syncA;
      assert.equal(reportA.pulled, 1);
      const notice = await heard;
      assert.equal(notice.from, a.coordinator.tabId);
      assert.equal(notice.report?.pulled, 1);
      const reportB = await syncB;
      // b ran after a, from the cursor a stored in the shared database.
      assert.deepEqual(log, ["pull -", "pull c1", "b done"]);
      assert.equal(reportB.pulled, 0);
      assert.equal(server.maxInFlight, 1);
      assert.deepEqual(locks.granted, [a.coordinator.lockName, b.coordinator.lockName]);
      assert.deepEqual(await b.client.get(CUSTOMER, ids.a), { name: "A" });
    } finally {
      await closeAll();
    }
  });

  it("does not announce a sync that changed nothing; announce() tells of local edits; unsubscribe and close stop notices", async () => {
    const { server, tab, first: a, closeAll } = await profile();
    const b = tab();
    try {
      const heardByB: ChangeNotice[] = [];
      const stop = b.coordinator.onChange((notice) => heardByB.push(notice));
      server.on("GET", PULL, () => page([], "c1"));
      const report = await a.coordinator.sync();
      assert.equal(report.pulled, 0);

      await a.client.create(CUSTOMER, { name: "Local" }, { id: ids.b });
      const heard = nextNotice(b.coordinator);
      a.coordinator.announce();
      assert.deepEqual(await heard, { from: a.coordinator.tabId, report: null });
      assert.deepEqual(heardByB, [{ from: a.coordinator.tabId, report: null }]); // not the empty sync
      // The edit is in the shared outbox: b shows it.
      assert.deepEqual((await b.client.get(CUSTOMER, ids.b))?.["name"], "Local");

      stop();
      const stillHeard = nextNotice(b.coordinator);
      a.coordinator.announce();
      await stillHeard;
      assert.equal(heardByB.length, 1); // unsubscribed

      b.coordinator.close();
      let late = false;
      b.coordinator.onChange(() => {
        late = true;
      });
      a.coordinator.announce();
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(late, false);
    } finally {
      await closeAll();
    }
  });

  it("takes the token and device id from the shared store before syncing (another tab may have changed them)", async () => {
    const { server, tab, first: a, closeAll } = await profile();
    const b = tab({ locks: null }); // no Web Locks: runs at once
    try {
      await b.client.open(); // b loaded the old device id
      const other = "0f0f0f0f-0000-4000-8000-000000000001";
      await a.client.store.setMany({ device_id: other, token: "n3w" });
      server.on("GET", PULL, () => page([], "c1"));
      await b.coordinator.sync();
      const call = server.callsTo("GET", PULL)[0];
      assert.equal(call?.headers["x-device-id"], other);
      assert.equal(call?.headers["authorization"], "Token n3w");
    } finally {
      await closeAll();
    }
  });
});

describe("requestPersistence, estimateStorage", () => {
  async function withNavigator<T>(value: unknown, fn: () => Promise<T>): Promise<T> {
    const before = Object.getOwnPropertyDescriptor(globalThis, "navigator");
    Object.defineProperty(globalThis, "navigator", { value, configurable: true, writable: true });
    try {
      return await fn();
    } finally {
      if (before) Object.defineProperty(globalThis, "navigator", before);
      else delete (globalThis as { navigator?: unknown }).navigator;
    }
  }

  it("reports persisted, prompt, denied and unsupported", async () => {
    const storage = (persisted: boolean, granted: boolean) => ({
      persisted: async () => persisted,
      persist: async () => granted,
      estimate: async () => ({ usage: 250, quota: 1000 }),
    });
    const permissions = (state: string) => ({ query: async () => ({ state }) });
    assert.equal(await withNavigator({ storage: storage(true, false) }, requestPersistence), "persisted");
    assert.equal(await withNavigator({ storage: storage(false, true) }, requestPersistence), "persisted");
    assert.equal(
      await withNavigator({ storage: storage(false, false), permissions: permissions("prompt") }, requestPersistence),
      "prompt",
    );
    assert.equal(
      await withNavigator({ storage: storage(false, false), permissions: permissions("denied") }, requestPersistence),
      "denied",
    );
    assert.equal(await withNavigator({ storage: storage(false, false) }, requestPersistence), "denied");
    assert.equal(await withNavigator({}, requestPersistence), "unsupported");
    assert.equal(await withNavigator(undefined, requestPersistence), "unsupported");

    assert.deepEqual(await withNavigator({ storage: storage(true, true) }, estimateStorage), {
      usage: 250,
      quota: 1000,
      fraction: 0.25,
      persisted: true,
    });
    assert.equal(await withNavigator({}, estimateStorage), null);
  });
});
