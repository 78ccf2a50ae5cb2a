/**
 * IndexedDbStorage under Node, on fake-indexeddb: the behaviour MemoryStorage
 * has (the same tests run against both), atomicity, persistence across
 * re-opening, quota and abort errors, and a SyncClient round trip.
 */

import "fake-indexeddb/auto";

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { openDB } from "idb";

import {
  IDB_VERSION,
  IndexedDbStorage,
  LocalStore,
  MemoryStorage,
  type Mutation,
  type PendingUpload,
  type PushResult,
  type StorageAdapter,
  StorageError,
  StorageFull,
  SyncClient,
} from "../src/index.js";
import { CUSTOMER, DEVICE, FakeServer, MODELS, WORKORDER, ids, json, page, rig, upsert } from "./helpers.js";

const PULL = "/api/v1/sync/pull/";
const PUSH = "/api/v1/sync/push/";

let databases = 0;
const opened: IndexedDbStorage[] = [];

/** A new, empty database of its own. */
function freshDb(name = `syncserver-test-${process.pid}-${(databases += 1)}`): IndexedDbStorage {
  const storage = new IndexedDbStorage(name);
  opened.push(storage);
  return storage;
}

after(async () => {
  for (const storage of opened) await storage.close();
});

function applied(version: number, data: Record<string, unknown> | null, status: PushResult["status"] = "applied"): PushResult {
  return { mutation_id: null, status, id: null, version, data, conflict_id: null, errors: null };
}

function entry(mutationId: string, objectId: string = ids.a): Omit<Mutation, "seq"> {
  return {
    mutationId,
    model: CUSTOMER,
    objectId,
    op: "update",
    baseVersion: 1,
    data: { name: mutationId },
    sent: false,
    createdAt: new Date().toISOString(),
    schema: null,
  };
}

/** Fails with `name` (a DOMException) every put made while installed, as IndexedDB does: the request errs, the transaction aborts. */
function failingPuts(name: string): () => void {
  type Raw = { storeRecord?: unknown };
  const proto = IDBObjectStore.prototype as unknown as { put: (...args: unknown[]) => unknown };
  const original = proto.put;
  proto.put = function (this: { _rawObjectStore: Raw }, ...args: unknown[]) {
    // fake-indexeddb binds the operation to the raw store's storeRecord when the request is made.
    const raw = this._rawObjectStore;
    raw.storeRecord = () => {
      throw new DOMException(`simulated ${name}`, name);
    };
    try {
      return original.apply(this, args);
    } finally {
      delete raw.storeRecord;
    }
  };
  return () => {
    proto.put = original;
  };
}

const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);
const SHA_C = "c".repeat(64);

function upload(sha256: string, createdAt: string, uploadId: string | null = null): PendingUpload {
  return { sha256, size: 3, contentType: "image/png", uploadId, createdAt };
}

