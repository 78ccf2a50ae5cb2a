/**
 * HTTP for the client: JSON over `fetch`, the token and device headers, the
 * handshake, gzip request bodies, and retries with exponential backoff and
 * full jitter honouring `Retry-After`.
 *
 * Every call the client makes is safe to repeat, which is what makes blind
 * retries correct here: a pull with the same cursor returns the same or newer
 * states, a push with the same `mutation_id`s returns the first results and
 * applies nothing twice, a device registration is an upsert, and resolving a
 * conflict twice answers `409 conflict_settled` the second time.
 */

import { ApiError, type ErrorBody, NetworkError, UnexpectedResponse, UpgradeRequired } from "./errors.js";

/** Worth another try: the request may not have been processed, or the server asked us to come back. */
export const RETRY_STATUSES: ReadonlySet<number> = new Set([429, 500, 502, 503, 504]);

export const APP_VERSION = "X-App-Version";
export const SCHEMA_VERSION = "X-Schema-Version";
export const OUTBOX_PENDING = "X-Outbox-Pending";
export const OUTBOX_OLDEST_AGE = "X-Outbox-Oldest-Age";

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/**
 * Exponential backoff with full jitter: sleep a random time in
 * `[0, min(maxDelayMs, baseDelayMs × 2^attempt)]`, so a fleet of phones
 * coming back after an outage does not retry in waves.
 */
