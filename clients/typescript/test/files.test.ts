/**
 * Files (docs/protocol.md, "Files"): attach, upload in parts after the data,
 * resume, start again, fetch and check, forget; on MemoryStorage and on
 * IndexedDbStorage (fake-indexeddb), against a fake of the server's blob
 * endpoints and of a store's presigned links on another host.
 */

import "fake-indexeddb/auto";

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, describe, it } from "node:test";

import {
  ApiError,
  type FileReference,
  FileCorrupt,
  FileNotReady,
  IndexedDbStorage,
  MemoryStorage,
  NetworkError,
  type PushResult,
  type StorageAdapter,
  SyncClient,
  UnsentChanges,
  type UploadProgress,
  ValidationError,
  sha256Hex,
} from "../src/index.js";
import { type Call, CUSTOMER, DEVICE, FakeServer, MAX_SIZE, WORKORDER, ids, json, page, rig, upsert } from "./helpers.js";

const PULL = "/api/v1/sync/pull/";
const PUSH = "/api/v1/sync/push/";
const UPLOADS = "/api/v1/blobs/uploads/";
/** Presigned links live on another host than the sync server. */
const STORE = "https://store.test";
const PART_SIZE = 4;
/** Ten bytes: parts of 4, 4 and 2. */
const TEN = new TextEncoder().encode("0123456789");

interface Upload {
  id: string;
  sha256: string;
  size: number;
  contentType: string;
  parts: Map<number, Uint8Array>;
}

function hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function idOf(call: Call, at: number): string {
  return call.path.split("/").filter(Boolean)[at] as string;
}

/**
 * The server's blob endpoints and the store behind its links, as
 * docs/protocol.md describes them, with switches to make them fail.
 */
class FakeBlobs {
  /** The files the server has: sha256 → bytes. */
  readonly kept = new Map<string, Uint8Array>();
  readonly uploads = new Map<string, Upload>();
  private made = 0;
  private signatures = 0;
  /** Starting an upload answers this error. */
  refuse: { status: number; code: string } | null = null;
  /** Every PUT of this part fails as a dropped connection does. */
  dropPart: number | null = null;
  /** The next PUT of this part is answered 200 but not kept. */
  losePart: number | null = null;
  /** The next this many PUTs answer 403 (an expired link). */
  expiredLinks = 0;
  /** The next this many completes answer 422 blob_mismatch (and drop the upload). */
  mismatches = 0;
  /** What a file not kept is said to be. */
  state: "missing" | "pending" = "missing";
  /** Downloads answer other bytes. */
  corrupt = false;
  /** Images' thumbnails the server made: the image's sha256 → the thumbnail's bytes. */
  readonly thumbnails = new Map<string, Uint8Array>();

