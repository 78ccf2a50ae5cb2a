/**
 * `IndexedDbStorage`: the `StorageAdapter` of a web app, on IndexedDB (via
 * the `idb` package).
 *
 * One database per name (`"syncserver"` by default), shared by every tab of
 * the browser profile: one device. One object store per kind of row:
 *
 * - `meta`: `{key, value}` keyed by `key`;
 * - `objects`: server copies keyed by `[model, id]`, indexed on `generation`
 *   (the end of an initial sync drops the rows of older generations);
 * - `outbox`: edits keyed by an auto-incremented `seq` (IndexedDB's key
 *   generator never hands out a number twice, even after deletes or a clear);
 * - `conflicts` keyed by `conflictId`, `rejections` keyed by `mutationId`;
 * - `files`: `{sha256, bytes}` keyed by `sha256` (bytes as a `Uint8Array`,
 *   see storage.ts), `uploads`: the upload queue keyed by `sha256` (both
 *   added by version 2 of the database).
 *
 * `transaction(mode, fn)` is ONE IndexedDB transaction over all seven stores:
 * everything `fn` writes commits together, or (it throws, or IndexedDB aborts)
 * nothing does. IndexedDB commits a transaction as soon as no request of its
 * own is pending, which is why `fn` must await only its tx's operations (the
 * rule of `StorageAdapter`); an adapter that breaks it gets a `StorageError`
 * saying so instead of a half-written state.
 *
 * IndexedDB runs read-write transactions over the same stores one at a time,
 * across tabs too, so transactions never interleave.
 */

import { type DBSchema, type IDBPDatabase, type IDBPTransaction, deleteDB, openDB, unwrap } from "idb";

import { ClientError } from "./errors.js";
import {
  type LocalConflict,
  type Mutation,
  type PendingUpload,
  type Rejection,
  type StorageAdapter,
  type StorageTx,
  type StoredObject,
  byUploadOrder,
} from "./storage.js";

/**
 * The schema version of the database; the upgrade function creates each
 * version's stores (1: meta, objects, outbox, conflicts, rejections; 2:
 * files, uploads).
 */
export const IDB_VERSION = 2;

interface SyncDatabase extends DBSchema {
  meta: { key: string; value: { key: string; value: string } };
  objects: { key: [string, string]; value: StoredObject; indexes: { generation: number } };
  outbox: { key: number; value: Mutation };
  conflicts: { key: string; value: LocalConflict };
  rejections: { key: string; value: Rejection };
  files: { key: string; value: { sha256: string; bytes: Uint8Array } };
  uploads: { key: string; value: PendingUpload };
}

const STORES = ["meta", "objects", "outbox", "conflicts", "rejections", "files", "uploads"] as const;
type Stores = (typeof STORES)[number][];
/** Typed as read-write; a readonly one is refused writes by `makeTx` (and by IndexedDB). */
type Tx = IDBPTransaction<SyncDatabase, Stores, "readwrite">;

/**
 * The browser's storage failed: the database could not be opened (private
 * mode, a newer version of the app holds it, the browser closed it), or a
 * transaction was aborted. Nothing of the transaction was written. `cause` is
 * the `DOMException`.
 */
export class StorageError extends ClientError {
  override readonly cause: unknown;
  constructor(message: string, cause?: unknown) {
    super(message);
    this.cause = cause;
  }
}

/**
 * The origin's storage quota is used up (`QuotaExceededError`): nothing of
 * the transaction was written; the outbox and everything before are intact.
 * Ask for persistent storage, free space, or let the user know.
 */
export class StorageFull extends StorageError {}

/** The `name` of a DOMException (from IndexedDB), or null for anything else. */
function domName(error: unknown): string | null {
  if (typeof error !== "object" || error === null) return null;
  const isDom = typeof DOMException !== "undefined" && error instanceof DOMException;
  const name = (error as { name?: unknown }).name;
  return isDom && typeof name === "string" ? name : null;
}

/**
 * An IndexedDB failure as this package's error; the app's own errors (thrown
 * by `fn`) pass through unchanged. `aborted`: why the transaction ended, if
 * it did with an error (a quota error shows there, not always on a request).
 */
function translate(error: unknown, aborted: unknown = null): unknown {
  const name = domName(error);
  const abortName = domName(aborted);
  if (name === "QuotaExceededError" || ((name === "AbortError" || name === null) && abortName === "QuotaExceededError")) {
    return new StorageFull("The browser's storage quota is used up: nothing of this transaction was written.", abortName === "QuotaExceededError" ? aborted : error);
  }
  if (name === null) return error;
  if (name === "AbortError") {
    const why = abortName !== null && abortName !== "AbortError" ? `: ${abortName}` : "";
    return new StorageError(`The IndexedDB transaction was aborted${why}; nothing of it was written.`, aborted ?? error);
  }
  if (name === "TransactionInactiveError") {
    return new StorageError(
      "The IndexedDB transaction had already committed: the function given to transaction() awaited something " +
        "other than its own operations (a fetch, a timer), and IndexedDB does not wait for those.",
      error,
    );
  }
  if (name === "VersionError") {
    return new StorageError("The database was upgraded by a newer version of the app (in another tab): reload.", error);
  }
  const message = (error as { message?: unknown }).message;
  return new StorageError(`IndexedDB failed (${name}${typeof message === "string" && message ? `: ${message}` : ""}).`, error);
}

