import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  ConflictSettled,
  NetworkError,
  NotLoggedIn,
  type Progress,
  type PushResult,
  StaleResolution,
  UnsentChanges,
  UpgradeRequired,
  ValidationError,
} from "../src/index.js";
import { type Call, CUSTOMER, DEVICE, FakeServer, WORKORDER, del, ids, json, page, rig, upsert } from "./helpers.js";

const PULL = "/api/v1/sync/pull/";
const PUSH = "/api/v1/sync/push/";

type Mut = { mutation_id: string; model: string; op: string; id: string; base_version: number | null; data: unknown };

function mutations(call: Call | undefined): Mut[] {
  return (call?.body as { mutations: Mut[] }).mutations;
}

function result(m: Mut, status: PushResult["status"], version: number | null, data: Record<string, unknown> | null, extra: Partial<PushResult> = {}): PushResult {
  return { mutation_id: m.mutation_id, status, id: m.id, version, data, conflict_id: null, errors: null, reason: null, ...extra };
}

/** A rig whose store already holds customers a, b, c, d at version 2 (pulled with cursor "c1"). */
async function synced() {
  const r = await rig();
  r.server.on("GET", PULL, () =>
    page(
      [ids.a, ids.b, ids.c, ids.d].map((id) => upsert(CUSTOMER, id, 2, { name: `N${id.slice(-1)}`, phone: "0" })),
      "c1",
    ),
  );
  await r.client.pull();
  return r;
}

