/**
 * Against a real server: runs only when SYNC_URL is set (tests/typescript
 * runs it against a live gunicorn on PostgreSQL), as SYNC_USER /
 * SYNC_PASSWORD, a user whose scope starts empty.
 *
 * Two devices (two SyncClient instances, a MemoryStorage each) create a
 * customer and a work order, edit them concurrently to get every push
 * status (applied, merged, conflict, rejected), resolve the conflict from the
 * app, and converge: each device's server copies equal a fresh initial sync
 * of the user's scope. With SYNC_FILES=1 as well, a file attached on one
 * device is uploaded after its edit and fetched by the other.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isDeepStrictEqual } from "node:util";

import { type FileReference, MemoryStorage, SyncClient, type SyncReport } from "../src/index.js";

const URL_ = process.env["SYNC_URL"];
/** The file round trip also needs the server's blob storage: run it with SYNC_FILES=1. */
const FILES = URL_ !== undefined && process.env["SYNC_FILES"] === "1";
const USER = process.env["SYNC_USER"] ?? "ts-client";
const PASSWORD = process.env["SYNC_PASSWORD"] ?? "";
const CUSTOMER = "fieldwork.customer";
const WORKORDER = "fieldwork.workorder";

function device(): SyncClient {
  return new SyncClient({ baseUrl: URL_ as string, storage: new MemoryStorage(), appVersion: "1.0.0" });
}

async function snapshot(client: SyncClient): Promise<Record<string, { version: number; data: unknown }>> {
  const out: Record<string, { version: number; data: unknown }> = {};
  for (const row of await client.store.serverCopies()) out[`${row.model} ${row.id}`] = { version: row.version, data: row.data };
  return out;
}

async function truth(client: SyncClient): Promise<Record<string, { version: number; data: unknown }>> {
  const out: Record<string, { version: number; data: unknown }> = {};
  for (const [key, row] of await client.fetchAll()) out[key] = { version: row.version, data: row.data };
  return out;
}

