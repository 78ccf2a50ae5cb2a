/** A scripted fake `fetch` and fixtures for the unit tests. */

import { gunzipSync } from "node:zlib";

import { type FetchLike, MemoryStorage, type ModelDescription, SyncClient, type SyncClientOptions } from "../src/index.js";

export interface Call {
  method: string;
  url: URL;
  path: string;
  headers: Record<string, string>;
  /** The JSON body, decompressed when it was gzipped. */
  body: unknown;
  /** Any other body (a file part): its bytes. */
  bytes: Uint8Array | null;
}

export type Handler = (call: Call) => Response | Promise<Response>;

interface Route {
  method: string;
  /** The exact path, or a pattern of paths (for ids made up as the test runs). */
  path: string | RegExp;
  handler: Handler;
  times: number;
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

/**
 * Routes by method and path, each answering a number of times (once by
 * default), first added first used. A call no route answers is recorded in
 * `unmatched` and fails as a network error would.
 */
export class FakeServer {
  readonly calls: Call[] = [];
  readonly unmatched: string[] = [];
  private routes: Route[] = [];
  /** Requests being answered right now (to see that syncs do not interleave). */
  inFlight = 0;
  maxInFlight = 0;

  on(method: string, path: string | RegExp, handler: Handler, times = 1): this {
    this.routes.push({ method, path, handler, times });
    return this;
  }

  always(method: string, path: string | RegExp, handler: Handler): this {
    return this.on(method, path, handler, Number.POSITIVE_INFINITY);
  }

  callsTo(method: string, path: string): Call[] {
    return this.calls.filter((c) => c.method === method && c.path === path);
  }

  readonly fetch: FetchLike = async (input, init) => {
    const url = new URL(input);
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, key) => {
      headers[key] = value;
    });
    let body: unknown;
    let raw: Uint8Array | null = null;
    if (init.body !== undefined && init.body !== null) {
      let bytes = Buffer.from(init.body as Uint8Array);
      if (headers["content-encoding"] === "gzip") bytes = gunzipSync(bytes);
      if (headers["content-type"] === "application/json") body = JSON.parse(bytes.toString("utf8"));
      else raw = new Uint8Array(bytes);
    }
    const call: Call = { method: init.method ?? "GET", url, path: url.pathname, headers, body, bytes: raw };
    this.calls.push(call);
    const route = this.routes.find(
      (r) =>
        r.times > 0 &&
        r.method === call.method &&
        (typeof r.path === "string" ? r.path === call.path : r.path.test(call.path)),
    );
    if (route === undefined) {
      this.unmatched.push(`${call.method} ${url.pathname}${url.search}`);
      throw new TypeError(`fetch failed: nothing scripted for ${call.method} ${call.path}`);
    }
    route.times -= 1;
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise((resolve) => setImmediate(resolve));
      return await route.handler(call);
    } finally {
      this.inFlight -= 1;
    }
  };
}

/** The largest file the fixture's `photo` field takes. */
export const MAX_SIZE = 1000;

export const CUSTOMER = "fieldwork.customer";
export const WORKORDER = "fieldwork.workorder";

/** Discovery's description of two demo models (docs/protocol.md), plus a field of each other kind. */
export const MODELS: ModelDescription[] = [
  {
    model: CUSTOMER,
    version: 1,
    fields: {
      name: { type: "string", required: true, read_only: false, nullable: false, max_length: 200 },
      email: { type: "string", required: false, read_only: false, nullable: false, max_length: 254, format: "email", default: "" },
      phone: { type: "string", required: false, read_only: false, nullable: false, max_length: 40, default: "" },
      website: { type: "string", required: false, read_only: false, nullable: false, format: "url", default: "" },
      team: { type: "reference", required: false, read_only: false, nullable: true, model: "fieldwork.team", default: null },
      owner: { type: "reference", required: false, read_only: true, nullable: false, model: "auth.user" },
      created_at: { type: "datetime", required: false, read_only: true, nullable: false },
    },
    conflict_policy: "merge",
    conflict_resolution: "owner",
  },
  {
    model: WORKORDER,
    version: 1,
    fields: {
      customer: { type: "reference", required: true, read_only: false, nullable: false, model: CUSTOMER },
      title: { type: "string", required: true, read_only: false, nullable: false, max_length: 200 },
      status: {
        type: "string",
        required: false,
        read_only: false,
        nullable: false,
        choices: ["open", "scheduled", "in_progress", "done", "cancelled"],
        default: "open",
      },
      scheduled_for: { type: "date", required: false, read_only: false, nullable: true, default: null },
      due_at: { type: "datetime", required: false, read_only: false, nullable: true, default: null },
      estimated_hours: { type: "number", required: false, read_only: false, nullable: true, default: null },
      visits: { type: "integer", required: false, read_only: false, nullable: false, default: 0 },
      urgent: { type: "boolean", required: false, read_only: false, nullable: false, default: false },
      photo: {
        type: "blob",
        required: false,
        read_only: false,
        nullable: true,
        default: null,
        max_size: MAX_SIZE,
        content_types: ["image/*", "application/pdf", "text/plain"],
      },
    },
    conflict_policy: "custom",
    conflict_resolution: "owner",
  },
];

export const DEVICE = "6f1c2a4e-8d1b-4c36-9a53-0b9e6f0d7c21";

export interface Rig {
  server: FakeServer;
  storage: MemoryStorage;
  client: SyncClient;
  sleeps: number[];
}

/** A signed-in, registered client with discovery stored, talking to a fresh FakeServer. */
export async function rig(options: Partial<SyncClientOptions> = {}): Promise<Rig> {
  const server = new FakeServer();
  const storage = new MemoryStorage();
  const sleeps: number[] = [];
  const client = new SyncClient({
    baseUrl: "https://sync.test",
    storage,
    fetch: server.fetch,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    ...options,
  });
  await client.useToken("alice", "t0ken");
  await client.store.setMany({ device_id: DEVICE, models: JSON.stringify(MODELS) });
  await client.open();
  client.api.deviceId = DEVICE;
  return { server, storage, client, sleeps };
}

export function page(
  changes: unknown[],
  cursor: string,
  hasMore = false,
  remaining = 0,
  headers: Record<string, string> = {},
): Response {
  return json(200, { changes, cursor, has_more: hasMore, remaining }, headers);
}

export function upsert(model: string, id: string, version: number, data: Record<string, unknown>): unknown {
  return { model, id, op: "upsert", version, data };
}

export function del(model: string, id: string, version: number): unknown {
  return { model, id, op: "delete", version, data: null };
}

export const ids = {
  a: "00000000-0000-4000-8000-00000000000a",
  b: "00000000-0000-4000-8000-00000000000b",
  c: "00000000-0000-4000-8000-00000000000c",
  d: "00000000-0000-4000-8000-00000000000d",
  w: "00000000-0000-4000-8000-0000000000f1",
  conflict: "bcf0fe0d-fbbe-4a43-985e-974d200f4071",
};
