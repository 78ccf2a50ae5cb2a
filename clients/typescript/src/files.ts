/**
 * Files on synced objects, the device's side (docs/protocol.md, "Files"; a
 * port of the Python reference client's client/files.py).
 *
 * `attach()` keeps the bytes in the store, named by their sha256, queues the
 * upload, and returns the reference to put in a `blob` field: the edit syncs
 * at once, the bytes follow. `uploadPending()` (done by every `sync()`, after
 * the data) sends what is queued, each file in parts, and resumes where it
 * stopped after a dropped connection or a restart: the server keeps the parts
 * it has, the store keeps the upload's id. `fetch()` downloads a file the
 * first time the app needs it, checks it against its sha256, and keeps it.
 *
 *     const photo = await client.files.attach(file, { contentType: "image/jpeg" });  // a File / Blob / Uint8Array
 *     await client.update("fieldwork.workorder", id, { photo });
 *     await client.sync();                                   // the edit, then the bytes
 *     const bytes = await client.files.fetch(order.photo);   // on another device
 */

import { ApiError, ClientError, FileCorrupt, FileNotReady, NotFound } from "./errors.js";
import type { ApiResponse, RequestOptions, Transport } from "./http.js";
import type { PendingUpload } from "./storage.js";
import type { LocalStore } from "./store.js";

export const BLOBS_PATH = "/api/v1/blobs/";
export const UPLOADS_PATH = "/api/v1/blobs/uploads/";
/**
 * Times one file's upload is started over within one `uploadPending()`
 * (after `409 upload_incomplete`, `422 blob_mismatch`, or an upload that
 * expired); past these the error goes to the app, and the next call goes on.
 */
const MAX_ROUNDS = 3;
/** Links this close to `links_expire_at` are renewed before a part is sent on one. */
const LINK_MARGIN_MS = 10_000;
const SHA256 = /^[0-9a-f]{64}$/;
/** Where an image's thumbnail is kept: its image's sha256 behind this mark. */
const THUMBNAIL_KEY = "thumbnail:";

/** What a `blob` field holds (docs/protocol.md, "Files"): the bytes travel apart. */
export interface FileReference {
  /** 64 lower-case hex digits: the SHA-256 of the bytes. */
  sha256: string;
  /** Bytes. */
  size: number;
  content_type: string;
  /** A file name, without `/`. */
  name: string;
}

export interface AttachOptions {
  /** The media type; by default the `Blob`'s `type`, else `application/octet-stream`. Parameters (`;charset=…`) are dropped. */
  contentType?: string;
  /** The file name shown and downloaded as; by default the `File`'s name, else the sha256's first 12 digits. */
  name?: string;
}

/** Handed to `onProgress` after each part sent. */
export interface UploadProgress {
  sha256: string;
  /** Bytes of this file the server has so far. */
  sent: number;
  size: number;
}

/** One part of an upload, as the server describes it. */
export interface UploadPart {
  number: number;
  size: number;
  done: boolean;
  /** Where to `PUT` it (without the token); only for parts not done. */
  url?: string;
}

/** The answer to starting, resuming or completing an upload. */
export interface UploadAnswer {
  sha256: string;
  size: number;
  content_type: string;
  /** `complete`: the server has the bytes; `pending`: parts to send. */
  state: string;
  upload_id?: string;
  part_size?: number;
  expires_at?: string;
  links_expire_at?: string;
  parts?: UploadPart[];
}

/** `GET /api/v1/blobs/{sha256}/`. */
export interface FileInfo {
  sha256: string;
  size: number;
  content_type: string;
  /** `complete`, `pending` (uploading) or `missing` (referred to, never uploaded). */
  state: string;
  /** Only when `complete`: the bytes, for `link_seconds`, without the token. */
  url?: string;
  expires_at?: string;
  thumbnail?: (FileInfo & { url: string }) | null;
}

type Caller = <T>(method: string, path: string, options?: RequestOptions) => Promise<ApiResponse<T>>;

/** The SHA-256 of the bytes, as 64 lower-case hex digits (Web Crypto). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  if (subtle === undefined) {
    throw new ClientError("crypto.subtle is missing (a browser has it only on https or localhost): files need SHA-256.");
  }
  const digest = new Uint8Array(await subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** `image/JPEG; q=1` → `image/jpeg`: the form a reference takes. */