export interface RetryPolicy {
  /** Tries in all, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** A `Retry-After` longer than this (a login lockout) goes to the app instead of being slept through. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 6,
  baseDelayMs: 500,
  maxDelayMs: 30_000,
  maxRetryAfterMs: 120_000,
};

export function backoff(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  return random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
}

/** `X-Schema-Version`'s value: `label=version`, comma-separated, sorted. */
export function schemaHeader(schema: Record<string, number>): string {
  return Object.keys(schema)
    .sort()
    .map((label) => `${label}=${Math.trunc(schema[label] as number)}`)
    .join(",");
}

/** `Retry-After`: seconds, or an HTTP date (RFC 9110, 10.2.3); in seconds. */
export function parseRetryAfter(value: string | null): number | null {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.max(0, Number(trimmed));
  const when = Date.parse(trimmed);
  return Number.isNaN(when) ? null : Math.max(0, (when - Date.now()) / 1000);
}

export interface TransportOptions {
  baseUrl: string;
  /** The `fetch` to use (the global one by default): inject a fake in tests. */
  fetch?: FetchLike;
  retry?: Partial<RetryPolicy>;
  /** How to wait between tries (tests make it instant). */
  sleep?: (ms: number) => Promise<void>;
  /** Uniform in [0, 1): the jitter. */
  random?: () => number;
  /** Per request; a live pull gets its own. */
  timeoutMs?: number;
  /** Per try of a `transfer` (a file, or one part of one, to or from a link); 120 s by default. */
  transferTimeoutMs?: number;
  /** Request bodies larger than this many bytes go gzipped when `CompressionStream` exists; `Infinity`: never. */
  compressAbove?: number;
  appVersion?: string | null;
  /** `X-Schema-Version`'s value (see `schemaHeader`); `null`: the app speaks the current schema. */
  schema?: string | null;
  /** `[pending edits, age in seconds of the oldest]`, read afresh for every request. */
  outbox?: () => Promise<[number, number]>;
}

export interface RequestOptions {
  json?: unknown;
  params?: Record<string, string | number | undefined>;
  /** Send `X-Device-Id` (pull, push, resolve). */
  device?: boolean;
  /** The statuses that mean success; 200 by default. */
  expect?: number | readonly number[];
  /** Headers added to (or, `null`, removed from) the usual ones. */
  headers?: Record<string, string | null>;
  retry?: Partial<RetryPolicy>;
  timeoutMs?: number;
  /** Cancels the request (and its retries). */
  signal?: AbortSignal;
}

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

/** Counters of what went over the wire, for the curious. */
export interface TransferStats {
  requests: number;
  retries: number;
  compressedRequests: number;
}

const defaultSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function gzip(bytes: Uint8Array): Promise<Uint8Array | null> {
  const Stream = (globalThis as { CompressionStream?: typeof CompressionStream }).CompressionStream;
  if (Stream === undefined) return null;
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(new Stream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A link without its query: the signature stays out of messages and logs. */
function withoutQuery(url: string): string {
  return url.split("?", 1)[0] as string;
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

/** A JSON client for one server, with the token, device and handshake headers. */
export class Transport {
  token: string | null = null;
  deviceId: string | null = null;
  readonly baseUrl: string;
  readonly retry: RetryPolicy;
  readonly stats: TransferStats = { requests: 0, retries: 0, compressedRequests: 0 };
  appVersion: string | null;
  schema: string | null;
  private readonly fetchImpl: FetchLike;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  private readonly timeoutMs: number;
  private readonly transferTimeoutMs: number;
  private readonly compressAbove: number;
  private readonly outbox: (() => Promise<[number, number]>) | null;

  constructor(options: TransportOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.sleep = options.sleep ?? defaultSleep;
    this.random = options.random ?? Math.random;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.transferTimeoutMs = options.transferTimeoutMs ?? 120_000;
    this.compressAbove = options.compressAbove ?? 4096;
    this.appVersion = options.appVersion ?? null;
    this.schema = options.schema ?? null;
    this.outbox = options.outbox ?? null;
  }

  /**
   * The headers that say which app, which schema, and how its outbox stands
   * (docs/protocol.md, "The handshake"). The outbox ones go out even when it
   * is empty (`0`).
   */
  async handshake(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    if (this.appVersion) out[APP_VERSION] = this.appVersion;
    if (this.schema !== null) out[SCHEMA_VERSION] = this.schema;
    if (this.outbox !== null) {
      const [pending, age] = await this.outbox();
      out[OUTBOX_PENDING] = String(pending);
      out[OUTBOX_OLDEST_AGE] = String(pending ? age : 0);
    }
    return out;
  }

  url(path: string, params?: RequestOptions["params"]): string {
    const url = /^https?:\/\//.test(path) ? path : `${this.baseUrl}${path}`;
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params ?? {})) {
      if (value !== undefined) query.set(key, String(value));
    }
    const text = query.toString();
    return text ? `${url}${url.includes("?") ? "&" : "?"}${text}` : url;
  }

  /**
   * Send one request, retrying network errors, 5xx and 429 (never sooner
   * than `Retry-After`). Resolves with the answer when its status is one of
   * `expect`; throws `ApiError` (`UpgradeRequired` for a 426) for 4xx and
   * 5xx, `UnexpectedResponse` for any other status (a redirect is not
   * followed), `NetworkError` when no try reached the server.
   */
  async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    const policy: RetryPolicy = { ...this.retry, ...options.retry };
    const expected = typeof options.expect === "number" ? [options.expect] : (options.expect ?? [200]);
    const url = this.url(path, options.params);
    const sent: Record<string, string | null> = {
      Accept: "application/json",
      ...(await this.handshake()),
      ...options.headers,
    };
    if (this.token) sent["Authorization"] = `Token ${this.token}`;
    if (options.device && this.deviceId) sent["X-Device-Id"] = this.deviceId;
    let body: Uint8Array | undefined;
    if (options.json !== undefined) {
      body = new TextEncoder().encode(JSON.stringify(options.json));
      sent["Content-Type"] = "application/json";
      if (body.length > this.compressAbove) {
        const packed = await gzip(body);
        if (packed !== null) {
          body = packed;
          sent["Content-Encoding"] = "gzip";
          this.stats.compressedRequests += 1;
        }
      }
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(sent)) if (value !== null) headers[name] = value;

    for (let attempt = 0; ; attempt += 1) {
      this.stats.requests += 1;
      let response: Response;
      const controller = new AbortController();
      const abort = (): void => controller.abort(options.signal?.reason);
      options.signal?.addEventListener("abort", abort);
      const timer = setTimeout(() => controller.abort(new Error("timeout")), options.timeoutMs ?? this.timeoutMs);
      try {
        if (options.signal?.aborted) throw options.signal.reason ?? new Error("aborted");
        const init: RequestInit = { method, headers, redirect: "manual", signal: controller.signal };
        if (body !== undefined) init.body = body as BodyInit;
        response = await this.fetchImpl(url, init);
      } catch (error) {
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", abort);
        if (options.signal?.aborted) throw error; // cancelled by the caller: not retried
        // Refused, reset, timed out: the request may or may not have been processed; both are fine to repeat.
        if (attempt + 1 >= policy.attempts) {
          throw new NetworkError(`${method} ${url}: ${error instanceof Error ? error.message : String(error)}`, error);
        }
        await this.wait(backoff(policy, attempt, this.random));
        continue;
      }
      let parsed: unknown;
      try {
        parsed = await readBody(response);
      } catch (error) {
        parsed = undefined;
        // The answer was cut off: as a network error.
        if (attempt + 1 >= policy.attempts) throw new NetworkError(`${method} ${url}: ${String(error)}`, error);
        await this.wait(backoff(policy, attempt, this.random));
        continue;
      } finally {
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", abort);
      }
      if (expected.includes(response.status)) {
        return { status: response.status, body: parsed as T, headers: response.headers };
      }
      if (response.status < 400) {
        throw new UnexpectedResponse(method, url, response.status, parsed, response.headers.get("Location"));
      }
      const errorBody: ErrorBody =
        parsed !== null && typeof parsed === "object" && "code" in parsed
          ? (parsed as ErrorBody)
          : { code: "error", detail: `HTTP ${response.status} ${response.statusText}`.trim() };
      const Kind = errorBody.code === "upgrade_required" ? UpgradeRequired : ApiError;
      const error = new Kind(response.status, errorBody, method, url);
      error.headers = response.headers;
      error.retryAfter = parseRetryAfter(response.headers.get("Retry-After"));
      if (!RETRY_STATUSES.has(response.status) || attempt + 1 >= policy.attempts) throw error;
      let delay = backoff(policy, attempt, this.random);
      if (error.retryAfter !== null) {
        const asked = error.retryAfter * 1000;
        if (asked > policy.maxRetryAfterMs) throw error;
        // Never earlier than asked; a little jitter on top so the devices told the same second spread out.
        delay = asked + this.random() * policy.baseDelayMs;
      }
      await this.wait(delay);
    }
  }

  /**
   * Bytes to or from a link the server gave (docs/protocol.md, "Files"): an
   * upload part's `url` (`PUT`, `body` the part's bytes) or a file's download
   * `url` (`GET`); resolves with the answer's bytes. No token, device or
   * handshake header goes with it: the link is the credential (a presigned
   * S3 URL refuses a second one, and a browser would have to ask S3 for CORS
   * permission to send custom headers). Network errors, 5xx and 429 are
   * retried like `request()`; any other status is `ApiError` (its `url`
   * without the query, which holds the signature). A link on another host
   * answers in its own words: its error becomes code `storage_refused`.
   */
  async transfer(
    method: "GET" | "PUT",
    url: string,
    options: { body?: Uint8Array; timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<Uint8Array> {
    const shown = withoutQuery(url);
    const ours = url.startsWith(`${this.baseUrl}/`);
    for (let attempt = 0; ; attempt += 1) {
      this.stats.requests += 1;
      const controller = new AbortController();
      const abort = (): void => controller.abort(options.signal?.reason);
      options.signal?.addEventListener("abort", abort);
      const timer = setTimeout(() => controller.abort(new Error("timeout")), options.timeoutMs ?? this.transferTimeoutMs);
      let response: Response;
      let bytes: Uint8Array;
      try {
        if (options.signal?.aborted) throw options.signal.reason ?? new Error("aborted");
        const init: RequestInit = { method, signal: controller.signal };
        if (options.body !== undefined) init.body = options.body as BodyInit;
        response = await this.fetchImpl(url, init);
        bytes = new Uint8Array(await response.arrayBuffer());
      } catch (error) {
        if (options.signal?.aborted) throw error; // cancelled by the caller: not retried
        if (attempt + 1 >= this.retry.attempts) {
          throw new NetworkError(`${method} ${shown}: ${error instanceof Error ? error.message : String(error)}`, error);
        }
        await this.wait(backoff(this.retry, attempt, this.random));
        continue;
      } finally {
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", abort);
      }
      if (response.status >= 200 && response.status < 300) return bytes;
      if (response.status < 400) {
        throw new UnexpectedResponse(method, shown, response.status, null, response.headers.get("Location"));
      }
      const text = new TextDecoder().decode(bytes);
      let body: ErrorBody = { code: "storage_refused", detail: text.slice(0, 300) || `HTTP ${response.status}` };
      if (ours) {
        try {
          const parsed = JSON.parse(text) as unknown;
          if (parsed !== null && typeof parsed === "object" && "code" in parsed) body = parsed as ErrorBody;
        } catch {
          // Not the server's JSON error: keep the text.
        }
      }
      const error = new ApiError(response.status, body, method, shown);
      error.headers = response.headers;
      error.retryAfter = parseRetryAfter(response.headers.get("Retry-After"));
      if (!RETRY_STATUSES.has(response.status) || attempt + 1 >= this.retry.attempts) throw error;
      let delay = backoff(this.retry, attempt, this.random);
      if (error.retryAfter !== null) {
        const asked = error.retryAfter * 1000;
        if (asked > this.retry.maxRetryAfterMs) throw error;
        delay = asked + this.random() * this.retry.baseDelayMs;
      }
      await this.wait(delay);
    }
  }

  private async wait(ms: number): Promise<void> {
    this.stats.retries += 1;
    await this.sleep(ms);
  }
}
