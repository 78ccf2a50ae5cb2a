import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { LocalStore, MemoryStorage, type PushResult } from "../src/index.js";
import { CUSTOMER, ids } from "./helpers.js";

function applied(version: number, data: Record<string, unknown> | null, status: PushResult["status"] = "applied"): PushResult {
  return { mutation_id: null, status, id: null, version, data, conflict_id: null, errors: null };
}

async function storeWith(version: number, data: Record<string, unknown>): Promise<LocalStore> {
  const store = new LocalStore(new MemoryStorage());
  await store.applyPage([{ model: CUSTOMER, id: ids.a, op: "upsert", version, data }], "c1", false);
  return store;
}

describe("the outbox folds edits (docs/protocol.md, 'The local store')", () => {
  it("update + update → one update with the union of the changed fields", async () => {
    const store = await storeWith(4, { name: "Acme", phone: "1", email: "" });
    const first = await store.queueUpdate(CUSTOMER, ids.a, { phone: "2" }, null);
    const second = await store.queueUpdate(CUSTOMER, ids.a, { email: "a@b.test", name: "Acme" }, null);
    assert.equal(first, second);
    const pending = await store.pending();
    assert.equal(pending.length, 1);
    assert.equal(pending[0]?.op, "update");
    assert.equal(pending[0]?.baseVersion, 4);
    // `name` did not change: an update carries only the fields that differ.
    assert.deepEqual(pending[0]?.data, { phone: "2", email: "a@b.test" });
    assert.deepEqual(await store.local(CUSTOMER, ids.a), { name: "Acme", phone: "2", email: "a@b.test" });
    assert.equal(await store.queueUpdate(CUSTOMER, ids.a, { phone: "2" }, null), null); // no change: nothing
  });

  it("create + update → the create with the new values", async () => {
    const store = new LocalStore(new MemoryStorage());
    const id = await store.queueCreate(CUSTOMER, ids.b, { name: "New", phone: "" }, null);
    assert.equal(await store.queueUpdate(CUSTOMER, ids.b, { phone: "9" }, null), id);
    const pending = await store.pending();
    assert.equal(pending.length, 1);
    assert.equal(pending[0]?.op, "create");
    assert.equal(pending[0]?.baseVersion, null);
    assert.deepEqual(pending[0]?.data, { name: "New", phone: "9" });
  });

  it("update + delete → the delete, with the update's base_version", async () => {
    const store = await storeWith(7, { name: "Acme" });
    const id = await store.queueUpdate(CUSTOMER, ids.a, { name: "Acme 2" }, null);
    assert.equal(await store.queueDelete(CUSTOMER, ids.a, null), id);
    const pending = await store.pending();
    assert.deepEqual(
      pending.map((m) => [m.op, m.baseVersion, m.data]),
      [["delete", 7, null]],
    );
    assert.equal(await store.local(CUSTOMER, ids.a), null);
  });

  it("create + delete → nothing at all", async () => {
    const store = new LocalStore(new MemoryStorage());
    await store.queueCreate(CUSTOMER, ids.b, { name: "Gone" }, null);
    assert.equal(await store.queueDelete(CUSTOMER, ids.b, null), null);
    assert.deepEqual(await store.pending(), []);
    assert.equal(await store.local(CUSTOMER, ids.b), null);
  });

  it("a sent entry is frozen: a later edit gets its own entry, rebased on the result", async () => {
    const store = await storeWith(2, { name: "Acme", phone: "1" });
    await store.queueUpdate(CUSTOMER, ids.a, { phone: "2" }, null);
    const batch = await store.nextBatch();
    await store.markSent(batch);
    await store.queueUpdate(CUSTOMER, ids.a, { phone: "3" }, null);
    let pending = await store.pending();
    assert.equal(pending.length, 2);
    assert.deepEqual(pending[0]?.data, { phone: "2" }); // unchanged
    assert.equal(pending[0]?.sent, true);
    assert.equal(pending[1]?.baseVersion, null); // learnt from the first one's result
    // The second waits for the first's result: not in the same batch.
    assert.deepEqual(
      (await store.nextBatch()).map((m) => m.mutationId),
      [pending[0]?.mutationId],
    );
    await store.settleBatch(batch, [applied(3, { name: "Acme", phone: "2" })], "c1", "c2");
    pending = await store.pending();
    assert.equal(pending.length, 1);
    assert.equal(pending[0]?.baseVersion, 3);
    assert.equal(await store.cursor(), "c2"); // the push cursor: ours was the one sent
    assert.deepEqual(await store.local(CUSTOMER, ids.a), { name: "Acme", phone: "3" });
  });

  it("a rejected entry rebases the next on its own base version", async () => {
    const store = await storeWith(5, { name: "Acme", phone: "1" });
    await store.queueUpdate(CUSTOMER, ids.a, { phone: "bad" }, null);
    const batch = await store.nextBatch();
    await store.markSent(batch);
    await store.queueUpdate(CUSTOMER, ids.a, { name: "Acme Ltd" }, null);
    const rejected: PushResult = {
      mutation_id: null,
      status: "rejected",
      id: ids.a,
      version: null,
      data: null,
      conflict_id: null,
      errors: { phone: ["Too bad."] },
      reason: "invalid",
    };
    // Our cursor moved meanwhile (a pull): the push's is not taken.
    await store.set("cursor", "c9");
    await store.settleBatch(batch, [rejected], "c1", "c2");
    const pending = await store.pending();
    assert.equal(pending[0]?.baseVersion, 5);
    assert.equal(await store.cursor(), "c9");
    const [rejection] = await store.rejections();
    assert.deepEqual(rejection?.errors, { phone: ["Too bad."] });
    assert.equal(rejection?.reason, "invalid");
    assert.deepEqual(await store.local(CUSTOMER, ids.a), { name: "Acme Ltd", phone: "1" });
  });

  it("a batch ends before the first entry of another schema", async () => {
    const store = new LocalStore(new MemoryStorage());
    await store.queueCreate(CUSTOMER, ids.a, { name: "A" }, "fieldwork.customer=1");
    await store.queueCreate(CUSTOMER, ids.b, { name: "B" }, "fieldwork.customer=2");
    assert.deepEqual(
      (await store.nextBatch()).map((m) => m.objectId),
      [ids.a],
    );
  });
});

