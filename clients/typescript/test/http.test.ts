import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  ApiError,
  DEFAULT_RETRY,
  NetworkError,
  Transport,
  UnexpectedResponse,
  UpgradeRequired,
  backoff,
  parseRetryAfter,
} from "../src/index.js";
import { FakeServer, json } from "./helpers.js";

function transport(server: FakeServer, sleeps: number[], extra: Partial<ConstructorParameters<typeof Transport>[0]> = {}) {
  return new Transport({
    baseUrl: "https://sync.test/",
    fetch: server.fetch,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    ...extra,
  });
}

describe("Transport", () => {
  it("retries 503 and 429 no sooner than Retry-After, then succeeds", async () => {
    const server = new FakeServer()
      .on("GET", "/api/v1/sync/pull/", () => json(503, { code: "error", detail: "down" }, { "Retry-After": "3" }))
      .on("GET", "/api/v1/sync/pull/", () => json(429, { code: "throttled", detail: "slow" }, { "Retry-After": "1" }))
      .on("GET", "/api/v1/sync/pull/", () => json(200, { ok: true }));
    const sleeps: number[] = [];
    const api = transport(server, sleeps);
    const answer = await api.request("GET", "/api/v1/sync/pull/");
    assert.deepEqual(answer.body, { ok: true });
    // Retry-After, plus jitter of up to base delay (random 0.5 → 250 ms).
    assert.deepEqual(sleeps, [3250, 1250]);
    assert.equal(api.stats.retries, 2);
    assert.equal(server.calls.length, 3);
  });

  it("backs off exponentially with full jitter, capped", () => {
    const top = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoff(DEFAULT_RETRY, n, () => 0.999999));
    assert.deepEqual(
      top.map((ms) => Math.round(ms)),
      [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000],
    );
    assert.equal(backoff(DEFAULT_RETRY, 5, () => 0), 0);
    assert.equal(backoff(DEFAULT_RETRY, 2, () => 0.25), 500);
  });

  it("retries network errors and 5xx with backoff, then gives up", async () => {
    const server = new FakeServer(); // nothing scripted: every call fails as a network error
    const sleeps: number[] = [];
    const api = transport(server, sleeps, { retry: { attempts: 3 } });
    await assert.rejects(api.request("POST", "/api/v1/sync/push/", { json: { mutations: [] } }), NetworkError);
    assert.equal(server.calls.length, 3);
    assert.deepEqual(sleeps, [250, 500]); // 0.5 × 500 × 2^n

    const failing = new FakeServer().always("GET", "/x/", () => new Response("<html>bad gateway</html>", { status: 502 }));
    const sleeps2: number[] = [];
    const error = await transport(failing, sleeps2, { retry: { attempts: 4 } })
      .request("GET", "/x/")
      .catch((e: unknown) => e);
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 502);
    assert.equal(error.code, "error"); // not the server's error shape
    assert.equal(failing.calls.length, 4);
    assert.equal(sleeps2.length, 3);
  });

  it("hands a Retry-After over two minutes (a lockout) to the app at once", async () => {
    const server = new FakeServer().always("POST", "/api/v1/auth/token/", () =>
      json(429, { code: "too_many_attempts", detail: "locked" }, { "Retry-After": "900" }),
    );
    const sleeps: number[] = [];
    const error = await transport(server, sleeps)
      .request("POST", "/api/v1/auth/token/", { json: { username: "a", password: "b" } })
      .catch((e: unknown) => e);
    assert.ok(error instanceof ApiError);
    assert.equal(error.code, "too_many_attempts");
    assert.equal(error.retryAfter, 900);
    assert.equal(server.calls.length, 1);
    assert.deepEqual(sleeps, []);
  });

  it("does not retry other 4xx and types the error", async () => {
    const body = { code: "invalid", detail: "Bad.", errors: { platform: ["Not a valid choice."] } };
    const server = new FakeServer().always("POST", "/api/v1/devices/", () => json(400, body));
    const error = await transport(server, []).request("POST", "/api/v1/devices/", { json: {} }).catch((e: unknown) => e);
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 400);
    assert.equal(error.code, "invalid");
    assert.equal(error.detail, "Bad.");
    assert.deepEqual(error.errors, { platform: ["Not a valid choice."] });
    assert.deepEqual(error.body, body);
    assert.equal(server.calls.length, 1);
  });

  it("sends the token, the device id (when asked) and the handshake", async () => {
    const server = new FakeServer().always("GET", "/api/v1/sync/pull/", () => json(200, {}));
    const api = transport(server, [], {
      appVersion: "2.4.1",
      schema: "fieldwork.customer=1,fieldwork.workorder=1",
      outbox: async () => [3, 5400],
    });
    api.token = "abc";
    api.deviceId = "dev";
    await api.request("GET", "/api/v1/sync/pull/", { device: true, params: { cursor: "c/+=", limit: 5 } });
    await api.request("GET", "/api/v1/sync/pull/");
    const [first, second] = server.calls;
    assert.ok(first && second);
    assert.equal(first.headers["authorization"], "Token abc");
    assert.equal(first.headers["x-device-id"], "dev");
    assert.equal(first.headers["x-app-version"], "2.4.1");
    assert.equal(first.headers["x-schema-version"], "fieldwork.customer=1,fieldwork.workorder=1");
    assert.equal(first.headers["x-outbox-pending"], "3");
    assert.equal(first.headers["x-outbox-oldest-age"], "5400");
    assert.equal(first.url.searchParams.get("cursor"), "c/+=");
    assert.equal(first.url.searchParams.get("limit"), "5");
    assert.equal(second.headers["x-device-id"], undefined);
  });

  it("sends the outbox headers as 0 when it is empty, and no schema header unless pinned", async () => {
    const server = new FakeServer().always("GET", "/api/v1/sync/models/", () => json(200, []));
    await transport(server, [], { outbox: async () => [0, 0] }).request("GET", "/api/v1/sync/models/");
    const call = server.calls[0];
    assert.ok(call);
    assert.equal(call.headers["x-outbox-pending"], "0");
    assert.equal(call.headers["x-outbox-oldest-age"], "0");
    assert.equal(call.headers["x-schema-version"], undefined);
    assert.equal(call.headers["x-app-version"], undefined);
  });

  it("gzips request bodies above the threshold", async () => {
    const server = new FakeServer().always("POST", "/api/v1/sync/push/", () => json(200, { results: [] }));
    const api = transport(server, [], { compressAbove: 200 });
    const big = { mutations: [{ data: { description: "x".repeat(1000) } }] };
    await api.request("POST", "/api/v1/sync/push/", { json: big });
    await api.request("POST", "/api/v1/sync/push/", { json: { mutations: [] } });
    const [large, small] = server.calls;
    assert.ok(large && small);
    assert.equal(large.headers["content-encoding"], "gzip");
    assert.deepEqual(large.body, big); // the fake gunzips it
    assert.equal(small.headers["content-encoding"], undefined);
    assert.deepEqual(small.body, { mutations: [] });
    assert.equal(api.stats.compressedRequests, 1);
  });

  it("does not follow a redirect", async () => {
    const server = new FakeServer().on("GET", "/api/v1/sync/models/", () =>
      new Response(null, { status: 301, headers: { Location: "https://sync.test/api/v1/sync/models/" } }),
    );
    const error = await transport(server, []).request("GET", "/api/v1/sync/models/").catch((e: unknown) => e);
    assert.ok(error instanceof UnexpectedResponse);
    assert.equal(error.status, 301);
    assert.equal(error.location, "https://sync.test/api/v1/sync/models/");
  });

  it("turns 426 into UpgradeRequired", async () => {
    const server = new FakeServer().on("GET", "/api/v1/sync/pull/", () =>
      json(426, {
        code: "upgrade_required",
        detail: "Upgrade.",
        minimum_version: "2.0.0",
        platform: "android",
        upgrade_url: "https://example.test/app",
      }),
    );
    const error = await transport(server, []).request("GET", "/api/v1/sync/pull/").catch((e: unknown) => e);
    assert.ok(error instanceof UpgradeRequired);
    assert.equal(error.minimumVersion, "2.0.0");
    assert.equal(error.platform, "android");
    assert.equal(error.upgradeUrl, "https://example.test/app");
    assert.equal(server.calls.length, 1);
  });

  it("reads Retry-After as seconds or an HTTP date", () => {
    assert.equal(parseRetryAfter("7"), 7);
    assert.equal(parseRetryAfter(null), null);
    assert.equal(parseRetryAfter("soon"), null);
    const inAMinute = new Date(Date.now() + 60_000).toUTCString();
    const seconds = parseRetryAfter(inAMinute);
    assert.ok(seconds !== null && seconds > 55 && seconds <= 60, String(seconds));
  });

  it("transfers bytes to and from a link without the token or any header of ours, retrying 5xx", async () => {
    const server = new FakeServer()
      .on("PUT", "/bucket/u1/1", () => new Response("<Error>SlowDown</Error>", { status: 503 }))
      .on("PUT", "/bucket/u1/1", () => new Response(null, { status: 200, headers: { ETag: '"e1"' } }))
      .on("GET", "/content/f", () => new Response(new Uint8Array([7, 8, 9]), { status: 200 }));
    const sleeps: number[] = [];
    const api = transport(server, sleeps, { appVersion: "1.0", schema: "x.y=1", outbox: async () => [2, 5] });
    api.token = "t0ken";
    api.deviceId = "d";
    const answer = await api.transfer("PUT", "https://s3.test/bucket/u1/1?X-Amz-Signature=s", { body: new Uint8Array([1, 2, 3]) });
    assert.deepEqual(answer, new Uint8Array());
    assert.deepEqual(await api.transfer("GET", "https://s3.test/content/f?sig=s"), new Uint8Array([7, 8, 9]));
    assert.equal(server.calls.length, 3);
    for (const call of server.calls) {
      assert.equal(call.url.host, "s3.test");
      assert.deepEqual(Object.keys(call.headers), [], `${call.method} ${call.path} sent ${JSON.stringify(call.headers)}`);
    }
    assert.deepEqual(server.calls[1]?.bytes, new Uint8Array([1, 2, 3]));
    assert.equal(sleeps.length, 1);
  });

  it("a link refused is an ApiError without the link's signature; the server's own links say the server's error", async () => {
    const server = new FakeServer()
      .on("PUT", "/bucket/u1/1", () => new Response("<Error>AccessDenied</Error>", { status: 403 }))
      .on("PUT", "/api/v1/blobs/uploads/u1/parts/1/", () => json(400, { code: "bad_blob", detail: "Wrong size." }));
    const api = transport(server, []);
    const refused = await api.transfer("PUT", "https://s3.test/bucket/u1/1?X-Amz-Signature=secret").catch((e: unknown) => e);
    assert.ok(refused instanceof ApiError, String(refused));
    assert.equal(refused.status, 403);
    assert.equal(refused.code, "storage_refused");
    assert.match(refused.detail, /AccessDenied/);
    assert.doesNotMatch(refused.message, /secret/);
    const ours = await api
      .transfer("PUT", "https://sync.test/api/v1/blobs/uploads/u1/parts/1/?signature=secret", { body: new Uint8Array(1) })
      .catch((e: unknown) => e);
    assert.ok(ours instanceof ApiError);
    assert.equal(ours.code, "bad_blob");
    assert.doesNotMatch(ours.message, /secret/);
  });
});