describe("SyncClient: push results", () => {
  it("handles applied, merged, conflict and rejected, and adopts the push cursor", async () => {
    const { client, server } = await synced();
    await client.update(CUSTOMER, ids.a, { phone: "applied" });
    await client.update(CUSTOMER, ids.b, { phone: "merged" });
    await client.update(CUSTOMER, ids.c, { phone: "conflict" });
    await client.update(CUSTOMER, ids.d, { phone: "rejected" });
    server.on("POST", PUSH, (call) => {
      const [a, b, c, d] = mutations(call);
      assert.ok(a && b && c && d);
      return json(200, {
        results: [
          result(a, "applied", 3, { name: "Na", phone: "applied" }),
          result(b, "merged", 4, { name: "Nb elsewhere", phone: "merged" }),
          result(c, "conflict", 3, { name: "Nc", phone: "server's" }, { conflict_id: ids.conflict }),
          result(d, "rejected", null, null, { errors: { phone: ["Nope."] }, reason: "invalid" }),
        ],
        cursor: "c2",
      });
    });
    server.on("GET", PULL, () => page([], "c3"));
    // The open list does not name it (yet); its own page says it is still open.
    server.on("GET", "/api/v1/sync/conflicts/", () => json(200, []));
    server.on("GET", `/api/v1/sync/conflicts/${ids.conflict}/`, () =>
      json(200, { id: ids.conflict, model: CUSTOMER, object_id: ids.c, status: "open" }),
    );
    const report = await client.sync();

    const sent = mutations(server.callsTo("POST", PUSH)[0]);
    assert.deepEqual(
      sent.map((m) => [m.op, m.id, m.base_version, m.data]),
      [
        ["update", ids.a, 2, { phone: "applied" }],
        ["update", ids.b, 2, { phone: "merged" }],
        ["update", ids.c, 2, { phone: "conflict" }],
        ["update", ids.d, 2, { phone: "rejected" }],
      ],
    );
    assert.equal((server.callsTo("POST", PUSH)[0]?.body as { cursor: string }).cursor, "c1");
    assert.equal(server.callsTo("GET", PULL)[1]?.url.searchParams.get("cursor"), "c2"); // the push's cursor
    assert.deepEqual(report.pushed, { applied: 1, merged: 1, conflict: 1, rejected: 1 });
    assert.deepEqual(report.conflicts, [ids.conflict]);
    assert.equal(report.rejected.length, 1);
    assert.deepEqual(await client.store.pending(), []);

    // applied / merged: the server's state and version are the server copy.
    assert.deepEqual(await client.store.serverCopy(CUSTOMER, ids.a), {
      model: CUSTOMER, id: ids.a, version: 3, data: { name: "Na", phone: "applied" }, generation: 1,
    });
    assert.deepEqual(await client.get(CUSTOMER, ids.b), { name: "Nb elsewhere", phone: "merged" });
    assert.equal((await client.store.serverCopy(CUSTOMER, ids.b))?.version, 4);
    // conflict: the server's state adopted, the conflict kept with the user's values.
    assert.deepEqual(await client.get(CUSTOMER, ids.c), { name: "Nc", phone: "server's" });
    const [conflict] = await client.conflicts();
    assert.equal(conflict?.conflictId, ids.conflict);
    assert.equal(conflict?.objectId, ids.c);
    assert.deepEqual(conflict?.clientData, { phone: "conflict" });
    assert.equal(conflict?.serverVersion, 3);
    // rejected: nothing written, the errors kept, the object shows its server copy again.
    assert.deepEqual(await client.get(CUSTOMER, ids.d), { name: "Nd", phone: "0" });
    const [rejection] = await client.rejections();
    assert.deepEqual(rejection?.errors, { phone: ["Nope."] });
    assert.equal(rejection?.objectId, ids.d);
    assert.deepEqual(server.unmatched, []);
  });

  it("sends the second edit of an object only after the first one's result, rebased on it", async () => {
    const { client, server } = await synced();
    await client.update(CUSTOMER, ids.a, { phone: "1" });
    const [first] = await client.store.nextBatch();
    assert.ok(first);
    await client.store.markSent([first]); // went out before; its answer was lost
    await client.update(CUSTOMER, ids.a, { phone: "2" });
    await client.update(CUSTOMER, ids.b, { phone: "3" });
    server.on("POST", PUSH, (call) => {
      const ms = mutations(call);
      assert.equal(ms.length, 1); // b waits too: the order of edits is kept
      return json(200, { results: [result(ms[0] as Mut, "applied", 3, { name: "Na", phone: "1" })], cursor: "c1" });
    });
    server.on("POST", PUSH, (call) => {
      const ms = mutations(call);
      return json(200, {
        results: [
          result(ms[0] as Mut, "applied", 4, { name: "Na", phone: "2" }),
          result(ms[1] as Mut, "applied", 3, { name: "Nb", phone: "3" }),
        ],
        cursor: "c1",
      });
    });
    const report = await client.push();
    const [one, two] = server.callsTo("POST", PUSH);
    assert.equal(mutations(one)[0]?.mutation_id, first.mutationId);
    assert.deepEqual(mutations(one)[0]?.data, { phone: "1" });
    assert.deepEqual(
      mutations(two).map((m) => [m.id, m.base_version, m.data]),
      [
        [ids.a, 3, { phone: "2" }],
        [ids.b, 2, { phone: "3" }],
      ],
    );
    assert.deepEqual(report.pushed, { applied: 3 });
  });
});

describe("SyncClient: an edit while a push is being built", () => {
  it("is never folded into the entry going out: it queues behind it and goes next", async () => {
    const { client, server } = await synced();
    await client.update(CUSTOMER, ids.a, { phone: "1" });
    server.on("POST", PUSH, (call) => {
      const [m] = mutations(call);
      assert.ok(m);
      return json(200, { results: [result(m, "applied", 3, { name: "Na", phone: "1" })], cursor: "c1" });
    });
    server.on("POST", PUSH, (call) => {
      const [m] = mutations(call);
      assert.ok(m);
      return json(200, { results: [result(m, "applied", 4, { name: "Na", phone: "2" })], cursor: "c1" });
    });
    // The push reads its batch; the edit comes in before the request is built.
    const pushing = client.push();
    const editing = client.update(CUSTOMER, ids.a, { phone: "2" });
    await Promise.all([pushing, editing]);
    await client.push();
    const sent = server.callsTo("POST", PUSH).flatMap((call) => mutations(call).map((m) => m.data));
    assert.deepEqual(sent, [{ phone: "1" }, { phone: "2" }]);
    assert.deepEqual(await client.get(CUSTOMER, ids.a), { name: "Na", phone: "2" });
    assert.deepEqual(await client.store.pending(), []);
  });
});