describe("server copies", () => {
  it("versions only go up; a push result of the version held is not taken", async () => {
    const store = await storeWith(3, { name: "v3" });
    await store.applyPage([{ model: CUSTOMER, id: ids.a, op: "upsert", version: 2, data: { name: "v2" } }], "c2", false);
    assert.deepEqual((await store.serverCopy(CUSTOMER, ids.a))?.data, { name: "v3" });
    assert.equal(await store.adoptResult(CUSTOMER, ids.a, 3, { name: "replayed" }), false);
    // A pulled change of the same version is taken (the object entering our scope again).
    await store.applyPage([{ model: CUSTOMER, id: ids.a, op: "upsert", version: 3, data: { name: "v3 again" } }], "c3", false);
    assert.deepEqual((await store.serverCopy(CUSTOMER, ids.a))?.data, { name: "v3 again" });
    await store.applyPage([{ model: CUSTOMER, id: ids.a, op: "delete", version: 4, data: null }], "c4", false);
    assert.equal(await store.local(CUSTOMER, ids.a), null);
    assert.deepEqual(await store.serverCopies(), []);
    await store.pruneTombstones();
    assert.equal(await store.serverCopy(CUSTOMER, ids.a), null);
  });

  it("an initial sync keeps old rows visible until it ends, then drops those it did not bring", async () => {
    const store = new LocalStore(new MemoryStorage());
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
    assert.equal((await store.serverCopies()).length, 2); // still shown
    await store.applyPage([], "i2", false);
    assert.deepEqual(
      (await store.serverCopies()).map((o) => [o.id, o.data]),
      [[ids.a, { name: "A2" }]],
    );
    assert.equal(await store.get("initial_sync"), null);
  });
});

// The adapter contract (rollback, one transaction at a time, read-only
// transactions, copies) runs against MemoryStorage and IndexedDbStorage alike:
// test/idb.test.ts, "the adapter contract".