/** Rejects if `promise` has not settled within `ms`: a hang is a failure. */
function within<T>(promise: Promise<T>, ms = 2000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const adapters: Array<[string, () => StorageAdapter]> = [
  ["MemoryStorage", () => new MemoryStorage()],
  ["IndexedDbStorage", () => freshDb()],
];

for (const [label, make] of adapters) {
  async function storeWith(version: number, data: Record<string, unknown>): Promise<LocalStore> {
    const store = new LocalStore(make());
    await store.applyPage([{ model: CUSTOMER, id: ids.a, op: "upsert", version, data }], "c1", false);
    return store;
  }

  describe(`${label}: the store's rules (as in store.test.ts)`, () => {
    it("folds update + update, create + update, update + delete, create + delete", async () => {
      const store = await storeWith(4, { name: "Acme", phone: "1", email: "" });
      const first = await store.queueUpdate(CUSTOMER, ids.a, { phone: "2" }, null);
      assert.equal(await store.queueUpdate(CUSTOMER, ids.a, { email: "a@b.test", name: "Acme" }, null), first);
      let pending = await store.pending();
      assert.deepEqual(
        pending.map((m) => [m.op, m.baseVersion, m.data]),
        [["update", 4, { phone: "2", email: "a@b.test" }]],
      );
      assert.equal(await store.queueUpdate(CUSTOMER, ids.a, { phone: "2" }, null), null);
      assert.equal(await store.queueDelete(CUSTOMER, ids.a, null), first);
      assert.deepEqual(
        (await store.pending()).map((m) => [m.op, m.baseVersion, m.data]),
        [["delete", 4, null]],
      );
      assert.equal(await store.local(CUSTOMER, ids.a), null);

      const created = await store.queueCreate(CUSTOMER, ids.b, { name: "New", phone: "" }, null);
      assert.equal(await store.queueUpdate(CUSTOMER, ids.b, { phone: "9" }, null), created);
      pending = await store.pending();
      assert.deepEqual(pending[1]?.data, { name: "New", phone: "9" });
      assert.equal(await store.queueDelete(CUSTOMER, ids.b, null), null);
      assert.equal((await store.pending()).length, 1);
      assert.equal(await store.local(CUSTOMER, ids.b), null);
    });

    it("freezes a sent entry; a later edit is rebased on the result; the push cursor is adopted", async () => {
      const store = await storeWith(2, { name: "Acme", phone: "1" });
      await store.queueUpdate(CUSTOMER, ids.a, { phone: "2" }, null);
      const batch = await store.nextBatch();
      await store.markSent(batch);
      await store.queueUpdate(CUSTOMER, ids.a, { phone: "3" }, null);
      let pending = await store.pending();
      assert.deepEqual(
        pending.map((m) => [m.sent, m.baseVersion, m.data]),
        [
          [true, 2, { phone: "2" }],
          [false, null, { phone: "3" }],
        ],
      );
      assert.deepEqual(
        (await store.nextBatch()).map((m) => m.mutationId),
        [pending[0]?.mutationId],
      );
      await store.settleBatch(batch, [applied(3, { name: "Acme", phone: "2" })], "c1", "c2");
      pending = await store.pending();
      assert.equal(pending.length, 1);
      assert.equal(pending[0]?.baseVersion, 3);
      assert.equal(await store.cursor(), "c2");
      assert.deepEqual(await store.local(CUSTOMER, ids.a), { name: "Acme", phone: "3" });
    });

    it("keeps a rejection and rebases the next entry on the rejected one's base", async () => {
      const store = await storeWith(5, { name: "Acme", phone: "1" });
      await store.queueUpdate(CUSTOMER, ids.a, { phone: "bad" }, null);
      const batch = await store.nextBatch();
      await store.markSent(batch);
      await store.queueUpdate(CUSTOMER, ids.a, { name: "Acme Ltd" }, null);
      await store.set("cursor", "c9");
      await store.settleBatch(
        batch,
        [{ ...applied(0, null, "rejected"), id: ids.a, version: null, errors: { phone: ["Too bad."] }, reason: "invalid" }],
        "c1",
        "c2",
      );
      assert.equal((await store.pending())[0]?.baseVersion, 5);
      assert.equal(await store.cursor(), "c9");
      const [rejection] = await store.rejections();
      assert.deepEqual(rejection?.errors, { phone: ["Too bad."] });
      await store.dismissRejection(rejection?.mutationId ?? "");
      assert.deepEqual(await store.rejections(), []);
    });

    it("ends a batch before the first entry of another schema", async () => {
      const store = new LocalStore(make());
      await store.queueCreate(CUSTOMER, ids.a, { name: "A" }, "fieldwork.customer=1");
      await store.queueCreate(CUSTOMER, ids.b, { name: "B" }, "fieldwork.customer=2");
      assert.deepEqual(
        (await store.nextBatch()).map((m) => m.objectId),
        [ids.a],
      );
    });

    it("versions only go up; tombstones are pruned", async () => {
      const store = await storeWith(3, { name: "v3" });
      await store.applyPage([{ model: CUSTOMER, id: ids.a, op: "upsert", version: 2, data: { name: "v2" } }], "c2", false);
      assert.deepEqual((await store.serverCopy(CUSTOMER, ids.a))?.data, { name: "v3" });
      assert.equal(await store.adoptResult(CUSTOMER, ids.a, 3, { name: "replayed" }), false);
      await store.applyPage([{ model: CUSTOMER, id: ids.a, op: "delete", version: 4, data: null }], "c4", false);
      assert.deepEqual(await store.serverCopies(), []);
      assert.equal((await store.serverCopy(CUSTOMER, ids.a))?.data, null);
      await store.pruneTombstones();
      assert.equal(await store.serverCopy(CUSTOMER, ids.a), null);
    });

    it("keeps old rows through an initial sync, then drops those it did not bring", async () => {
      const store = new LocalStore(make());
      await store.applyPage(
        [
          { model: CUSTOMER, id: ids.a, op: "upsert", version: 1, data: { name: "A" } },
          { model: CUSTOMER, id: ids.b, op: "upsert", version: 1, data: { name: "B" } },
        ],
        "c1",
        false,
      );
      await store.startOver();
      await store.applyPage([{ model: CUSTOMER, id: ids.a, op: "upsert", version: 2, data: { name: "A2" } }], "i1", true);
      assert.equal((await store.serverCopies()).length, 2);
      await store.applyPage([], "i2", false);
      assert.deepEqual(
        (await store.serverCopies()).map((o) => [o.id, o.data]),
        [[ids.a, { name: "A2" }]],
      );
      assert.equal(await store.get("initial_sync"), null);
    });

    it("re-fetches named models: drops their rows not brought, keeps the others", async () => {
      const store = new LocalStore(make());
      await store.applyPage(
        [
          { model: CUSTOMER, id: ids.a, op: "upsert", version: 1, data: { name: "A" } },
          { model: CUSTOMER, id: ids.b, op: "upsert", version: 1, data: { name: "B" } },
          { model: WORKORDER, id: ids.w, op: "upsert", version: 1, data: { title: "W" } },
        ],
        "c1",
        false,
      );
      await store.beginRefetch([CUSTOMER], "c7");
      await store.applyRefetchPage([{ model: CUSTOMER, id: ids.b, op: "upsert", version: 2, data: { name: "B2" } }], "p1", false);
      assert.deepEqual(
        (await store.serverCopies()).map((o) => [o.model, o.id, o.version]),
        [
          [CUSTOMER, ids.b, 2],
          [WORKORDER, ids.w, 1],
        ],
      );
      assert.equal(await store.cursor(), "c7");
      assert.equal(await store.refetch(), null);
    });

    it("forgets an account: everything but base_url and platform", async () => {
      const store = await storeWith(1, { name: "A" });
      await store.setMany({ base_url: "https://s", platform: "web", token: "t", device_id: DEVICE });
      await store.queueUpdate(CUSTOMER, ids.a, { name: "B" }, null);
      await store.keepFile(SHA_A, new Uint8Array([1]), { size: 1, contentType: "image/png" });
      await store.keepFile(SHA_B, new Uint8Array([2]));
      await store.forgetAccount();
      assert.deepEqual([await store.hasFile(SHA_A), await store.hasFile(SHA_B)], [false, false]);
      assert.deepEqual(await store.pendingUploads(), []);
      assert.deepEqual(
        [await store.get("base_url"), await store.get("platform"), await store.get("token"), await store.cursor()],
        ["https://s", "web", null, null],
      );
      assert.deepEqual(await store.pending(), []);
      assert.deepEqual(await store.serverCopies(), []);
    });

    it("keeps a file with its upload queued, once; an upload id until it is done", async () => {
      const store = new LocalStore(make());
      await store.keepFile(SHA_A, new Uint8Array([1, 2, 3]), { size: 3, contentType: "image/png" });
      await store.setUploadId(SHA_A, "u1");
      await store.keepFile(SHA_A, new Uint8Array([1, 2, 3]), { size: 3, contentType: "text/plain" }); // attached again
      await store.keepFile(SHA_B, new Uint8Array([4])); // downloaded: kept, nothing to send
      assert.deepEqual(
        (await store.pendingUploads()).map((u) => [u.sha256, u.contentType, u.uploadId]),
        [[SHA_A, "image/png", "u1"]],
      );
      assert.deepEqual(await store.file(SHA_B), new Uint8Array([4]));
      await store.uploadDone(SHA_A);
      assert.deepEqual(await store.pendingUploads(), []);
      assert.deepEqual(await store.file(SHA_A), new Uint8Array([1, 2, 3])); // the bytes stay
    });

    it("keeps conflicts, oldest first, and updates their status", async () => {
      const store = new LocalStore(make());
      for (const [id, created] of [
        [ids.c, "2024-01-02T00:00:00.000Z"],
        [ids.conflict, "2024-01-01T00:00:00.000Z"],
      ] as const) {
        await store.recordConflict({ id, model: CUSTOMER, object_id: ids.a, status: "open", created_at: created });
      }
      assert.deepEqual(
        (await store.conflicts()).map((c) => c.conflictId),
        [ids.conflict, ids.c],
      );
      await store.conflictClosed(ids.c, "resolved", 4);
      assert.deepEqual(
        (await store.conflicts()).map((c) => c.conflictId),
        [ids.conflict],
      );
      assert.equal((await store.conflict(ids.c))?.resolvedVersion, 4);
    });
  });

  describe(`${label}: the adapter contract`, () => {
    it("rolls back every write of a transaction that throws", async () => {
      const storage = make();
      await storage.transaction("readwrite", async (tx) => {
        await tx.setMeta("cursor", "c1");
        await tx.putObject({ model: CUSTOMER, id: ids.a, version: 1, data: { name: "A" }, generation: 1 });
      });
      await assert.rejects(
        storage.transaction("readwrite", async (tx) => {
          await tx.setMeta("cursor", "c2");
          await tx.putObject({ model: CUSTOMER, id: ids.a, version: 2, data: { name: "A2" }, generation: 1 });
          await tx.putObject({ model: CUSTOMER, id: ids.b, version: 1, data: { name: "B" }, generation: 1 });
          await tx.addOutbox(entry("m"));
          await tx.putConflict({
            conflictId: ids.conflict,
            mutationId: "m",
            model: CUSTOMER,
            objectId: ids.a,
            op: "update",
            clientData: null,
            serverVersion: 1,
            serverData: null,
            status: "open",
            resolvedVersion: null,
            createdAt: "2024-01-01T00:00:00.000Z",
          });
          await tx.dropObjects({});
          await tx.clearMeta([]);
          throw new Error("crash");
        }),
        /crash/,
      );
      const state = await storage.transaction("readonly", async (tx) => ({
        cursor: await tx.getMeta("cursor"),
        objects: await tx.listObjects(),
        outbox: await tx.listOutbox(),
        conflicts: await tx.listConflicts(),
      }));
      assert.equal(state.cursor, "c1");
      assert.deepEqual(
        state.objects.map((o) => [o.id, o.version]),
        [[ids.a, 1]],
      );
      assert.deepEqual(state.outbox, []);
      assert.deepEqual(state.conflicts, []);
    });

    it("refuses writes in a readonly transaction", async () => {
      const storage = make();
      await assert.rejects(storage.transaction("readonly", (tx) => tx.setMeta("k", "c")), /readonly/);
      assert.equal(await storage.transaction("readonly", (tx) => tx.getMeta("k")), null);
    });

    it("hands out copies: changing a returned row changes nothing stored", async () => {
      const storage = make();
      const row = { model: CUSTOMER, id: ids.a, version: 1, data: { name: "A" }, generation: 0 };
      await storage.transaction("readwrite", (tx) => tx.putObject(row));
      row.data.name = "changed in the caller";
      const held = await storage.transaction("readonly", (tx) => tx.getObject(CUSTOMER, ids.a));
      assert.deepEqual(held?.data, { name: "A" });
      (held?.data as Record<string, unknown>)["name"] = "changed";
      const again = await storage.transaction("readonly", (tx) => tx.listObjects());
      assert.deepEqual(again[0]?.data, { name: "A" });
    });

    it("gives outbox seqs that only go up, past deleted and cleared entries", async () => {
      const storage = make();
      const seqs = await storage.transaction("readwrite", async (tx) => {
        const a = await tx.addOutbox(entry("a"));
        const b = await tx.addOutbox(entry("b", ids.b));
        await tx.deleteOutbox(b.seq);
        const c = await tx.addOutbox(entry("c", ids.c));
        await tx.putOutbox({ ...a, sent: true });
        return [a.seq, b.seq, c.seq];
      });
      assert.ok(seqs[0]! < seqs[1]! && seqs[1]! < seqs[2]!, String(seqs));
      const listed = await storage.transaction("readonly", (tx) => tx.listOutbox());
      assert.deepEqual(
        listed.map((m) => [m.mutationId, m.seq, m.sent]),
        [
          ["a", seqs[0], true],
          ["c", seqs[2], false],
        ],
      );
      await storage.transaction("readwrite", (tx) => tx.clearOutbox());
      const d = await storage.transaction("readwrite", (tx) => tx.addOutbox(entry("d")));
      assert.ok(d.seq > seqs[2]!);
      assert.deepEqual(
        (await storage.transaction("readonly", (tx) => tx.listOutbox())).map((m) => m.mutationId),
        ["d"],
      );
    });

    it("lists objects by model then id, and drops them by every filter", async () => {
      const storage = make();
      const rows = [
        { model: "x.b", id: "2", version: 1, data: { n: 1 }, generation: 1 },
        { model: "x.bc", id: "1", version: 1, data: null, generation: 1 },
        { model: "x.b", id: "1", version: 1, data: null, generation: 2 },
        { model: "x.a", id: "9", version: 1, data: { n: 2 }, generation: 3 },
      ];
      const keys = async (): Promise<string[]> =>
        (await storage.transaction("readonly", (tx) => tx.listObjects())).map((o) => `${o.model}/${o.id}`);
      const reset = (): Promise<void> =>
        storage.transaction("readwrite", async (tx) => {
          await tx.dropObjects({});
          for (const row of rows) await tx.putObject(row);
        });
      await reset();
      assert.deepEqual(await keys(), ["x.a/9", "x.b/1", "x.b/2", "x.bc/1"]);
      assert.deepEqual(
        (await storage.transaction("readonly", (tx) => tx.listObjects("x.b"))).map((o) => o.id),
        ["1", "2"],
      );
      const cases: Array<[Parameters<import("../src/index.js").StorageTx["dropObjects"]>[0], string[]]> = [
        [{ models: ["x.b"] }, ["x.a/9", "x.bc/1"]],
        [{ generationBelow: 2 }, ["x.a/9", "x.b/1"]],
        [{ tombstones: true }, ["x.a/9", "x.b/2"]],
        [{ models: ["x.b", "x.a"], generationBelow: 3 }, ["x.a/9", "x.bc/1"]],
        [{ models: ["x.b"], tombstones: true }, ["x.a/9", "x.b/2", "x.bc/1"]],
        [{ generationBelow: 3, tombstones: true }, ["x.a/9", "x.b/2"]],
        [{}, []],
      ];
      for (const [filter, left] of cases) {
        await reset();
        await storage.transaction("readwrite", (tx) => tx.dropObjects(filter));
        assert.deepEqual(await keys(), left, JSON.stringify(filter));
      }
    });

    it("clears meta but the keys kept; rejections and conflicts by key, oldest first", async () => {
      const storage = make();
      await storage.transaction("readwrite", async (tx) => {
        for (const key of ["a", "b", "c"]) await tx.setMeta(key, key.toUpperCase());
        await tx.setMeta("b", null);
        for (const [id, at] of [
          ["r2", "2024-01-02"],
          ["r1", "2024-01-01"],
        ]) {
          await tx.putRejection({
            mutationId: id!,
            model: CUSTOMER,
            objectId: ids.a,
            op: "update",
            data: null,
            errors: {},
            reason: null,
            createdAt: at!,
          });
        }
      });
      const state = await storage.transaction("readwrite", async (tx) => {
        await tx.clearMeta(["c"]);
        await tx.deleteRejection("r2");
        return {
          a: await tx.getMeta("a"),
          c: await tx.getMeta("c"),
          rejections: (await tx.listRejections()).map((r) => r.mutationId),
        };
      });
      assert.deepEqual(state, { a: null, c: "C", rejections: ["r1"] });
      await storage.transaction("readwrite", (tx) => tx.clearRejections());
      assert.deepEqual(await storage.transaction("readonly", (tx) => tx.listRejections()), []);
    });

    it("keeps files by sha256, as copies of their own, and clears them", async () => {
      const storage = make();
      const buffer = new Uint8Array([9, 9, 1, 2, 3, 9]);
      const view = buffer.subarray(2, 5); // a view of a larger buffer: only its bytes are kept
      await storage.transaction("readwrite", async (tx) => {
        await tx.putFile(SHA_A, view);
        await tx.putFile(SHA_B, new Uint8Array([7]));
        await tx.putFile(SHA_B, new Uint8Array([8])); // replaced
      });
      view[0] = 0; // changing the caller's bytes changes nothing stored
      const held = await storage.transaction("readonly", async (tx) => ({
        a: await tx.getFile(SHA_A),
        b: await tx.getFile(SHA_B),
        c: await tx.getFile(SHA_C),
        has: [await tx.hasFile(SHA_A), await tx.hasFile(SHA_C)],
      }));
      assert.ok(held.a instanceof Uint8Array);
      assert.deepEqual([...held.a], [1, 2, 3]);
      assert.equal(held.a.byteLength, 3);
      assert.deepEqual([...(held.b ?? [])], [8]);
      assert.equal(held.c, null);
      assert.deepEqual(held.has, [true, false]);
      held.a[0] = 0; // nor changing the bytes handed out
      assert.deepEqual([...((await storage.transaction("readonly", (tx) => tx.getFile(SHA_A))) ?? [])], [1, 2, 3]);
      await storage.transaction("readwrite", (tx) => tx.clearFiles());
      assert.equal(await storage.transaction("readonly", (tx) => tx.hasFile(SHA_B)), false);
    });

    it("keeps the upload queue oldest first (then by sha256); replaces, deletes and clears", async () => {
      const storage = make();
      await storage.transaction("readwrite", async (tx) => {
        await tx.putUpload(upload(SHA_C, "2024-01-02T00:00:00.000Z"));
        await tx.putUpload(upload(SHA_B, "2024-01-01T00:00:00.000Z"));
        await tx.putUpload(upload(SHA_A, "2024-01-02T00:00:00.000Z"));
        await tx.putUpload(upload(SHA_B, "2024-01-01T00:00:00.000Z", "u1")); // replaced
      });
      const listed = await storage.transaction("readonly", (tx) => tx.listUploads());
      assert.deepEqual(
        listed.map((u) => [u.sha256, u.uploadId]),
        [
          [SHA_B, "u1"],
          [SHA_A, null],
          [SHA_C, null],
        ],
      );
      assert.deepEqual(await storage.transaction("readonly", (tx) => tx.getUpload(SHA_B)), upload(SHA_B, "2024-01-01T00:00:00.000Z", "u1"));
      (listed[0] as PendingUpload).uploadId = "changed by the caller";
      await storage.transaction("readwrite", (tx) => tx.deleteUpload(SHA_A));
      assert.deepEqual(
        (await storage.transaction("readonly", (tx) => tx.listUploads())).map((u) => [u.sha256, u.uploadId]),
        [
          [SHA_B, "u1"],
          [SHA_C, null],
        ],
      );
      assert.equal(await storage.transaction("readonly", (tx) => tx.getUpload(SHA_A)), null);
      await storage.transaction("readwrite", (tx) => tx.clearUploads());
      assert.deepEqual(await storage.transaction("readonly", (tx) => tx.listUploads()), []);
    });

    it("rolls back file and upload writes of a transaction that throws; refuses them readonly", async () => {
      const storage = make();
      await storage.transaction("readwrite", async (tx) => {
        await tx.putFile(SHA_A, new Uint8Array([1]));
        await tx.putUpload(upload(SHA_A, "2024-01-01T00:00:00.000Z"));
      });
      await assert.rejects(
        storage.transaction("readwrite", async (tx) => {
          await tx.putFile(SHA_B, new Uint8Array([2]));
          await tx.putUpload(upload(SHA_B, "2024-01-02T00:00:00.000Z"));
          await tx.putUpload(upload(SHA_A, "2024-01-01T00:00:00.000Z", "u9"));
          await tx.clearFiles();
          await tx.deleteUpload(SHA_A);
          throw new Error("crash");
        }),
        /crash/,
      );
      const state = await storage.transaction("readonly", async (tx) => ({
        files: [await tx.hasFile(SHA_A), await tx.hasFile(SHA_B)],
        uploads: (await tx.listUploads()).map((u) => [u.sha256, u.uploadId]),
      }));
      assert.deepEqual(state, { files: [true, false], uploads: [[SHA_A, null]] });
      await assert.rejects(storage.transaction("readonly", (tx) => tx.putFile(SHA_C, new Uint8Array())), /readonly/);
      await assert.rejects(storage.transaction("readonly", (tx) => tx.putUpload(upload(SHA_C, "x"))), /readonly/);
    });

    it("does not interleave transactions: concurrent read-modify-writes lose nothing", async () => {
      const storage = make();
      const bump = (): Promise<void> =>
        storage.transaction("readwrite", async (tx) => {
          const n = Number((await tx.getMeta("n")) ?? "0");
          await tx.getObject(CUSTOMER, ids.a); // another round trip in between
          await tx.setMeta("n", String(n + 1));
        });
      await Promise.all(Array.from({ length: 20 }, bump));
      assert.equal(await storage.transaction("readonly", (tx) => tx.getMeta("n")), "20");
    });
  });
}

describe("IndexedDbStorage", () => {
  it("keeps everything across re-opening the database by name (a reload, another tab)", async () => {
    const name = `syncserver-persist-${process.pid}`;
    const first = await IndexedDbStorage.open(name);
    const store = new LocalStore(first);
    await store.applyPage([{ model: CUSTOMER, id: ids.a, op: "upsert", version: 3, data: { name: "A" } }], "c1", false);
    const mutationId = await store.queueUpdate(CUSTOMER, ids.a, { name: "A2" }, null);
    await store.set("device_id", DEVICE);
    await first.close();

    const second = new IndexedDbStorage(name); // lazily opened by its first transaction
    opened.push(second);
    const again = new LocalStore(second);
    assert.equal(await again.get("device_id"), DEVICE);
    assert.equal(await again.cursor(), "c1");
    assert.deepEqual(
      (await again.pending()).map((m) => [m.mutationId, m.baseVersion]),
      [[mutationId, 3]],
    );
    assert.deepEqual(await again.local(CUSTOMER, ids.a), { name: "A2" });
    // Another database name is another device.
    assert.equal(await new LocalStore(freshDb()).get("device_id"), null);
  });

  it("upgrades a version-1 database to version 2: files and uploads added, every row of version 1 kept", async () => {
    const name = `syncserver-v1-${process.pid}`;
    // The database as version 1 of this package made it, with a device's state in it.
    const v1 = await openDB(name, 1, {
      upgrade(db) {
        db.createObjectStore("meta", { keyPath: "key" });
        db.createObjectStore("objects", { keyPath: ["model", "id"] }).createIndex("generation", "generation");
        db.createObjectStore("outbox", { keyPath: "seq", autoIncrement: true });
        db.createObjectStore("conflicts", { keyPath: "conflictId" });
        db.createObjectStore("rejections", { keyPath: "mutationId" });
      },
    });
    await v1.put("meta", { key: "cursor", value: "c7" });
    await v1.put("meta", { key: "device_id", value: DEVICE });
    await v1.put("objects", { model: CUSTOMER, id: ids.a, version: 3, data: { name: "A" }, generation: 1 });
    const first = await v1.add("outbox", entry("m0"));
    const seq = (await v1.add("outbox", { ...entry("m1"), data: { name: "A2" }, baseVersion: 3 })) as number;
    await v1.delete("outbox", first);
    await v1.put("conflicts", {
      conflictId: ids.conflict, mutationId: "m", model: CUSTOMER, objectId: ids.a, op: "update", clientData: null,
      serverVersion: 3, serverData: null, status: "open", resolvedVersion: null, createdAt: "2024-01-01T00:00:00.000Z",
    });
    await v1.put("rejections", {
      mutationId: "r1", model: CUSTOMER, objectId: ids.a, op: "update", data: null, errors: {}, reason: null,
      createdAt: "2024-01-01T00:00:00.000Z",
    });
    v1.close();

    const storage = new IndexedDbStorage(name);
    opened.push(storage);
    const store = new LocalStore(storage);
    assert.equal(await store.cursor(), "c7");
    assert.equal(await store.get("device_id"), DEVICE);
    assert.deepEqual(await store.local(CUSTOMER, ids.a), { name: "A2" });
    assert.deepEqual(
      (await store.pending()).map((m) => [m.seq, m.mutationId]),
      [[seq, "m1"]],
    );
    assert.equal((await store.conflicts())[0]?.conflictId, ids.conflict);
    assert.equal((await store.rejections())[0]?.mutationId, "r1");
    // The new stores work, in the same transactions as the old ones.
    await store.keepFile(SHA_A, new Uint8Array([1, 2]), { size: 2, contentType: "image/png" });
    assert.deepEqual(await store.file(SHA_A), new Uint8Array([1, 2]));
    assert.equal((await store.pendingUploads())[0]?.sha256, SHA_A);
    // The outbox's key generator went on from where version 1 left it.
    const next = await storage.transaction("readwrite", (tx) => tx.addOutbox(entry("m2", ids.b)));
    assert.ok(next.seq > seq, `${next.seq} after ${seq}`);
    await storage.close();

    const raw = await openDB(name);
    assert.equal(raw.version, IDB_VERSION);
    assert.deepEqual([...raw.objectStoreNames].sort(), ["conflicts", "files", "meta", "objects", "outbox", "rejections", "uploads"]);
    raw.close();
  });

  it("a failure of IndexedDB itself aborts the whole transaction, as a StorageError", async () => {
    const storage = freshDb();
    await assert.rejects(
      storage.transaction("readwrite", async (tx) => {
        await tx.setMeta("cursor", "c2");
        // No id: not a valid key.
        await tx.putObject({ model: CUSTOMER, id: undefined as unknown as string, version: 1, data: {}, generation: 0 });
      }),
      (error: unknown) => error instanceof StorageError && /DataError/.test(error.message),
    );
    assert.equal(await storage.transaction("readonly", (tx) => tx.getMeta("cursor")), null);
  });

  it("QuotaExceededError surfaces as StorageFull, never a hang, and nothing is written", async () => {
    const storage = freshDb();
    const store = new LocalStore(storage);
    await store.set("cursor", "c1");
    const restore = failingPuts("QuotaExceededError");
    try {
      // Thrown by the request…
      await within(
        assert.rejects(store.applyPage([upsertChange(ids.a)], "c2", false), (error: unknown) => {
          assert.ok(error instanceof StorageFull, String(error));
          assert.ok(error instanceof StorageError);
          assert.equal((error.cause as DOMException).name, "QuotaExceededError");
          return true;
        }),
      );
      // …or swallowed by `fn`: the transaction still aborts, and says why.
      await within(
        assert.rejects(
          storage.transaction("readwrite", async (tx) => {
            await tx.setMeta("cursor", "c3").catch(() => undefined);
            return "done";
          }),
          StorageFull,
        ),
      );
    } finally {
      restore();
    }
    assert.equal(await store.cursor(), "c1");
    assert.deepEqual(await store.serverCopies(), []);
    await store.applyPage([upsertChange(ids.a)], "c2", false); // room again: works
    assert.equal(await store.cursor(), "c2");
  });

  it("an aborted transaction is a StorageError saying so; a transaction that outlived fn's awaits too", async () => {
    const storage = freshDb();
    const restore = failingPuts("AbortError");
    try {
      await within(
        assert.rejects(
          storage.transaction("readwrite", (tx) => tx.setMeta("k", "v")),
          (error: unknown) => error instanceof StorageError && !(error instanceof StorageFull) && /aborted/.test(error.message),
        ),
      );
    } finally {
      restore();
    }
    // `fn` awaited a timer: IndexedDB committed meanwhile; the next operation is refused, clearly.
    await assert.rejects(
      storage.transaction("readwrite", async (tx) => {
        await tx.setMeta("k", "1");
        await new Promise((resolve) => setTimeout(resolve, 5));
        await tx.setMeta("k", "2");
      }),
      (error: unknown) => error instanceof StorageError && /awaited something other/.test(error.message),
    );
  });
});

function upsertChange(id: string) {
  return { model: CUSTOMER, id, op: "upsert" as const, version: 1, data: { name: "A" } };
}

describe("SyncClient on IndexedDbStorage", () => {
  type Mut = { mutation_id: string; op: string; id: string; base_version: number | null; data: unknown };
  const sentMutations = (server: FakeServer, i = 0): Mut[] =>
    (server.callsTo("POST", PUSH)[i]?.body as { mutations: Mut[] }).mutations;
  const answer = (m: Mut, version: number, data: Record<string, unknown>): PushResult => ({
    mutation_id: m.mutation_id,
    status: "applied",
    id: m.id,
    version,
    data,
    conflict_id: null,
    errors: null,
    reason: null,
  });

  it("pulls, pushes edits and keeps it all for the next visit", async () => {
    const storage = freshDb();
    const { client, server } = await rig({ storage });
    server.on("GET", PULL, () => page([upsert(CUSTOMER, ids.a, 1, { name: "A", phone: "" })], "c1"));
    let report = await client.sync();
    assert.equal(report.pulled, 1);
    assert.equal(report.initial, true);

    const created = await client.create(CUSTOMER, { name: "B" }, { id: ids.b });
    await client.update(CUSTOMER, ids.a, { phone: "555" });
    server.on("POST", PUSH, (call) => {
      const [b, a] = (call.body as { mutations: Mut[] }).mutations;
      assert.ok(a && b);
      return json(200, {
        results: [answer(b, 1, { ...(b.data as object) }), answer(a, 2, { name: "A", phone: "555" })],
        cursor: "c2",
      });
    });
    server.on("GET", PULL, () => page([], "c3"));
    report = await client.sync();
    assert.deepEqual(report.pushed, { applied: 2 });
    assert.deepEqual(
      sentMutations(server).map((m) => [m.op, m.id, m.base_version]),
      [
        ["create", created, null],
        ["update", ids.a, 1],
      ],
    );
    await storage.close();

    // The next visit: a new connection to the same database, a new client.
    const next = new SyncClient({ baseUrl: "https://sync.test", storage: new IndexedDbStorage(storage.name), fetch: server.fetch });
    const status = await next.status();
    assert.equal(status.deviceId, DEVICE);
    assert.equal(status.initialSyncDone, true);
    assert.deepEqual(status.pending, []);
    assert.equal(await next.store.cursor(), "c3");
    assert.deepEqual(
      (await next.all(CUSTOMER)).map((o) => [o.id, o.data["phone"]]),
      [
        [ids.a, "555"],
        [ids.b, ""],
      ],
    );
    await (next.store.adapter as IndexedDbStorage).close();
  });

  it("a tab closed with pending edits loses nothing: the next one pushes them", async () => {
    const name = `syncserver-closed-tab-${process.pid}`;
    const server = new FakeServer();
    const options = { baseUrl: "https://sync.test", fetch: server.fetch, sleep: async () => undefined };
    const first = new IndexedDbStorage(name);
    const tab = new SyncClient({ ...options, storage: first });
    await tab.useToken("alice", "t0ken");
    await tab.store.setMany({ device_id: DEVICE, models: JSON.stringify(MODELS) });
    await tab.create(CUSTOMER, { name: "Offline" }, { id: ids.c }); // offline: never synced
    await first.close(); // the tab is closed

    const second = new IndexedDbStorage(name);
    opened.push(second);
    const later = new SyncClient({ ...options, storage: second });
    server.on("POST", PUSH, (call) => {
      const [m] = (call.body as { mutations: Mut[] }).mutations;
      assert.ok(m);
      return json(200, { results: [answer(m, 1, { name: "Offline" })], cursor: "c1" });
    });
    server.on("GET", PULL, () => page([], "c1"));
    const report = await later.sync();
    assert.deepEqual(report.pushed, { applied: 1 });
    assert.equal(sentMutations(server)[0]?.id, ids.c);
    assert.equal(server.callsTo("POST", PUSH)[0]?.headers["x-device-id"], DEVICE);
    assert.deepEqual(await later.store.pending(), []);
  });
});