describe("SyncClient: pulls", () => {
  it("never overwrites an edit made while a pull is in flight", async () => {
    const { client, server } = await synced();
    server.on("GET", PULL, async () => {
      // The user edits the object while its newer state is on the way.
      await client.update(CUSTOMER, ids.a, { phone: "mine" });
      return page([upsert(CUSTOMER, ids.a, 3, { name: "Renamed elsewhere", phone: "0" })], "c2");
    });
    await client.pull();
    assert.deepEqual((await client.store.serverCopy(CUSTOMER, ids.a))?.data, { name: "Renamed elsewhere", phone: "0" });
    assert.deepEqual(await client.get(CUSTOMER, ids.a), { name: "Renamed elsewhere", phone: "mine" });
    const [entry] = await client.store.pending();
    assert.equal(entry?.baseVersion, 2); // the version the edit was made on: the server merges
    server.on("POST", PUSH, (call) => {
      const [m] = mutations(call);
      assert.ok(m);
      return json(200, { results: [result(m, "merged", 4, { name: "Renamed elsewhere", phone: "mine" })], cursor: "c2" });
    });
    server.on("GET", PULL, () => page([], "c3"));
    const report = await client.sync();
    assert.equal(mutations(server.callsTo("POST", PUSH)[0])[0]?.base_version, 2);
    assert.deepEqual(report.pushed, { merged: 1 });
    assert.deepEqual(await client.get(CUSTOMER, ids.a), { name: "Renamed elsewhere", phone: "mine" });
  });

  it("reports progress from the server's remaining, page by page", async () => {
    const { client, server } = await rig();
    server.on("GET", PULL, () => page([upsert(CUSTOMER, ids.a, 1, { name: "A" }), upsert(CUSTOMER, ids.b, 1, { name: "B" })], "p1", true, 3));
    server.on("GET", PULL, () => page([upsert(CUSTOMER, ids.c, 1, { name: "C" })], "p2", true, 2));
    server.on("GET", PULL, () => page([upsert(CUSTOMER, ids.d, 1, { name: "D" }), del(CUSTOMER, ids.b, 2)], "p3", false, 0));
    const seen: Progress[] = [];
    const report = await client.pull({ onProgress: (p) => seen.push(p) });
    assert.deepEqual(
      seen.map((p) => [p.pulled, p.remaining, p.total, p.initial]),
      [
        [2, 3, 5, true],
        [3, 2, 5, true],
        [5, 0, 5, true],
      ],
    );
    assert.equal(report.pulled, 5);
    assert.equal(report.initial, true);
    assert.deepEqual(
      server.callsTo("GET", PULL).map((c) => c.url.searchParams.get("cursor")),
      [null, "p1", "p2"],
    );
    assert.deepEqual(
      (await client.all(CUSTOMER)).map((o) => o.id),
      [ids.a, ids.c, ids.d],
    );
  });

  it("410 without models: pushes, starts over keeping the outbox, drops what the initial sync did not bring", async () => {
    const { client, server } = await synced();
    await client.update(CUSTOMER, ids.a, { phone: "pushed first" });
    server.on("POST", PUSH, (call) => {
      const [m] = mutations(call);
      return json(200, { results: [result(m as Mut, "applied", 3, { name: "Na", phone: "pushed first" })], cursor: "c1" });
    });
    server.on("GET", PULL, async () => {
      await client.update(CUSTOMER, ids.b, { phone: "edited meanwhile" });
      return json(410, { code: "resync_required", detail: "Too old." });
    });
    server.on("GET", PULL, () => page([upsert(CUSTOMER, ids.a, 3, { name: "Na", phone: "pushed first" })], "i1", true, 1));
    server.on("GET", PULL, () => page([upsert(CUSTOMER, ids.b, 2, { name: "Nb", phone: "0" })], "i2", false, 0));
    const report = await client.sync();
    assert.equal(report.resynced, true);
    assert.equal(report.initial, true);
    assert.deepEqual(
      server.callsTo("GET", PULL).slice(1).map((c) => c.url.searchParams.get("cursor")),
      ["c1", null, "i1"],
    );
    // c and d were not brought: gone on the server. The edit made meanwhile is still pending.
    assert.deepEqual(
      (await client.store.serverCopies()).map((o) => o.id),
      [ids.a, ids.b],
    );
    assert.deepEqual(await client.get(CUSTOMER, ids.b), { name: "Nb", phone: "edited meanwhile" });
    assert.equal((await client.store.pending()).length, 1);
    assert.equal(await client.store.cursor(), "i2");
  });

  it("410 with models: pushes, re-fetches those models only, then goes on from the 410's cursor; an interruption resumes", async () => {
    const { client, server } = await synced();
    // A work order held too, which the re-fetch of customers must not touch.
    server.on("GET", PULL, () => page([upsert(WORKORDER, ids.w, 1, { customer: ids.a, title: "Fix" })], "c1b"));
    await client.pull();
    await client.update(CUSTOMER, ids.c, { phone: "before the re-fetch" });
    server.on("POST", PUSH, (call) => {
      const [m] = mutations(call);
      return json(200, { results: [result(m as Mut, "applied", 3, { name: "Nc", phone: "before the re-fetch" })], cursor: "c1b" });
    });
    server.on("GET", PULL, () =>
      json(410, { code: "resync_required", detail: "Fetch again.", models: [CUSTOMER], cursor: "after" }),
    );
    server.on("GET", PULL, () => page([upsert(CUSTOMER, ids.a, 5, { name: "Na v5" })], "r1", true, 2));
    // The connection drops on the second page of the re-fetch.
    const sync1 = await client.sync().catch((e: unknown) => e);
    assert.ok(sync1 instanceof NetworkError, String(sync1));
    const kept = await client.store.refetch();
    assert.deepEqual(kept, { models: [CUSTOMER], cursor: "after", generation: 2, page: "r1" });
    assert.equal((await client.store.serverCopies(CUSTOMER)).length, 4); // nothing dropped yet

    server.on("GET", PULL, () => page([upsert(CUSTOMER, ids.c, 3, { name: "Nc", phone: "before the re-fetch" })], "r2", false, 0));
    server.on("GET", PULL, () => page([], "head"));
    const report = await client.sync();
    const pulls = server.callsTo("GET", PULL);
    const calls = pulls.slice(-3).map((c) => [c.url.searchParams.get("models"), c.url.searchParams.get("cursor")]);
    assert.deepEqual(calls, [
      [CUSTOMER, "r1"], // resumed where it stopped
      [CUSTOMER, "r1"],
      [null, "after"], // then the 410's cursor, no filter
    ]);
    // The first page of the re-fetch had no cursor and the models filter.
    const first = pulls.find((c) => c.url.searchParams.get("models") === CUSTOMER);
    assert.equal(first?.url.searchParams.get("cursor"), null);
    assert.deepEqual(report.refetched, [CUSTOMER]);
    // Customers b and d were not brought: dropped. The work order stays.
    assert.deepEqual(
      (await client.store.serverCopies()).map((o) => [o.model, o.id, o.version]),
      [
        [CUSTOMER, ids.a, 5],
        [CUSTOMER, ids.c, 3],
        [WORKORDER, ids.w, 1],
      ],
    );
    assert.equal(await client.store.refetch(), null);
    assert.equal(await client.store.cursor(), "head");
    // The outbox went out before the re-fetch.
    const push = server.callsTo("POST", PUSH)[0];
    assert.ok(push && server.calls.indexOf(push) < server.calls.indexOf(first as Call));
  });

  it("426: pushes the outbox, then throws UpgradeRequired with the report", async () => {
    const { client, server } = await synced();
    await client.update(CUSTOMER, ids.a, { phone: "drained" });
    server.on("POST", PUSH, (call) => {
      const [m] = mutations(call);
      return json(200, { results: [result(m as Mut, "applied", 3, { name: "Na", phone: "drained" })], cursor: "c1" });
    });
    server.on("GET", PULL, () =>
      json(426, { code: "upgrade_required", detail: "Upgrade.", minimum_version: "2.0.0", platform: "web", upgrade_url: null }),
    );
    const error = await client.sync().catch((e: unknown) => e);
    assert.ok(error instanceof UpgradeRequired, String(error));
    assert.equal(error.minimumVersion, "2.0.0");
    assert.deepEqual((error.report as { pushed: unknown }).pushed, { applied: 1 });
    assert.deepEqual(await client.store.pending(), []);
    assert.deepEqual(await client.get(CUSTOMER, ids.a), { name: "Na", phone: "drained" });
    assert.equal(await client.store.cursor(), "c1"); // nothing pulled
  });
});