/**
 * The bytes as their own buffer: IndexedDB clones a view's whole
 * `ArrayBuffer`, which may be far larger than the view (a `subarray`).
 */
function ownBuffer(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
}

function byCreatedAt(a: { createdAt: string }, b: { createdAt: string }): number {
  return a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0;
}

/** Every `[model, id]` key of one model: arrays sort after strings, so `[model, []]` is above every id. */
function modelRange(model: string): IDBKeyRange {
  return IDBKeyRange.bound([model], [model, []]);
}

export class IndexedDbStorage implements StorageAdapter {
  private db: Promise<IDBPDatabase<SyncDatabase>> | null = null;

  /** Opens nothing yet: the first transaction opens the database (`open()` does it at once). */
  constructor(readonly name = "syncserver") {}

  /** Open (creating or upgrading) the database now, to see a failure at start-up rather than at the first read. */
  static async open(name = "syncserver"): Promise<IndexedDbStorage> {
    const storage = new IndexedDbStorage(name);
    await storage.database();
    return storage;
  }

  /** Delete the database (every tab's connection must be closed first; it waits for them). */
  static async deleteDatabase(name = "syncserver"): Promise<void> {
    try {
      await deleteDB(name);
    } catch (error) {
      throw translate(error);
    }
  }

  /** Close the connection (after the transactions under way); a later transaction opens it again. */
  async close(): Promise<void> {
    const db = this.db;
    this.db = null;
    if (db !== null) (await db.catch(() => null))?.close();
  }

  private database(): Promise<IDBPDatabase<SyncDatabase>> {
    if (this.db === null) {
      const opening = openDB<SyncDatabase>(this.name, IDB_VERSION, {
        upgrade(db, oldVersion) {
          if (oldVersion < 1) {
            db.createObjectStore("meta", { keyPath: "key" });
            db.createObjectStore("objects", { keyPath: ["model", "id"] }).createIndex("generation", "generation");
            db.createObjectStore("outbox", { keyPath: "seq", autoIncrement: true });
            db.createObjectStore("conflicts", { keyPath: "conflictId" });
            db.createObjectStore("rejections", { keyPath: "mutationId" });
          }
          if (oldVersion < 2) {
            // Files (docs/protocol.md, "Files"): added next to version 1's
            // stores, whose rows stay as they are.
            db.createObjectStore("files", { keyPath: "sha256" });
            db.createObjectStore("uploads", { keyPath: "sha256" });
          }
          // A later version: `if (oldVersion < 3) { … }`, never changing what the earlier ones made.
        },
        // A newer version of the app (another tab) wants to upgrade: close, so
        // it is not blocked. The next transaction here opens the database
        // again; as an older version than the database's it gets a
        // StorageError saying to reload.
        blocking: () => {
          if (this.db === opening) this.db = null;
          void opening.then((db) => db.close());
        },
        // The browser closed the connection (storage cleared, a crash).
        terminated: () => {
          if (this.db === opening) this.db = null;
        },
      });
      this.db = opening;
      opening.catch(() => {
        if (this.db === opening) this.db = null;
      });
    }
    return this.db.catch((error: unknown) => {
      throw translate(error);
    });
  }

  private async begin(mode: "readonly" | "readwrite"): Promise<Tx> {
    for (let attempt = 0; ; attempt += 1) {
      const db = await this.database();
      try {
        return db.transaction([...STORES], mode) as Tx;
      } catch (error) {
        // Closed under us (`close()`, another tab upgrading): open it again, once.
        if (domName(error) === "InvalidStateError" && attempt === 0) {
          this.db = null;
          continue;
        }
        throw translate(error);
      }
    }
  }

  async transaction<T>(mode: "readonly" | "readwrite", fn: (tx: StorageTx) => Promise<T>): Promise<T> {
    const tx = await this.begin(mode);
    // Settles once IndexedDB has committed (null) or aborted (why) the
    // transaction. Not idb's `tx.done`: it rejects on the first failed
    // request's error event, before the abort sets `tx.error` (where a quota
    // error shows); it is observed only so that its rejection is handled.
    tx.done.catch(() => undefined);
    const raw = unwrap(tx) as IDBTransaction;
    const done = new Promise<unknown>((resolve) => {
      raw.addEventListener("complete", () => resolve(null), { once: true });
      raw.addEventListener(
        "abort",
        () => resolve(raw.error ?? new DOMException("The transaction was aborted.", "AbortError")),
        { once: true },
      );
    });
    let result: T;
    try {
      result = await fn(this.makeTx(tx, mode));
    } catch (error) {
      try {
        tx.abort();
      } catch {
        // Already aborted (a failed request aborts it) or committed.
      }
      throw translate(error, await done);
    }
    const failed = await done;
    if (failed !== null) throw translate(failed, failed);
    return result;
  }