  constructor(server: FakeServer) {
    server.always("POST", UPLOADS, (call) => this.start(call));
    server.always("GET", /^\/api\/v1\/blobs\/uploads\/[^/]+\/$/, (call) => this.resume(call));
    server.always("POST", /^\/api\/v1\/blobs\/uploads\/[^/]+\/complete\/$/, (call) => this.complete(call));
    server.always("GET", /^\/api\/v1\/blobs\/[0-9a-f]{64}\/$/, (call) => this.info(call));
    server.always("PUT", /^\/bucket\//, (call) => this.part(call));
    server.always("GET", /^\/content\//, (call) => this.content(call));
  }

  private describe(upload: Upload): Record<string, unknown> {
    const count = Math.ceil(upload.size / PART_SIZE);
    const parts = Array.from({ length: count }, (_, i) => {
      const number = i + 1;
      const size = Math.min(PART_SIZE, upload.size - i * PART_SIZE);
      if (upload.parts.get(number)?.length === size) return { number, size, done: true };
      this.signatures += 1;
      return { number, size, done: false, url: `${STORE}/bucket/${upload.id}/${number}?X-Amz-Signature=s${this.signatures}` };
    });
    return {
      sha256: upload.sha256,
      size: upload.size,
      content_type: upload.contentType,
      state: "pending",
      upload_id: upload.id,
      part_size: PART_SIZE,
      expires_at: "2099-01-01T00:00:00Z",
      links_expire_at: new Date(Date.now() + 300_000).toISOString(),
      parts,
    };
  }

  private start(call: Call): Response {
    const { sha256, size, content_type } = call.body as { sha256: string; size: number; content_type: string };
    if (this.refuse) return json(this.refuse.status, { code: this.refuse.code, detail: "Refused." });
    if (this.kept.has(sha256)) return json(200, { sha256, size, content_type, state: "complete" });
    const under = [...this.uploads.values()].find((u) => u.sha256 === sha256);
    if (under) return json(200, this.describe(under));
    this.made += 1;
    const upload: Upload = { id: `up-${this.made}`, sha256, size, contentType: content_type, parts: new Map() };
    this.uploads.set(upload.id, upload);
    return json(201, this.describe(upload));
  }

  private resume(call: Call): Response {
    const upload = this.uploads.get(idOf(call, 4));
    if (!upload) return json(404, { code: "not_found", detail: "No such upload." });
    return json(200, this.describe(upload));
  }

  private part(call: Call): Response {
    const [, id, n] = call.path.split("/").filter(Boolean);
    const number = Number(n);
    if (this.dropPart === number) throw new TypeError("fetch failed: socket hang up");
    if (this.expiredLinks > 0) {
      this.expiredLinks -= 1;
      return new Response("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", { status: 403 });
    }
    const upload = this.uploads.get(id as string);
    if (!upload) return new Response("<Error><Code>NoSuchUpload</Code></Error>", { status: 404 });
    if (this.losePart === number) {
      this.losePart = null;
      return new Response(null, { status: 200 });
    }
    upload.parts.set(number, call.bytes ?? new Uint8Array());
    return new Response(null, { status: 200, headers: { ETag: `"${number}"` } });
  }

  private complete(call: Call): Response {
    const id = idOf(call, 4);
    const upload = this.uploads.get(id);
    if (!upload) return json(404, { code: "not_found", detail: "No such upload." });
    const count = Math.ceil(upload.size / PART_SIZE);
    const missing = Array.from({ length: count }, (_, i) => i + 1).filter((n) => !upload.parts.has(n));
    if (missing.length > 0) {
      return json(409, { code: "upload_incomplete", detail: "Parts missing.", missing, wrong_size: [] });
    }
    const whole = Buffer.concat([...upload.parts.entries()].sort(([a], [b]) => a - b).map(([, bytes]) => bytes));
    this.uploads.delete(id);
    if (this.mismatches > 0 || hex(whole) !== upload.sha256 || whole.length !== upload.size) {
      this.mismatches = Math.max(0, this.mismatches - 1);
      return json(422, { code: "blob_mismatch", detail: "Not the file announced." });
    }
    this.kept.set(upload.sha256, new Uint8Array(whole));
    return json(200, { sha256: upload.sha256, size: upload.size, content_type: upload.contentType, state: "complete" });
  }

  private info(call: Call): Response {
    const sha256 = idOf(call, 3);
    const bytes = this.kept.get(sha256);
    if (!bytes) return json(200, { sha256, size: 0, content_type: "text/plain", state: this.state });
    return json(200, {
      sha256,
      size: bytes.length,
      content_type: "text/plain",
      state: "complete",
      url: `${STORE}/content/${sha256}?name=${call.url.searchParams.get("name")}&sig=s`,
      expires_at: "2099-01-01T00:00:00Z",
      thumbnail: this.thumbnailOf(sha256),
    });
  }

  private thumbnailOf(sha256: string): Record<string, unknown> | null {
    const bytes = this.thumbnails.get(sha256);
    if (!bytes) return null;
    const own = hex(bytes);
    this.kept.set(own, bytes); // a file of its own on the server
    return { sha256: own, size: bytes.length, content_type: "image/jpeg", state: "complete", url: `${STORE}/content/${own}?sig=t` };
  }

  private content(call: Call): Response {
    const bytes = this.kept.get(idOf(call, 1));
    if (!bytes) return new Response("<Error><Code>NoSuchKey</Code></Error>", { status: 404 });
    const sent = this.corrupt ? bytes.map((b) => b ^ 1) : bytes;
    return new Response(sent as Uint8Array<ArrayBuffer>, { status: 200 });
  }
}

let databases = 0;
const opened: IndexedDbStorage[] = [];

after(async () => {
  for (const storage of opened) await storage.close();
});

const adapters: Array<[string, () => StorageAdapter]> = [
  ["MemoryStorage", () => new MemoryStorage()],
  [
    "IndexedDbStorage",
    () => {
      const storage = new IndexedDbStorage(`syncserver-files-${process.pid}-${(databases += 1)}`);
      opened.push(storage);
      return storage;
    },
  ],
];

/** The same storage as the next app start sees it: for IndexedDB, a new connection. */
async function reopen(storage: StorageAdapter): Promise<StorageAdapter> {
  if (!(storage instanceof IndexedDbStorage)) return storage;
  await storage.close();
  const again = new IndexedDbStorage(storage.name);
  opened.push(again);
  return again;
}

type Mut = { mutation_id: string; id: string; data: Record<string, unknown> | null };

/** Every push applied, echoing the data. */
function applyAll(server: FakeServer): void {
  server.always("POST", PUSH, (call) => {
    const mutations = (call.body as { mutations: Mut[] }).mutations;
    const results: PushResult[] = mutations.map((m) => ({
      mutation_id: m.mutation_id,
      status: "applied",
      id: m.id,
      version: 2,
      data: { customer: ids.a, title: "Fix", ...m.data },
      conflict_id: null,
      errors: null,
    }));
    return json(200, { results, cursor: "c2" });
  });
  server.always("GET", PULL, () => page([], "c2"));
}

/** A signed-in client holding customer a and work order w, with the fake blob server. */
async function setup(make: () => StorageAdapter) {
  const storage = make();
  const r = await rig({ storage });
  const blobs = new FakeBlobs(r.server);
  r.server.on("GET", PULL, () =>
    page(
      [
        upsert(CUSTOMER, ids.a, 1, { name: "Acme" }),
        upsert(WORKORDER, ids.w, 1, { customer: ids.a, title: "Fix", photo: null }),
      ],
      "c1",
    ),
  );
  await r.client.pull();
  r.server.calls.length = 0;
  return { ...r, storage, blobs };
}

/** Another client on the same storage: the app started again. */
function restarted(storage: StorageAdapter, server: FakeServer): SyncClient {
  return new SyncClient({ baseUrl: "https://sync.test", storage, fetch: server.fetch, sleep: async () => undefined, random: () => 0.5 });
}

function puts(server: FakeServer): Call[] {
  return server.calls.filter((c) => c.method === "PUT");
}

/** `[upload id, part number]` of each part PUT. */
function partsSent(calls: Call[]): Array<[string, number]> {
  return calls.map((c) => {
    const [, id, n] = c.path.split("/").filter(Boolean);
    return [id as string, Number(n)];
  });
}

for (const [label, make] of adapters) {
  describe(`${label}: files`, () => {
    it("attach keeps the bytes and queues the upload; sync pushes the edit, then uploads the parts without the token", async () => {
      const { client, server, blobs } = await setup(make);
      applyAll(server);
      const photo = await client.files.attach(TEN, { contentType: "Text/Plain; charset=utf-8", name: "notes.txt" });
      assert.deepEqual(photo, { sha256: hex(TEN), size: 10, content_type: "text/plain", name: "notes.txt" });
      assert.equal(await client.files.has(photo), true);
      assert.deepEqual(
        (await client.files.pending()).map((u) => [u.sha256, u.size, u.contentType, u.uploadId]),
        [[photo.sha256, 10, "text/plain", null]],
      );
      await client.update(WORKORDER, ids.w, { photo });

      const progress: UploadProgress[] = [];
      const report = await client.sync({ onUpload: (p) => progress.push(p) });

      const order = server.calls.map((c) => `${c.method} ${c.url.host === "store.test" ? "store" : c.path}`);
      assert.deepEqual(order, [
        `POST ${PUSH}`,
        `GET ${PULL}`,
        `POST ${UPLOADS}`,
        "PUT store",
        "PUT store",
        "PUT store",
        `POST ${UPLOADS}up-1/complete/`,
      ]);
      const pushed = (server.callsTo("POST", PUSH)[0]?.body as { mutations: Mut[] }).mutations;
      assert.deepEqual(pushed[0]?.data, { photo });
      assert.deepEqual(server.callsTo("POST", UPLOADS)[0]?.body, { sha256: photo.sha256, size: 10, content_type: "text/plain" });
      assert.equal(server.callsTo("POST", UPLOADS)[0]?.headers["authorization"], "Token t0ken");
      // Each part: exactly its bytes, to its link, with no header of ours (the link is the credential).
      for (const call of puts(server)) {
        assert.deepEqual(Object.keys(call.headers), [], JSON.stringify(call.headers));
        assert.equal(call.url.searchParams.has("X-Amz-Signature"), true);
      }
      assert.deepEqual(
        puts(server).map((c) => new TextDecoder().decode(c.bytes ?? new Uint8Array())),
        ["0123", "4567", "89"],
      );
      assert.deepEqual(blobs.kept.get(photo.sha256), TEN);
      assert.deepEqual(report.uploaded, [photo.sha256]);
      assert.deepEqual(report.pushed, { applied: 1 });
      assert.deepEqual(
        progress.map((p) => [p.sent, p.size]),
        [
          [4, 10],
          [8, 10],
          [10, 10],
        ],
      );
      assert.deepEqual(await client.files.pending(), []);
      assert.deepEqual((await client.status()).pendingUploads, []);
      // Kept here: fetching it asks nothing.
      server.calls.length = 0;
      assert.deepEqual(await client.files.fetch(photo), TEN);
      assert.deepEqual(server.calls, []);
      // Nothing queued: the next sync uploads nothing.
      assert.deepEqual((await client.sync()).uploaded, []);
      assert.deepEqual(server.unmatched, []);
    });

    it("an upload cut off after part 1 is resumed by the next app start: only the parts missing are sent", async () => {
      const { client, server, storage, blobs } = await setup(make);
      applyAll(server);
      const photo = await client.files.attach(new Blob([TEN], { type: "image/png" }), { name: "a.png" });
      assert.equal(photo.content_type, "image/png");
      await client.update(WORKORDER, ids.w, { photo });
      blobs.dropPart = 2;
      const error = await client.sync().catch((e: unknown) => e);
      assert.ok(error instanceof NetworkError, String(error));
      assert.doesNotMatch(error.message, /Signature/); // the link's credential stays out of messages
      // The data went first; the file stays queued, with its upload.
      assert.deepEqual(await client.store.pending(), []);
      assert.deepEqual(
        (await client.files.pending()).map((u) => u.uploadId),
        ["up-1"],
      );
      assert.deepEqual([...(blobs.uploads.get("up-1")?.parts.keys() ?? [])], [1]);

      blobs.dropPart = null;
      server.calls.length = 0;
      const next = restarted(await reopen(storage), server);
      assert.deepEqual(await next.files.uploadPending(), [photo.sha256]);
      // Resumed (no new upload asked for), parts 2 and 3 only.
      assert.deepEqual(server.callsTo("POST", UPLOADS), []);
      assert.equal(server.callsTo("GET", `${UPLOADS}up-1/`).length, 1);
      assert.deepEqual(partsSent(puts(server)), [
        ["up-1", 2],
        ["up-1", 3],
      ]);
      assert.deepEqual(blobs.kept.get(photo.sha256), TEN);
      assert.deepEqual(await next.files.pending(), []);
    });

    it("422 blob_mismatch on complete starts a new upload at once; one that keeps failing stays queued, to start afresh", async () => {
      const { client, server, blobs } = await setup(make);
      const photo = await client.files.attach(TEN, { contentType: "text/plain" });
      assert.equal(photo.name, photo.sha256.slice(0, 12));
      blobs.mismatches = 1;
      assert.deepEqual(await client.files.uploadPending(), [photo.sha256]);
      assert.equal(server.callsTo("POST", UPLOADS).length, 2);
      assert.deepEqual(
        partsSent(puts(server)).map(([id]) => id),
        ["up-1", "up-1", "up-1", "up-2", "up-2", "up-2"],
      );
      assert.deepEqual(blobs.kept.get(photo.sha256), TEN);

      const other = await client.files.attach(new TextEncoder().encode("other bytes"), { contentType: "text/plain" });
      blobs.mismatches = 10;
      const error = await client.files.uploadPending().catch((e: unknown) => e);
      assert.ok(error instanceof ApiError && error.code === "blob_mismatch", String(error));
      assert.deepEqual(
        (await client.files.pending()).map((u) => [u.sha256, u.uploadId]),
        [[other.sha256, null]],
      );
      blobs.mismatches = 0;
      server.calls.length = 0;
      assert.deepEqual(await client.files.uploadPending(), [other.sha256]);
      assert.equal(server.callsTo("POST", UPLOADS).length, 1); // afresh
      assert.equal(puts(server).length, 3);
    });

    it("asks again for an expired upload (404); sends nothing of a file the server has", async () => {
      const { client, server, blobs } = await setup(make);
      const photo = await client.files.attach(TEN, { contentType: "text/plain" });
      await client.store.setUploadId(photo.sha256, "gone");
      blobs.kept.set(photo.sha256, TEN);
      assert.deepEqual(await client.files.uploadPending(), [photo.sha256]);
      assert.deepEqual(
        server.calls.map((c) => `${c.method} ${c.path}`),
        [`GET ${UPLOADS}gone/`, `POST ${UPLOADS}`],
      );
      assert.deepEqual(await client.files.pending(), []);
    });

    it("409 upload_incomplete: asks for the upload again and sends the parts missing", async () => {
      const { client, server, blobs } = await setup(make);
      const photo = await client.files.attach(TEN, { contentType: "text/plain" });
      blobs.losePart = 2;
      assert.deepEqual(await client.files.uploadPending(), [photo.sha256]);
      assert.deepEqual(partsSent(puts(server)), [
        ["up-1", 1],
        ["up-1", 2],
        ["up-1", 3],
        ["up-1", 2],
      ]);
      assert.equal(server.callsTo("GET", `${UPLOADS}up-1/`).length, 1);
      assert.deepEqual(blobs.kept.get(photo.sha256), TEN);
    });

    it("a link refused (403, expired) is renewed once, then sent on the fresh link", async () => {
      const { client, server, blobs } = await setup(make);
      const photo = await client.files.attach(TEN, { contentType: "text/plain" });
      blobs.expiredLinks = 1;
      assert.deepEqual(await client.files.uploadPending(), [photo.sha256]);
      const first = puts(server).map((c) => [Number(c.path.split("/")[3]), c.url.searchParams.get("X-Amz-Signature")]);
      assert.deepEqual(first[0]?.[0], 1);
      assert.deepEqual(first[1]?.[0], 1); // again, on a fresh link
      assert.notEqual(first[0]?.[1], first[1]?.[1]);
      assert.equal(server.callsTo("GET", `${UPLOADS}up-1/`).length, 1);

      // Refused again on the fresh link: that is the answer.
      const again = await client.files.attach(new TextEncoder().encode("again"), { contentType: "text/plain" });
      blobs.expiredLinks = 2;
      const error = await client.files.uploadPending().catch((e: unknown) => e);
      assert.ok(error instanceof ApiError && error.status === 403 && error.code === "storage_refused", String(error));
      assert.equal((await client.files.pending())[0]?.sha256, again.sha256);
    });

    it("a file refused for good (413, 415) throws ApiError after the data synced, and stays queued", async () => {
      const { client, server, blobs } = await setup(make);
      applyAll(server);
      const photo = await client.files.attach(TEN, { contentType: "text/plain" });
      await client.update(WORKORDER, ids.w, { photo });
      blobs.refuse = { status: 413, code: "quota_exceeded" };
      const error = await client.sync().catch((e: unknown) => e);
      assert.ok(error instanceof ApiError && error.code === "quota_exceeded", String(error));
      assert.deepEqual(await client.store.pending(), []); // the edit went
      assert.equal((await client.files.pending()).length, 1);
      blobs.refuse = { status: 415, code: "blob_type_refused" };
      await assert.rejects(client.files.uploadPending(), (e: unknown) => e instanceof ApiError && e.status === 415);
      assert.equal((await client.files.pending()).length, 1);
      blobs.refuse = null;
      assert.deepEqual((await client.sync()).uploaded, [photo.sha256]);
    });

    it("fetch downloads a file once, without the token, checks its sha256 and keeps it", async () => {
      const { client, server, blobs } = await setup(make);
      const bytes = new TextEncoder().encode("a photo, really");
      const reference: FileReference = { sha256: hex(bytes), size: bytes.length, content_type: "image/jpeg", name: "after.jpg" };
      blobs.kept.set(reference.sha256, bytes);
      assert.equal(await client.files.has(reference), false);
      assert.deepEqual(await client.files.fetch(reference), bytes);
      const [info, download] = server.calls;
      assert.equal(info?.path, `/api/v1/blobs/${reference.sha256}/`);
      assert.equal(info?.url.searchParams.get("name"), "after.jpg");
      assert.equal(info?.headers["authorization"], "Token t0ken");
      assert.equal(download?.url.host, "store.test");
      assert.deepEqual(Object.keys(download?.headers ?? {}), []);
      // Kept: the second time asks nothing.
      server.calls.length = 0;
      assert.deepEqual(await client.files.fetch(reference), bytes);
      assert.deepEqual(server.calls, []);
      assert.equal(await client.files.has(reference.sha256), true);
      assert.deepEqual(await client.files.pending(), []); // downloaded, not to be uploaded
    });

    it("fetch: FileNotReady until the server has the file; FileCorrupt (nothing kept) when the bytes are not it", async () => {
      const { client, blobs } = await setup(make);
      const bytes = new TextEncoder().encode("later");
      const reference: FileReference = { sha256: hex(bytes), size: bytes.length, content_type: "text/plain", name: "l.txt" };
      for (const state of ["missing", "pending"] as const) {
        blobs.state = state;
        const error = await client.files.fetch(reference).catch((e: unknown) => e);
        assert.ok(error instanceof FileNotReady, String(error));
        assert.equal(error.state, state);
        assert.equal(error.sha256, reference.sha256);
      }
      blobs.kept.set(reference.sha256, bytes);
      blobs.corrupt = true;
      await assert.rejects(client.files.fetch(reference), FileCorrupt);
      assert.equal(await client.files.has(reference), false);
      blobs.corrupt = false;
      assert.deepEqual(await client.files.fetch(reference), bytes);
    });

    it("fetch with thumbnail gets the image's thumbnail once, not the image; FileNotReady while there is none", async () => {
      const { client, server, blobs } = await setup(make);
      const image = new TextEncoder().encode("a large image, really");
      const small = new TextEncoder().encode("small");
      const reference: FileReference = { sha256: hex(image), size: image.length, content_type: "image/jpeg", name: "i.jpg" };
      blobs.kept.set(reference.sha256, image);
      const none = await client.files.fetch(reference, { thumbnail: true }).catch((e: unknown) => e);
      assert.ok(none instanceof FileNotReady && none.state === "no_thumbnail", String(none));
      blobs.thumbnails.set(reference.sha256, small);
      assert.deepEqual(await client.files.fetch(reference, { thumbnail: true }), small);
      assert.equal(await client.files.has(reference), false); // the image itself was not fetched
      server.calls.length = 0;
      assert.deepEqual(await client.files.fetch(reference, { thumbnail: true }), small);
      assert.deepEqual(server.calls, []); // kept
      blobs.corrupt = true;
      const other: FileReference = { ...reference, sha256: hex(new TextEncoder().encode("x")) };
      blobs.kept.set(other.sha256, new TextEncoder().encode("x"));
      blobs.thumbnails.set(other.sha256, small);
      await assert.rejects(client.files.fetch(other, { thumbnail: true }), FileCorrupt);
    });

    it("logout uploads the files attached first, then forgets them; one that cannot go keeps the account", async () => {
      const { client, server, blobs } = await setup(make);
      applyAll(server);
      const kept = await client.files.attach(TEN, { contentType: "text/plain" });
      blobs.dropPart = 1;
      await assert.rejects(client.logout(), (e: unknown) => e instanceof UnsentChanges && /1 file\(s\)/.test(e.message));
      assert.equal(await client.files.has(kept), true);
      assert.equal((await client.status()).username, "alice");
      blobs.dropPart = null;
      server.on("DELETE", `/api/v1/devices/${DEVICE}/`, () => new Response(null, { status: 204 }));
      server.on("POST", "/api/v1/auth/logout/", () => json(200, { revoked: 1 }));
      assert.equal(await client.logout(), 1);
      assert.deepEqual(blobs.kept.get(kept.sha256), TEN);
      assert.equal(await client.files.has(kept), false);
      assert.deepEqual(await client.files.pending(), []);
    });

    it("another user signing in starts without the previous one's files or uploads", async () => {
      const { client } = await setup(make);
      const photo = await client.files.attach(TEN, { contentType: "text/plain" });
      await client.useToken("bob", "b0b");
      assert.equal(await client.files.has(photo), false);
      assert.deepEqual(await client.files.pending(), []);
    });
  });
}

describe("files: a blob field is checked offline, as the server checks it", () => {
  it("takes a well-formed reference, and null; refuses anything else with the server's message", async () => {
    const { client } = await setup(() => new MemoryStorage());
    const good: FileReference = await client.files.attach(TEN, { contentType: "image/png", name: "a.png" });
    const refused = async (photo: unknown): Promise<string[] | undefined> => {
      const error = await client.update(WORKORDER, ids.w, { photo }).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(error instanceof ValidationError, `${JSON.stringify(photo)}: expected a ValidationError, got ${String(error)}`);
      return error.errors["photo"];
    };
    const sha = good.sha256;
    assert.deepEqual(await refused("a.png"), ["Expected a JSON value of type blob."]);
    assert.deepEqual(await refused([good]), ["Expected a JSON value of type blob."]);
    assert.deepEqual(await refused(TEN), ["Expected a JSON value of type blob."]); // the bytes, not their reference
    assert.deepEqual(await refused({ sha256: sha, size: 1, extra: 1 }), [
      "A file reference has sha256, size, content_type and name (missing content_type, name; unknown extra).",
    ]);
    assert.deepEqual(await refused({ ...good, sha256: sha.toUpperCase() }), [
      "sha256 must be 64 lower-case hex digits (the SHA-256 of the bytes).",
    ]);
    assert.deepEqual(await refused({ ...good, sha256: sha.slice(1) }), [
      "sha256 must be 64 lower-case hex digits (the SHA-256 of the bytes).",
    ]);
    for (const size of [-1, 1.5, "10", null]) {
      assert.deepEqual(await refused({ ...good, size }), ["size must be the number of bytes (a non-negative integer)."]);
    }
    assert.deepEqual(await refused({ ...good, size: MAX_SIZE + 1 }), [
      `size is over the largest file this server takes (${MAX_SIZE} bytes).`,
    ]);
    assert.deepEqual(await refused({ ...good, content_type: "image" }), ["content_type must be a media type such as image/jpeg."]);
    assert.deepEqual(await refused({ ...good, content_type: "Image/PNG" }), [
      "content_type must be a media type such as image/jpeg.",
    ]);
    assert.deepEqual(await refused({ ...good, content_type: "video/mp4" }), [
      "video/mp4 files are not taken here (SYNC_BLOB_CONTENT_TYPES: image/*, application/pdf, text/plain).",
    ]);
    for (const name of ["a/b.png", "a\\b.png", "nul\u0000.png", "x".repeat(256), 5]) {
      assert.deepEqual(await refused({ ...good, name }), [
        "name must be a file name of at most 255 characters, without / or \\.",
      ]);
    }
    assert.deepEqual(await client.store.pending(), []);

    // Every image type, the exact types listed, any name without a slash, up to max_size.
    for (const photo of [
      good,
      { ...good, content_type: "image/webp", size: MAX_SIZE, name: "" },
      { ...good, content_type: "application/pdf", size: 0, name: "é".repeat(255) },
      null,
    ]) {
      await client.update(WORKORDER, ids.w, { photo });
      assert.deepEqual((await client.get(WORKORDER, ids.w))?.["photo"], photo);
    }
  });

  it("sha256Hex is the SHA-256 of the bytes, in lower-case hex", async () => {
    assert.equal(await sha256Hex(new Uint8Array()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert.equal(await sha256Hex(TEN.subarray(2, 5)), hex(new TextEncoder().encode("234")));
  });
});