describe("SyncClient: validation from discovery", () => {
  it("refuses bad edits offline, with the server's messages, and queues nothing", async () => {
    const { client } = await synced();
    const refused = async (fn: () => Promise<unknown>): Promise<Record<string, string[]>> => {
      const error = await fn().then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(error instanceof ValidationError, `expected a ValidationError, got ${String(error)}`);
      return error.errors;
    };
    assert.deepEqual(await refused(() => client.create(CUSTOMER, { phone: "1" })), { name: ["This field is required."] });
    assert.deepEqual(await refused(() => client.create(CUSTOMER, { name: 5 })), {
      name: ["Expected a JSON value of type string."],
    });
    assert.deepEqual(await refused(() => client.create(CUSTOMER, { name: "  " })), { name: ["This field may not be blank."] });
    assert.deepEqual(await refused(() => client.create(CUSTOMER, { name: "x".repeat(201) })), {
      name: ["Ensure this value has at most 200 characters (it has 201)."],
    });
    assert.deepEqual(await refused(() => client.update(CUSTOMER, ids.a, { email: "not-an-address" })), {
      email: ["Enter a valid email address."],
    });
    assert.deepEqual(await refused(() => client.update(CUSTOMER, ids.a, { website: "example.com" })), {
      website: ["Enter a valid URL."],
    });
    assert.deepEqual(await refused(() => client.update(CUSTOMER, ids.a, { owner: 3, id: "x" })), {
      owner: ["This field is read-only."],
      id: ["Unknown field."],
    });
    assert.deepEqual(await refused(() => client.update(CUSTOMER, ids.a, { name: null })), {
      name: ["This field may not be null."],
    });
    assert.deepEqual(
      await refused(() =>
        client.create(WORKORDER, {
          customer: ids.a,
          title: "T",
          status: "finished",
          visits: 1.5,
          urgent: 1,
          estimated_hours: "2",
          scheduled_for: "2026-02-30",
          due_at: "tomorrow",
        }),
      ),
      {
        status: ["Value 'finished' is not a valid choice."],
        visits: ["Expected a JSON value of type integer."],
        urgent: ["Expected a JSON value of type boolean."],
        estimated_hours: ["Expected a JSON value of type number."],
        scheduled_for: ["Expected a JSON value of type date."],
        due_at: ["Expected a JSON value of type datetime."],
      },
    );
    // A reference to an object this device does not hold.
    assert.deepEqual(await refused(() => client.create(WORKORDER, { customer: ids.w, title: "T" })), {
      customer: [`No ${CUSTOMER} with this id in your scope.`],
    });
    assert.deepEqual(await client.store.pending(), []);

    // Good ones go through; nullable fields take null; a create gets discovery's defaults.
    const id = await client.create(WORKORDER, {
      customer: ids.a,
      title: "Fix",
      estimated_hours: 2.5,
      scheduled_for: "2024-02-29",
      due_at: "2026-05-01T10:00:00Z",
      urgent: true,
    });
    await client.update(WORKORDER, id, { estimated_hours: null, due_at: "2026-05-01T12:00:00+02:00" });
    await client.update(CUSTOMER, ids.a, { email: "ops@acme.test", website: "https://acme.test/x", team: null });
    assert.deepEqual(await client.get(WORKORDER, id), {
      customer: ids.a,
      title: "Fix",
      status: "open",
      scheduled_for: "2024-02-29",
      due_at: "2026-05-01T12:00:00+02:00",
      estimated_hours: null,
      visits: 0,
      urgent: true,
      photo: null,
    });
    assert.equal((await client.store.pending()).length, 2);
  });
});