  private makeTx(tx: Tx, mode: "readonly" | "readwrite"): StorageTx {
    const writable = (): void => {
      if (mode !== "readwrite") throw new Error("write in a readonly transaction");
    };
    // Taken now, while the transaction is active: used after it ended (fn
    // awaited something else), they fail with TransactionInactiveError.
    const stores = {
      meta: tx.objectStore("meta"),
      objects: tx.objectStore("objects"),
      outbox: tx.objectStore("outbox"),
      conflicts: tx.objectStore("conflicts"),
      rejections: tx.objectStore("rejections"),
      files: tx.objectStore("files"),
      uploads: tx.objectStore("uploads"),
    };
    const meta = () => stores.meta;
    const objects = () => stores.objects;
    const outbox = () => stores.outbox;
    const conflicts = () => stores.conflicts;
    const rejections = () => stores.rejections;
    const files = () => stores.files;
    const uploads = () => stores.uploads;
    return {
      getMeta: async (key) => (await meta().get(key))?.value ?? null,
      setMeta: async (key, value) => {
        writable();
        if (value === null) await meta().delete(key);
        else await meta().put({ key, value });
      },
      clearMeta: async (keep) => {
        writable();
        const store = meta();
        const keys = await store.getAllKeys();
        await Promise.all(keys.filter((key) => !keep.includes(key)).map((key) => store.delete(key)));
      },

      getObject: async (model, id) => (await objects().get([model, id])) ?? null,
      putObject: async (o) => {
        writable();
        await objects().put({ model: o.model, id: o.id, version: o.version, data: o.data, generation: o.generation });
      },
      // Sorted by model, then id: the order of the `[model, id]` keys.
      listObjects: (model) => (model === undefined ? objects().getAll() : objects().getAll(modelRange(model))),
      dropObjects: async (filter) => {
        writable();
        const { models, generationBelow, tombstones } = filter;
        const keep = (o: StoredObject): boolean =>
          (models !== undefined && !models.includes(o.model)) ||
          (generationBelow !== undefined && !(o.generation < generationBelow)) ||
          (tombstones === true && o.data !== null);
        // Walk the fewest rows: the older generations by the index, else the models named, else all.
        const ranges: Array<IDBKeyRange | null> = models !== undefined && generationBelow === undefined ? models.map(modelRange) : [null];
        for (const range of ranges) {
          let cursor =
            generationBelow !== undefined
              ? await objects().index("generation").openCursor(IDBKeyRange.upperBound(generationBelow, true))
              : await objects().openCursor(range);
          while (cursor !== null) {
            if (!keep(cursor.value)) await cursor.delete();
            cursor = await cursor.continue();
          }
        }
      },

      listOutbox: () => outbox().getAll(),
      addOutbox: async (entry) => {
        writable();
        const { seq: _ignored, ...row } = entry as Mutation;
        const seq = await outbox().add(row as Mutation);
        return { ...structuredClone(row), seq };
      },
      putOutbox: async (entry) => {
        writable();
        await outbox().put(entry);
      },
      deleteOutbox: async (seq) => {
        writable();
        await outbox().delete(seq);
      },
      clearOutbox: async () => {
        writable();
        await outbox().clear();
      },

      getConflict: async (conflictId) => (await conflicts().get(conflictId)) ?? null,
      putConflict: async (conflict) => {
        writable();
        await conflicts().put(conflict);
      },
      listConflicts: async () => (await conflicts().getAll()).sort(byCreatedAt),
      clearConflicts: async () => {
        writable();
        await conflicts().clear();
      },

      putRejection: async (rejection) => {
        writable();
        await rejections().put(rejection);
      },
      listRejections: async () => (await rejections().getAll()).sort(byCreatedAt),
      deleteRejection: async (mutationId) => {
        writable();
        await rejections().delete(mutationId);
      },
      clearRejections: async () => {
        writable();
        await rejections().clear();
      },

      getFile: async (sha256) => (await files().get(sha256))?.bytes ?? null,
      hasFile: async (sha256) => (await files().getKey(sha256)) !== undefined,
      putFile: async (sha256, bytes) => {
        writable();
        await files().put({ sha256, bytes: ownBuffer(bytes) });
      },
      clearFiles: async () => {
        writable();
        await files().clear();
      },

      getUpload: async (sha256) => (await uploads().get(sha256)) ?? null,
      putUpload: async (upload) => {
        writable();
        await uploads().put(upload);
      },
      listUploads: async () => (await uploads().getAll()).sort(byUploadOrder),
      deleteUpload: async (sha256) => {
        writable();
        await uploads().delete(sha256);
      },
      clearUploads: async () => {
        writable();
        await uploads().clear();
      },
    };
  }
}