describe("against a live server", { skip: URL_ ? false : "SYNC_URL is not set" }, () => {
  it("two devices merge, conflict, get rejected, resolve and converge", async () => {
    const phone = device();
    const tablet = device();
    await phone.login(USER, PASSWORD);
    await tablet.login(USER, PASSWORD);
    const phoneId = await phone.registerDevice({ platform: "android", name: "ts phone" });
    const tabletId = await tablet.registerDevice({ platform: "web", name: "ts tablet" });
    assert.notEqual(phoneId, tabletId);
    assert.equal(await phone.registerDevice({ platform: "android", name: "ts phone" }), phoneId); // idempotent

    let report: SyncReport = await phone.sync();
    assert.equal(report.initial, true);
    await tablet.sync();

    // The phone creates a customer and a work order offline, then syncs.
    const customer = await phone.create(CUSTOMER, { name: "Acme", phone: "555-0100" });
    const order = await phone.create(WORKORDER, { customer, title: "Fix boiler", priority: "normal" });
    report = await phone.sync();
    assert.deepEqual(report.pushed, { applied: 2 });
    assert.equal((await phone.store.serverCopy(WORKORDER, order))?.version, 1);
    const progress: number[] = [];
    await tablet.sync({ onProgress: (p) => progress.push(p.pulled) });
    assert.deepEqual(await tablet.get(WORKORDER, order), await phone.get(WORKORDER, order));
    assert.equal((await tablet.get(CUSTOMER, customer))?.["name"], "Acme");
    assert.ok(progress.length >= 1);

    // Concurrent edits: different fields of the customer (merged), the same
    // field of the work order (conflict); and a delete the server refuses
    // (rejected: the customer has a work order).
    await phone.update(CUSTOMER, customer, { phone: "555-0199" });
    await phone.update(WORKORDER, order, { title: "Fix boiler (phone)" });
    await tablet.update(CUSTOMER, customer, { email: "ops@acme.test" });
    await tablet.update(WORKORDER, order, { title: "Fix boiler (tablet)" });
    report = await phone.sync();
    assert.deepEqual(report.pushed, { applied: 2 });
    report = await tablet.sync();
    assert.deepEqual(report.pushed, { merged: 1, conflict: 1 });
    assert.equal(report.conflicts.length, 1);
    const merged = await tablet.get(CUSTOMER, customer);
    assert.equal(merged?.["phone"], "555-0199");
    assert.equal(merged?.["email"], "ops@acme.test");
    assert.equal((await tablet.get(WORKORDER, order))?.["title"], "Fix boiler (phone)"); // the server's, for now
    const [conflict] = await tablet.conflicts();
    assert.ok(conflict);
    assert.deepEqual(conflict.clientData, { title: "Fix boiler (tablet)" });

    // A delete on a version the phone has not pulled would be a conflict
    // (delete_update); pulled first, it meets the work order that protects it.
    await phone.sync();
    await phone.delete(CUSTOMER, customer);
    assert.equal(await phone.get(CUSTOMER, customer), null);
    report = await phone.sync();
    assert.deepEqual(report.pushed, { rejected: 1 });
    const [rejection] = await phone.rejections();
    assert.equal(rejection?.objectId, customer);
    assert.equal(rejection?.reason, "protected");
    assert.equal((await phone.get(CUSTOMER, customer))?.["email"], "ops@acme.test"); // back, and merged

    // The tablet's user settles the conflict from the app.
    const details = await tablet.conflictDetails(conflict.conflictId);
    assert.deepEqual(details["fields"], ["title"]);
    const answer = await tablet.resolve(conflict.conflictId, "fields", { title: "Fix boiler (both)" });
    assert.equal(answer.conflict.status, "resolved");
    assert.equal((await tablet.get(WORKORDER, order))?.["title"], "Fix boiler (both)");
    assert.deepEqual(await tablet.conflicts(), []);

    // Convergence. A pull may be held back briefly by another transaction
    // open on the cluster: sync again until both agree with the server.
    let phoneView = {};
    let tabletView = {};
    let expected = {};
    for (let round = 0; round < 10; round += 1) {
      await phone.sync();
      await tablet.sync();
      expected = await truth(phone);
      phoneView = await snapshot(phone);
      tabletView = await snapshot(tablet);
      if (isDeepStrictEqual(phoneView, expected) && isDeepStrictEqual(tabletView, expected)) break;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    assert.deepEqual(phoneView, expected);
    assert.deepEqual(tabletView, expected);
    assert.deepEqual(await truth(tablet), expected);
    assert.ok(`${CUSTOMER} ${customer}` in expected && `${WORKORDER} ${order}` in expected);
    assert.equal((await phone.get(WORKORDER, order))?.["title"], "Fix boiler (both)");
    assert.deepEqual(await phone.store.pending(), []);
    assert.deepEqual(await tablet.store.pending(), []);
  });
});

describe("files against a live server", { skip: FILES ? false : "SYNC_URL and SYNC_FILES=1 are not set" }, () => {
  it("one device attaches a file to a work order and uploads it after the edit; the other fetches it", async () => {
    const phone = device();
    const tablet = device();
    await phone.login(USER, PASSWORD);
    await tablet.login(USER, PASSWORD);
    await phone.sync();
    await tablet.sync();

    // Bytes of their own each run: the server keeps a file once per content.
    const bytes = new TextEncoder().encode(`notes of ${crypto.randomUUID()}\n`.repeat(50));
    const photo = await phone.files.attach(bytes, { contentType: "text/plain", name: "notes.txt" });
    const customer = await phone.create(CUSTOMER, { name: "Files Ltd" });
    const order = await phone.create(WORKORDER, { customer, title: "With notes", priority: "normal", photo });
    const sent: number[] = [];
    const report = await phone.sync({ onUpload: (p) => sent.push(p.sent) });
    assert.deepEqual(report.pushed, { applied: 2 });
    assert.deepEqual(report.uploaded, [photo.sha256]);
    assert.equal(sent[sent.length - 1], bytes.length);
    assert.deepEqual(await phone.files.pending(), []);

    await tablet.sync();
    const reference = (await tablet.get(WORKORDER, order))?.["photo"] as FileReference;
    assert.deepEqual(reference, photo);
    assert.deepEqual(await tablet.files.fetch(reference), bytes);
    assert.equal(await tablet.files.has(reference), true);
  });
});