describe("SyncClient: devices, login, locking", () => {
  it("registers a device idempotently, and takes a new id on 409 device_taken", async () => {
    const server = new FakeServer();
    const r = await rig({ fetch: server.fetch });
    await r.client.store.set("device_id", null);
    r.client.api.deviceId = null;
    server.on("POST", "/api/v1/devices/", () => json(409, { code: "device_taken", detail: "Taken." }));
    server.always("POST", "/api/v1/devices/", (call) => json(201, call.body));
    const id = await r.client.registerDevice({ platform: "ios", name: "iPhone" });
    const [taken, created] = server.calls.map((c) => c.body as { id: string; platform: string; name: string });
    assert.ok(taken && created);
    assert.notEqual(taken.id, created.id);
    assert.equal(id, created.id);
    assert.equal(created.platform, "ios");
    assert.equal(created.name, "iPhone");
    assert.equal(await r.client.deviceId(), id);
    assert.equal(await r.client.registerDevice({ platform: "ios" }), id); // the same id again
    assert.equal((server.calls[2]?.body as { id: string }).id, id);
  });

  it("registers again on 403 device_forbidden, and turns 401 into NotLoggedIn", async () => {
    const { client, server } = await rig();
    server.on("GET", PULL, () => json(403, { code: "device_forbidden", detail: "Unknown device." }));
    server.on("POST", "/api/v1/devices/", (call) => json(201, call.body));
    server.on("GET", PULL, () => page([], "c1"));
    await client.pull();
    assert.equal((server.callsTo("POST", "/api/v1/devices/")[0]?.body as { id: string }).id, DEVICE);
    assert.equal(server.callsTo("GET", PULL)[1]?.headers["x-device-id"], DEVICE);

    server.on("GET", PULL, () => json(401, { code: "authentication_failed", detail: "Token expired." }));
    await assert.rejects(client.pull(), NotLoggedIn);
  });

  it("logs in and keeps the token; another user starts from an empty store", async () => {
    const { client, server } = await synced();
    server.on("POST", "/api/v1/auth/token/", (call) => {
      assert.deepEqual(call.body, { username: "bob", password: "pw" });
      return json(200, { token: "b0b" });
    });
    await client.login("bob", "pw");
    assert.equal(await client.store.get("token"), "b0b");
    assert.deepEqual(await client.store.serverCopies(), []);
    assert.equal(await client.store.cursor(), null);
    assert.equal(await client.deviceId(), null);
  });

  it("does not interleave two syncs", async () => {
    const { client, server } = await synced();
    server.always("GET", PULL, () => page([], "c1"));
    await client.update(CUSTOMER, ids.a, { phone: "x" });
    server.always("POST", PUSH, (call) =>
      json(200, { results: mutations(call).map((m) => result(m, "applied", 3, { name: "Na", phone: "x" })), cursor: "c1" }),
    );
    server.maxInFlight = 0;
    const reports = await Promise.all([client.sync(), client.sync(), client.push()]);
    assert.equal(server.maxInFlight, 1);
    // The first sync pushed the edit; the others found nothing to push.
    assert.deepEqual(
      reports.map((r) => r.pushed.applied ?? 0),
      [1, 0, 0],
    );
    assert.equal(server.callsTo("POST", PUSH).length, 1);
  });
});

