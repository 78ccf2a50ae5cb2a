/**
 * What discovery (`GET /api/v1/sync/models/`) says about each model, and the
 * offline validation it allows: the device tells the user at once, while
 * they are still on the form, instead of a `rejected` result minutes later.
 * The checks mirror the server's (docs/protocol.md, "Discovery" and "Wire
 * types"), with its messages; the server stays the judge. A port of the
 * Python reference client's client/schema.py.
 */

import type { Data } from "./storage.js";

export type Errors = Record<string, string[]>;

/** One field as discovery describes it. */
export interface FieldDescription {
  type: string;
  required?: boolean;
  read_only?: boolean;
  nullable?: boolean;
  choices?: unknown[];
  model?: string;
  max_length?: number;
  max_bytes?: number;
  format?: string;
  default?: unknown;
  /** `blob`: the largest file the server takes, in bytes. */
  max_size?: number;
  /** `blob`: the media types the server takes (`image/*` takes every image). */
  content_types?: string[];
  [key: string]: unknown;
}

/** One model as discovery describes it. */
export interface ModelDescription {
  model: string;
  fields: Record<string, FieldDescription>;
  conflict_policy?: string;
  conflict_resolution?: string;
  version?: number;
  [key: string]: unknown;
}

// Close to Django's validators, which the server uses; deliberately lenient
// where they are intricate: the point is to catch typos offline.
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
const URL_RE = /^(https?|ftps?):\/\/[^\s/$.?#][^\s]*$/i;
const SLUG = /^[-a-zA-Z0-9_]+$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/i;
const UUID = /^(?:urn:uuid:)?\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$/i;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export const FORMAT_MESSAGES: Record<string, string> = {
  email: "Enter a valid email address.",
  url: "Enter a valid URL.",
  slug: "Enter a valid slug (letters, numbers, underscores or hyphens).",
  ip: "Enter a valid IPv4 or IPv6 address.",
};

// A file reference (`blob`), as the server's sync/fields.py checks it.
const SHA256 = /^[0-9a-f]{64}$/;
const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;
const REFERENCE_KEYS = ["content_type", "name", "sha256", "size"];
const NAME_CHARS = 255;

/** Whether `patterns` (discovery's `content_types`: `image/*`, `application/pdf`, …) take a media type. */
export function contentTypeAllowed(contentType: string, patterns: readonly string[]): boolean {
  const [kind, sub] = splitType(contentType);
  return patterns.some((pattern) => {
    const [takes, takesSub] = splitType(pattern);
    return (takes === "*" || takes === kind) && (takesSub === "*" || takesSub === sub);
  });
}

function splitType(value: string): [string, string] {
  const at = value.indexOf("/");
  return at < 0 ? [value, ""] : [value.slice(0, at), value.slice(at + 1)];
}

/** The first thing wrong with a file reference (the server says one at a time), or null. */
function referenceProblem(value: Record<string, unknown>, maxSize: number | null, contentTypes: readonly string[] | null): string | null {
  const keys = Object.keys(value);
  const missing = REFERENCE_KEYS.filter((key) => !keys.includes(key));
  const extra = keys.filter((key) => !REFERENCE_KEYS.includes(key)).sort();
  if (missing.length > 0 || extra.length > 0) {
    const parts = [
      ...(missing.length > 0 ? [`missing ${missing.join(", ")}`] : []),
      ...(extra.length > 0 ? [`unknown ${extra.join(", ")}`] : []),
    ];
    return `A file reference has sha256, size, content_type and name (${parts.join("; ")}).`;
  }
  const { sha256, size, content_type: contentType, name } = value;
  if (typeof sha256 !== "string" || !SHA256.test(sha256)) {
    return "sha256 must be 64 lower-case hex digits (the SHA-256 of the bytes).";
  }
  if (typeof size !== "number" || !Number.isInteger(size) || size < 0) {
    return "size must be the number of bytes (a non-negative integer).";
  }
  if (maxSize !== null && size > maxSize) {
    return `size is over the largest file this server takes (${maxSize} bytes).`;
  }
  if (typeof contentType !== "string" || !MEDIA_TYPE.test(contentType)) {
    return "content_type must be a media type such as image/jpeg.";
  }
  if (contentTypes !== null && !contentTypeAllowed(contentType, contentTypes)) {
    return `${contentType} files are not taken here (SYNC_BLOB_CONTENT_TYPES: ${contentTypes.join(", ")}).`;
  }
  if (typeof name !== "string" || [...name].length > NAME_CHARS || /[\u0000\/\\]/.test(name)) {
    return `name must be a file name of at most ${NAME_CHARS} characters, without / or \\.`;
  }
  return null;
}

function validDate(y: string, m: string, d: string): boolean {
  const year = Number(y);
  const month = Number(m);
  const day = Number(d);
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const days = new Date(Date.UTC(2000, month, 0)).getUTCDate(); // 29 for February (a leap year)
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return day <= (month === 2 && !leap ? 28 : days);
}

function isIpv6(value: string): boolean {
  if (!value.includes(":") || !/^[0-9a-f:.]+$/i.test(value)) return false;
  const halves = value.split("::");
  if (halves.length > 2) return false;
  const groups = halves.flatMap((half) => (half === "" ? [] : half.split(":")));
  const last = groups[groups.length - 1];
  const v4 = last !== undefined && last.includes(".");
  if (v4 && !IPV4.test(last)) return false;
  const hex = v4 ? groups.slice(0, -1) : groups;
  if (!hex.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return false;
  const count = hex.length + (v4 ? 2 : 0);
  return halves.length === 2 ? count < 8 : count === 8;
}

function hasFormat(format: string, value: string): boolean {
  switch (format) {
    case "email":
      return EMAIL.test(value);
    case "url":
      return URL_RE.test(value);
    case "slug":
      return SLUG.test(value);
    case "ip":
      return IPV4.test(value) || isIpv6(value);
    default:
      return true; // a format this client does not know: the server decides
  }
}

/** Python's repr of a value, as the server's choice message shows it. */
function repr(value: unknown): string {
  if (typeof value === "string") return `'${value}'`;
  if (value === true) return "True";
  if (value === false) return "False";
  return JSON.stringify(value);
}

export class FieldSpec {
  readonly required: boolean;
  readonly readOnly: boolean;
  readonly nullable: boolean;
  readonly choices: readonly unknown[] | null;
  readonly model: string | null;
  readonly maxLength: number | null;
  readonly maxBytes: number | null;
  readonly format: string | null;
  /** `blob`: the largest file the server takes (`null`: not said). */
  readonly maxSize: number | null;
  /** `blob`: the media types the server takes (`null`: not said). */
  readonly contentTypes: readonly string[] | null;
  readonly hasDefault: boolean;
  readonly default: unknown;
  readonly type: string;

  constructor(
    readonly name: string,
    spec: FieldDescription,
  ) {
    this.type = spec.type;
    this.required = Boolean(spec.required);
    this.readOnly = Boolean(spec.read_only);
    this.nullable = Boolean(spec.nullable);
    this.choices = Array.isArray(spec.choices) ? spec.choices : null;
    this.model = spec.model ?? null;
    this.maxLength = typeof spec.max_length === "number" ? spec.max_length : null;
    this.maxBytes = typeof spec.max_bytes === "number" ? spec.max_bytes : null;
    this.format = spec.format ?? null;
    this.maxSize = typeof spec.max_size === "number" ? spec.max_size : null;
    this.contentTypes = Array.isArray(spec.content_types) ? spec.content_types.map(String) : null;
    this.hasDefault = "default" in spec;
    this.default = spec.default;
  }

  /** The messages for `value`; empty when the server would take it. */
  check(value: unknown): string[] {
    if (value === null || value === undefined) {
      return this.nullable ? [] : ["This field may not be null."];
    }
    if (!this.hasType(value)) return [`Expected a JSON value of type ${this.type}.`];
    const problems: string[] = [];
    if (typeof value === "string") {
      if (value.includes("\u0000")) problems.push("NUL characters are not allowed.");
      const length = [...value].length; // characters, as the server counts them
      if (this.maxLength !== null && length > this.maxLength) {
        problems.push(`Ensure this value has at most ${this.maxLength} characters (it has ${length}).`);
      }
      if (this.required && value.trim() === "" && (this.type === "string" || this.type === "text")) {
        problems.push("This field may not be blank.");
      }
      if (value && this.format && !hasFormat(this.format, value)) {
        problems.push(FORMAT_MESSAGES[this.format] ?? `Enter a valid ${this.format}.`);
      }
    }
    if (this.choices !== null && !this.choices.includes(value)) {
      problems.push(`Value ${repr(value)} is not a valid choice.`);
    }
    if (this.type === "json" && this.maxBytes !== null) {
      const size = new TextEncoder().encode(JSON.stringify(value)).length;
      if (size > this.maxBytes) problems.push(`Ensure this value has at most ${this.maxBytes} bytes.`);
    }
    if (this.type === "blob") {
      const problem = referenceProblem(value as Record<string, unknown>, this.maxSize, this.contentTypes);
      if (problem !== null) problems.push(problem);
    }
    return problems;
  }

  /** Strict JSON typing, as the server checks it: `"2"` is no number, `1` no boolean, `true` no integer. */
  private hasType(value: unknown): boolean {
    switch (this.type) {
      case "string":
      case "text":
        return typeof value === "string";
      case "integer":
        return typeof value === "number" && Number.isInteger(value);
      case "number":
        return typeof value === "number" && Number.isFinite(value);
      case "boolean":
        return typeof value === "boolean";
      case "date": {
        if (typeof value !== "string") return false;
        const m = DATE.exec(value);
        return m !== null && validDate(m[1] as string, m[2] as string, m[3] as string);
      }
      case "datetime": {
        if (typeof value !== "string") return false;
        const m = DATETIME.exec(value);
        return (
          m !== null &&
          validDate(m[1] as string, m[2] as string, m[3] as string) &&
          Number(m[4]) < 24 &&
          Number(m[5]) < 60 &&
          Number(m[6] ?? "0") < 60
        );
      }
      case "uuid":
        return typeof value === "string" && UUID.test(value);
      case "blob": {
        // A file reference: a JSON object (its keys are checked in `check`), not the bytes themselves.
        if (typeof value !== "object" || value === null) return false;
        const proto = Object.getPrototypeOf(value) as unknown;
        return proto === Object.prototype || proto === null;
      }
      case "reference":
        // A user reference is the user's integer id; synced models use UUIDs.
        if (this.model === "auth.user") return typeof value === "number" && Number.isInteger(value);
        return typeof value === "string" && UUID.test(value);
      default:
        return true; // json: any JSON value
    }
  }
}

export class ModelSpec {
  readonly label: string;
  readonly fields: Map<string, FieldSpec>;
  readonly conflictPolicy: string;
  readonly conflictResolution: string;
  /** Of the model's schema on the server now (discovery's `version`). */
  readonly version: number;

  constructor(readonly description: ModelDescription) {
    this.label = description.model;
    this.fields = new Map(Object.entries(description.fields).map(([name, spec]) => [name, new FieldSpec(name, spec)]));
    this.conflictPolicy = description.conflict_policy ?? "merge";
    this.conflictResolution = description.conflict_resolution ?? "owner";
    this.version = Number(description.version ?? 1) || 1;
  }

  /** What the server stores for writable fields a create leaves out. */
  defaults(): Data {
    const out: Data = {};
    for (const [name, spec] of this.fields) {
      if (spec.hasDefault && !spec.readOnly) out[name] = spec.default;
    }
    return out;
  }

  /** The errors the server would answer a push of `data` with. */
  validate(data: Data, creating: boolean): Errors {
    const errors: Errors = {};
    for (const [name, value] of Object.entries(data)) {
      const spec = this.fields.get(name);
      if (spec === undefined) errors[name] = ["Unknown field."];
      else if (spec.readOnly) errors[name] = ["This field is read-only."];
      else {
        const problems = spec.check(value);
        if (problems.length) errors[name] = problems;
      }
    }
    if (creating) {
      for (const [name, spec] of this.fields) {
        if (spec.required && !(name in data)) (errors[name] ??= []).push("This field is required.");
      }
    }
    return errors;
  }
}