function mediaType(value: string): string {
  return (value.split(";", 1)[0] ?? "").trim().toLowerCase();
}

function linksExpired(answer: UploadAnswer): boolean {
  const until = answer.links_expire_at === undefined ? Number.NaN : Date.parse(answer.links_expire_at);
  return !Number.isNaN(until) && Date.now() >= until - LINK_MARGIN_MS;
}

/** The files of one device (`SyncClient.files`). */
export class Files {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: LocalStore,
    private readonly api: Transport,
    private readonly call: Caller,
  ) {}

  /**
   * Keep a file on this device and queue its upload; returns the reference
   * to put in a `blob` field (`client.update(model, id, { photo: ref })`),
   * which is checked there against discovery's `max_size` and
   * `content_types`. Attaching the same bytes twice keeps them once.
   */
  async attach(source: Uint8Array | Blob, options: AttachOptions = {}): Promise<FileReference> {
    const bytes = source instanceof Uint8Array ? source : new Uint8Array(await source.arrayBuffer());
    const sha256 = await sha256Hex(bytes);
    const given = options.contentType ?? (source instanceof Uint8Array ? "" : source.type);
    const contentType = mediaType(given) || "application/octet-stream";
    const fileName = typeof File !== "undefined" && source instanceof File ? source.name : "";
    const name = options.name ?? (fileName || sha256.slice(0, 12));
    await this.store.keepFile(sha256, bytes, { size: bytes.length, contentType });
    return { sha256, size: bytes.length, content_type: contentType, name };
  }

  /** Whether this device holds the file's bytes (attached here, or fetched before). */
  has(file: FileReference | string): Promise<boolean> {
    return this.store.hasFile(typeof file === "string" ? file : file.sha256);
  }

  /** The files attached here whose bytes the server does not have yet, oldest first. */
  pending(): Promise<PendingUpload[]> {
    return this.store.pendingUploads();
  }

  /**
   * Send every queued file, oldest first; resolves with the sha256 of each
   * the server now has. Each is resumed where it stopped (the parts the
   * server has are not sent again). A network failure throws `NetworkError`;
   * a file the server refuses for good (`413 blob_too_large` or
   * `quota_exceeded`, `415 blob_type_refused`) throws `ApiError`. Either way
   * the file stays queued and the next call goes on from there. Two calls do
   * not interleave (the second waits for the first).
   */
  uploadPending(options: { onProgress?: (progress: UploadProgress) => void } = {}): Promise<string[]> {
    return this.exclusive(async () => {
      const done: string[] = [];
      for (const entry of await this.store.pendingUploads()) {
        if (await this.upload(entry, options.onProgress)) done.push(entry.sha256);
      }
      return done;
    });
  }

  /**
   * The bytes a reference names: those kept here, or else downloaded (once;
   * then kept), checked against the sha256. Throws `FileNotReady` while the
   * server does not have the file (its device has not uploaded it yet),
   * `FileCorrupt` when the download is not the file, `ApiError` `404
   * not_found` when no object this user can see refers to it.
   */
  async fetch(reference: FileReference, options: { thumbnail?: boolean } = {}): Promise<Uint8Array> {
    const sha256 = reference.sha256;
    if (typeof sha256 !== "string" || !SHA256.test(sha256)) {
      throw new NotFound(`${JSON.stringify(sha256)} is not a file's sha256.`);
    }
    // A thumbnail is kept under its image's sha256, marked: it is looked up by the image's reference.
    const key = options.thumbnail ? `${THUMBNAIL_KEY}${sha256}` : sha256;
    const kept = await this.store.file(key);
    if (kept !== null) return kept;
    let info = (await this.call<FileInfo>("GET", `${BLOBS_PATH}${sha256}/`, { params: { name: reference.name || sha256 } }))
      .body;
    if (info.state !== "complete" || typeof info.url !== "string") throw new FileNotReady(sha256, String(info.state));
    if (options.thumbnail) {
      // Made by the server after the upload; none yet (or not an image): said so.
      if (!info.thumbnail) throw new FileNotReady(sha256, "no_thumbnail");
      info = info.thumbnail;
    }
    const bytes = await this.api.transfer("GET", info.url as string);
    if ((await sha256Hex(bytes)) !== info.sha256) throw new FileCorrupt(info.sha256);
    await this.store.keepFile(key, bytes);
    return bytes;
  }

  /** One file's upload; whether the server has it at the end. */
  private async upload(entry: PendingUpload, onProgress?: (progress: UploadProgress) => void): Promise<boolean> {
    const bytes = await this.store.file(entry.sha256);
    if (bytes === null) {
      // The bytes are gone (the store was cleared under us): nothing left to send.
      await this.store.uploadDone(entry.sha256);
      return false;
    }
    let uploadId = entry.uploadId;
    for (let round = 1; ; round += 1) {
      const answer = await this.begin(entry, uploadId);
      if (answer.state === "complete") {
        await this.store.uploadDone(entry.sha256);
        return true;
      }
      if (typeof answer.upload_id !== "string" || !Array.isArray(answer.parts) || typeof answer.part_size !== "number") {
        throw new ClientError(`The server answered an upload of ${entry.sha256.slice(0, 12)}… without its parts.`);
      }
      uploadId = answer.upload_id;
      await this.store.setUploadId(entry.sha256, uploadId);
      await this.sendParts(entry, bytes, answer, onProgress);
      try {
        await this.call("POST", `${UPLOADS_PATH}${encodeURIComponent(uploadId)}/complete/`);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        // The bytes did not add up to the file (`blob_mismatch`: nothing was
        // kept), or the upload expired meanwhile: a new upload, from the start.
        const again = error.code === "blob_mismatch" || error.status === 404;
        if (again) {
          uploadId = null;
          await this.store.setUploadId(entry.sha256, null);
        }
        // `upload_incomplete`: asking for the upload again gives links for the parts missing.
        if ((again || error.code === "upload_incomplete") && round < MAX_ROUNDS) continue;
        throw error;
      }
      await this.store.uploadDone(entry.sha256);
      return true;
    }
  }

  /** Resume the upload under way (a `404`: it expired; start another), or ask for one. */
  private async begin(entry: PendingUpload, uploadId: string | null): Promise<UploadAnswer> {
    if (uploadId !== null) {
      try {
        return await this.resume(uploadId);
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 404) throw error;
        await this.store.setUploadId(entry.sha256, null);
      }
    }
    const body = { sha256: entry.sha256, size: entry.size, content_type: entry.contentType };
    return (await this.call<UploadAnswer>("POST", UPLOADS_PATH, { json: body, expect: [200, 201] })).body;
  }

  /** An upload's parts, with fresh links for those not done. */
  private async resume(uploadId: string): Promise<UploadAnswer> {
    return (await this.call<UploadAnswer>("GET", `${UPLOADS_PATH}${encodeURIComponent(uploadId)}/`)).body;
  }

  /**
   * `PUT` each part not done: exactly its bytes, from `(number - 1) ×
   * part_size`, to its link. Links about to expire, or refused (`403`:
   * expired, or a clock that disagrees), are renewed once per part.
   */
  private async sendParts(
    entry: PendingUpload,
    bytes: Uint8Array,
    answer: UploadAnswer,
    onProgress?: (progress: UploadProgress) => void,
  ): Promise<void> {
    const uploadId = answer.upload_id as string;
    let current = answer;
    const parts = (): UploadPart[] => current.parts ?? [];
    let sent = parts().reduce((total, part) => total + (part.done ? part.size : 0), 0);
    const todo = parts().filter((part) => !part.done).map((part) => part.number);
    for (const number of todo) {
      let renewed = false;
      for (;;) {
        let part = parts().find((p) => p.number === number);
        if (!renewed && (linksExpired(current) || (part !== undefined && !part.done && part.url === undefined))) {
          current = await this.resume(uploadId);
          renewed = true;
          part = parts().find((p) => p.number === number);
        }
        if (part === undefined || part.done) break; // the server has it already
        if (part.url === undefined) throw new ClientError(`The server gave no link for part ${number} of an upload.`);
        const start = (number - 1) * (current.part_size ?? 0);
        try {
          await this.api.transfer("PUT", part.url, { body: bytes.slice(start, start + part.size) });
        } catch (error) {
          if (error instanceof ApiError && error.status === 403 && !renewed) {
            current = await this.resume(uploadId);
            renewed = true;
            continue;
          }
          throw error;
        }
        sent += part.size;
        onProgress?.({ sha256: entry.sha256, sent, size: entry.size });
        break;
      }
    }
  }

  /** One upload run at a time: two would send the same parts. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.queue.then(fn, fn);
    this.queue = result.catch(() => undefined);
    return result;
  }
}