describe("SyncClient: resolving conflicts", () => {
  async function withConflict() {
    const r = await synced();
    await r.client.store.adoptResult(CUSTOMER, ids.c, 3, { name: "Nc", phone: "server's" });
    await r.client.store.recordConflict({
      id: ids.conflict,
      model: CUSTOMER,
      object_id: ids.c,
      status: "open",
      client_data: { phone: "mine" },
      server_version: 3,
    });
    return r;
  }

  it("resolves against the version held and stores the result", async () => {
    const { client, server } = await withConflict();
    server.on("POST", `/api/v1/sync/conflicts/${ids.conflict}/resolve/`, () =>
      json(200, {
        conflict: { id: ids.conflict, status: "resolved", resolved_version: 4 },
        object: { model: CUSTOMER, id: ids.c, version: 4, data: { name: "Nc", phone: "both" } },
      }),
    );
    await client.resolve(ids.conflict, "fields", { phone: "both" });
    const call = server.callsTo("POST", `/api/v1/sync/conflicts/${ids.conflict}/resolve/`)[0];
    assert.deepEqual(call?.body, { choice: "fields", expected_version: 3, values: { phone: "both" } });
    assert.equal(call?.headers["x-device-id"], DEVICE);
    assert.deepEqual(await client.get(CUSTOMER, ids.c), { name: "Nc", phone: "both" });
    assert.deepEqual(await client.conflicts(), []);
    assert.equal((await client.conflicts("resolved"))[0]?.resolvedVersion, 4);
  });

  it("412 stale: stores the current state and throws StaleResolution; 409: ConflictSettled", async () => {
    const { client, server } = await withConflict();
    server.on("POST", `/api/v1/sync/conflicts/${ids.conflict}/resolve/`, () =>
      json(412, {
        code: "stale",
        detail: "Moved on.",
        object: { model: CUSTOMER, id: ids.c, version: 5, data: { name: "Nc", phone: "newer" } },
      }),
    );
    await assert.rejects(client.resolve(ids.conflict, "server", null, { expectedVersion: 3 }), StaleResolution);
    assert.deepEqual(await client.get(CUSTOMER, ids.c), { name: "Nc", phone: "newer" });
    assert.equal((await client.conflicts()).length, 1); // still open: resolve again
    server.on("POST", `/api/v1/sync/conflicts/${ids.conflict}/resolve/`, () =>
      json(409, { code: "conflict_settled", detail: "Done.", status: "superseded" }),
    );
    await assert.rejects(client.resolve(ids.conflict, "client"), ConflictSettled);
    const resolves = server.callsTo("POST", `/api/v1/sync/conflicts/${ids.conflict}/resolve/`);
    assert.equal((resolves[0]?.body as { expected_version: number }).expected_version, 3);
    assert.equal((resolves[1]?.body as { expected_version: number }).expected_version, 5);
    assert.equal((await client.conflicts("superseded")).length, 1);
  });

  it("refreshes open conflicts after a sync: those settled elsewhere are closed", async () => {
    const { client, server } = await withConflict();
    server.on("GET", PULL, () => page([], "c2"));
    server.on("GET", "/api/v1/sync/conflicts/", () => json(200, []));
    server.on("GET", `/api/v1/sync/conflicts/${ids.conflict}/`, () =>
      json(200, { id: ids.conflict, model: CUSTOMER, object_id: ids.c, status: "resolved", resolved_version: 6 }),
    );
    await client.sync();
    assert.deepEqual(await client.conflicts(), []);
    assert.equal((await client.conflicts("resolved"))[0]?.resolvedVersion, 6);
  });
});

