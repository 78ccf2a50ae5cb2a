/**
 * The client's errors: one class per thing an app reacts to differently
 * (the same split as the Python reference client's `client/errors.py`).
 */

/** Base of everything this package throws on purpose. */
export class ClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * The server could not be reached, or kept failing, after every retry.
 * Nothing local is lost: the outbox keeps its entries (and their mutation
 * ids), so the next sync sends the same mutations again.
 */
export class NetworkError extends ClientError {
  override readonly cause: unknown;
  constructor(message: string, cause?: unknown) {
    super(message);
    this.cause = cause;
  }
}

/** The error body every 4xx/5xx under `/api/` has (docs/protocol.md, "Errors"). */
export interface ErrorBody {
  code?: string;
  detail?: string;
  errors?: Record<string, string[]>;
  [key: string]: unknown;
}

/** The server answered with an error: `{code, detail, errors?}`. Branch on `code`. */
export class ApiError extends ClientError {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  readonly errors: Record<string, string[]> | null;
  readonly body: ErrorBody;
  readonly method: string;
  readonly url: string;
  /** Seconds from `Retry-After`, when the answer had one (429, 503). */
  retryAfter: number | null = null;
  /** The response's headers. */
  headers: Headers | null = null;

  constructor(status: number, body: ErrorBody, method = "", url = "") {
    const code = typeof body.code === "string" && body.code ? body.code : "error";
    const detail = typeof body.detail === "string" && body.detail ? body.detail : `HTTP ${status}`;
    super(`${method && url ? `${method} ${url} answered ` : ""}${status} ${code}: ${detail}`);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.errors = body.errors && typeof body.errors === "object" ? body.errors : null;
    this.body = body;
    this.method = method;
    this.url = url;
  }
}

/**
 * `426 upgrade_required`: this app version may no longer pull. Its pushes are
 * still accepted, so `sync()` pushed the outbox before the pull that threw
 * this (`report` says how). Show the upgrade message and stop syncing until
 * the app is upgraded.
 */
export class UpgradeRequired extends ApiError {
  readonly minimumVersion: string;
  readonly platform: string;
  readonly upgradeUrl: string | null;
  /** The report of the sync that pushed before the pull was refused. */
  report: unknown = null;

  constructor(status: number, body: ErrorBody, method = "", url = "") {
    super(status, body, method, url);
    this.minimumVersion = String(body["minimum_version"] ?? "");
    this.platform = String(body["platform"] ?? "");
    const upgradeUrl = body["upgrade_url"];
    this.upgradeUrl = typeof upgradeUrl === "string" && upgradeUrl ? upgradeUrl : null;
  }
}

/**
 * A status below 400 that the call does not expect: a redirect (not
 * followed: the server URL is wrong, most often http for an https server)
 * or another 2xx. Retrying will not help.
 */
export class UnexpectedResponse extends ClientError {
  constructor(
    readonly method: string,
    readonly url: string,
    readonly status: number,
    readonly body: unknown,
    readonly location: string | null = null,
  ) {
    super(
      status >= 300 && status < 400 || status === 0
        ? `${method} ${url} redirects${location ? ` to ${location}` : ""}: the client's server URL is wrong (https?)`
        : `${method} ${url} answered ${status}. Is this the sync server's address?`,
    );
  }
}

/** No token, or the server refused it (401): the user must log in again. */
export class NotLoggedIn extends ClientError {}

/** `logout()` could not push every pending edit or upload every file attached (offline, or refused): nothing was forgotten. */
export class UnsentChanges extends ClientError {}

/**
 * A local edit the server would reject; nothing was queued. `errors` maps
 * each field to messages, in the shape of a push's `rejected` result.
 */
export class ValidationError extends ClientError {
  constructor(readonly errors: Record<string, string[]>) {
    super(
      Object.entries(errors)
        .map(([field, messages]) => `${field}: ${messages.join(" ")}`)
        .join("; "),
    );
  }
}

/** No such object (or model) here. */
export class NotFound extends ClientError {}

/**
 * Resolving a conflict against a version the object has moved on from
 * (412). The current state was stored locally; `current` is it.
 */
export class StaleResolution extends ClientError {
  constructor(readonly current: Record<string, unknown> | null) {
    super("The object changed since; look at its current state and resolve again.");
  }
}

/** The conflict was already resolved, superseded or dismissed (409). */
export class ConflictSettled extends ClientError {
  constructor(readonly status: string) {
    super(`The conflict is already ${status}.`);
  }
}

/**
 * The file a reference names is not on the server yet (`state` `pending`:
 * uploading; `missing`: its device has not uploaded it). Try again after a
 * sync.
 */
export class FileNotReady extends ClientError {
  constructor(
    readonly sha256: string,
    readonly state: string,
  ) {
    super(`File ${sha256.slice(0, 12)}… is ${state} on the server; try again after a sync.`);
  }
}

/** What was downloaded is not the file its reference names (its SHA-256 differs); nothing was kept. */
export class FileCorrupt extends ClientError {
  constructor(readonly sha256: string) {
    super(`The download of file ${sha256.slice(0, 12)}… does not match its sha256; nothing was kept.`);
  }
}