describe("SyncClient: follow()", () => {
  it("syncs, applies live pages, falls back to polling on 404, and stops when aborted", async () => {
    const { client, server } = await synced();
    const stop = new AbortController();
    server.on("GET", PULL, () => page([], "c2")); // the first sync
    server.on("GET", "/api/v1/sync/live/", (call) => {
      assert.equal(call.url.searchParams.get("wait"), "20");
      assert.equal(call.url.searchParams.get("cursor"), "c2");
      return page([upsert(CUSTOMER, ids.a, 3, { name: "Live", phone: "0" })], "c3");
    });
    server.on("GET", "/api/v1/sync/live/", () => json(404, { code: "not_found", detail: "No live pulls." }));
    server.on("GET", PULL, () => {
      stop.abort();
      return page([], "c4");
    });
    const reports: number[] = [];
    await client.follow({ signal: stop.signal, wait: 20, pollEveryMs: 1, onSync: (r) => reports.push(r.pulled) });
    assert.deepEqual(await client.get(CUSTOMER, ids.a), { name: "Live", phone: "0" });
    assert.deepEqual(reports, [1]);
    assert.equal(await client.store.cursor(), "c4");
    assert.deepEqual(server.unmatched, []);
  });
});

describe("SyncClient: deprecation and logging out", () => {
  it("keeps what a pull says of deprecation, and forgets it when an answer says nothing", async () => {
    const { client, server } = await synced();
    server.on("GET", PULL, () =>
      page([], "c2", false, 0, {
        Deprecation: "@1796083200",
        Sunset: "Fri, 01 Jan 2027 00:00:00 GMT",
        Link: '<https://example.com/app>; rel="deprecation"; type="text/html"',
      }),
    );
    await client.pull();
    assert.deepEqual(await client.deprecation(), {
      deprecatedAt: "2026-12-01T00:00:00.000Z",
      sunsetAt: "2027-01-01T00:00:00.000Z",
      url: "https://example.com/app",
    });
    assert.deepEqual((await client.status()).deprecation?.url, "https://example.com/app");
    server.on("GET", PULL, () => page([], "c3"));
    await client.pull();
    assert.equal(await client.deprecation(), null);
  });

  it("pushes the outbox, unregisters the device, revokes the token and forgets the account", async () => {
    const { client, server } = await synced();
    await client.update(CUSTOMER, ids.a, { phone: "9" });
    server.on("POST", PUSH, (call) => {
      const [m] = mutations(call);
      assert.ok(m);
      return json(200, { results: [result(m, "applied", 3, { name: "Na", phone: "9" })], cursor: "c2" });
    });
    server.on("GET", PULL, () => page([], "c2"));
    const deviceId = (await client.status()).deviceId;
    server.on("DELETE", `/api/v1/devices/${deviceId}/`, () => new Response(null, { status: 204 }));
    server.on("POST", "/api/v1/auth/logout/", (call) => {
      assert.deepEqual(call.body, { everywhere: true });
      return json(200, { revoked: 2 });
    });
    assert.equal(await client.logout({ everywhere: true }), 2);
    assert.deepEqual(server.unmatched, []);
    const after = await client.status();
    assert.equal(after.username, null);
    assert.equal(after.deviceId, null);
    assert.equal(after.objects, 0);
    assert.deepEqual(after.pending, []);
  });

  it("refuses to log out while edits cannot be sent, unless told to drop them", async () => {
    const { client, server } = await synced();
    await client.update(CUSTOMER, ids.a, { phone: "9" });
    server.always("POST", PUSH, () => json(400, { code: "invalid", detail: "Broken on purpose." }));
    await assert.rejects(client.logout(), UnsentChanges);
    assert.equal((await client.status()).pending.length, 1);
    const deviceId = (await client.status()).deviceId;
    server.on("DELETE", `/api/v1/devices/${deviceId}/`, () => json(404, { code: "not_found", detail: "Gone." }));
    server.on("POST", "/api/v1/auth/logout/", () => json(401, { code: "authentication_failed", detail: "Revoked." }));
    assert.equal(await client.logout({ discardUnsent: true }), 0);
    assert.deepEqual((await client.status()).pending, []);
  });
});
