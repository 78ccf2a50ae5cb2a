/**
 * The storage adapter: where a device keeps what it knows.
 *
 * An adapter only stores rows; it holds no sync logic. The rules (folding
 * edits in the outbox, versions only going up, initial-sync generations,
 * freezing sent entries) live once in `LocalStore` (store.ts), on top of any
 * adapter, so a SQLite or IndexedDB adapter cannot get them wrong.
 *
 * Seven kinds of rows (the same shape as the Python reference client's
 * SQLite tables, client/store.py, and its files directory, client/files.py):
 *
 * - meta: string key/values (the cursor, the token, the device id, …);
 * - objects: the *server copy* of each object, `(model, id) → {version,
 *   data | null, generation}`; `data: null` is a tombstone;
 * - outbox: the pending local edits, oldest first (`seq` ascending);
 * - conflicts and rejections: what the server did not apply, for the user;
 * - files: the bytes of files attached here or downloaded, by their sha256;
 * - uploads: the files attached here whose bytes the server does not have
 *   yet, oldest first.
 *
 * File bytes are a `Uint8Array`, not a `Blob`: every adapter can store one
 * (IndexedDB clones it, SQLite takes it as a BLOB, a Map holds it), the
 * SHA-256 check and the slicing into upload parts need the bytes anyway,
 * and some browsers' IndexedDB (Safari, for years) failed to store `Blob`s.
 * The cost is that a file is held in memory while it is read or written: the
 * server's `max_size` (50 MB by default) bounds it.
 *
 * Everything goes through `transaction(mode, fn)`: `fn` gets a `StorageTx`
 * and every write it makes must be applied all together or not at all (a
 * pulled page and its cursor; a push batch's results and the push cursor).
 * Transactions must not interleave: an adapter runs them one at a time (or
 * with its database's own isolation). `fn` awaits only the tx's own
 * operations, never a network call or a timer, so an IndexedDB adapter's
 * transaction stays alive for the whole of it.
 */

/** A JSON object as the server sends it. */
export type Data = Record<string, unknown>;

export type Op = "create" | "update" | "delete";

/** One object as the server last sent it. */
export interface StoredObject {
  model: string;
  id: string;
  version: number;
  /** `null`: deleted on the server (a tombstone, kept so that an older state cannot bring it back). */
  data: Data | null;
  /** The initial sync (or targeted re-fetch) that last saw it. */
  generation: number;
}

/** An outbox entry: one pending local edit. */
export interface Mutation {
  /** Order of the edits: assigned by the adapter on `addOutbox`, ascending. */
  seq: number;
  /** Chosen when the edit is made, kept: a resend carries the same id. */
  mutationId: string;
  model: string;
  objectId: string;
  op: Op;
  /** `null` for a create, or until rebased on its predecessor's result. */
  baseVersion: number | null;
  data: Data | null;
  /** Went out in a request: frozen from then on, resent unchanged. */
  sent: boolean;
  /** ISO-8601 UTC. */
  createdAt: string;
  /** The `X-Schema-Version` it was made under; `null`: none was sent. */
  schema: string | null;
}

export type ConflictStatus = "open" | "resolved" | "superseded" | "dismissed" | "gone";

/** A conflict raised by one of this user's pushes, kept for the app. */
export interface LocalConflict {
  conflictId: string;
  mutationId: string | null;
  model: string;
  objectId: string;
  op: string;
  /** The user's values, as pushed (`null` for a delete). */
  clientData: Data | null;
  serverVersion: number | null;
  serverData: Data | null;
  status: ConflictStatus | string;
  resolvedVersion: number | null;
  createdAt: string;
}

/** A mutation the server refused (`rejected`): nothing was written. */
export interface Rejection {
  mutationId: string;
  model: string;
  objectId: string;
  op: string;
  data: Data | null;
  errors: Record<string, string[]>;
  reason: string | null;
  createdAt: string;
}

/**
 * A file attached on this device whose bytes are still to be sent (the
 * `uploads` queue; the bytes themselves are the `files` row of the same
 * sha256).
 */
export interface PendingUpload {
  /** 64 lower-case hex digits: the SHA-256 of the bytes, and the key. */
  sha256: string;
  /** Bytes. */
  size: number;
  contentType: string;
  /** The server's upload, once one was started (kept to resume it); `null`: ask for one. */
  uploadId: string | null;
  /** ISO-8601 UTC. */
  createdAt: string;
}

/** Which objects `dropObjects` removes: every condition given must hold. */
export interface ObjectFilter {
  /** Only these models. */
  models?: readonly string[];
  /** Only rows whose generation is lower than this. */
  generationBelow?: number;
  /** Only tombstones (`data === null`). */
  tombstones?: boolean;
}

/** The operations available inside one transaction. */
export interface StorageTx {
  getMeta(key: string): Promise<string | null>;
  /** `null` removes the key. */
  setMeta(key: string, value: string | null): Promise<void>;
  /** Removes every key except those in `keep`. */
  clearMeta(keep: readonly string[]): Promise<void>;

  getObject(model: string, id: string): Promise<StoredObject | null>;
  /** Insert or replace by `(model, id)`. */
  putObject(object: StoredObject): Promise<void>;
  /** Every row of `model` (all models when absent), tombstones included. */
  listObjects(model?: string): Promise<StoredObject[]>;
  dropObjects(filter: ObjectFilter): Promise<void>;

  /** Every entry, ascending `seq`. */
  listOutbox(): Promise<Mutation[]>;
  /** Store a new entry with a `seq` greater than any before (not only any present); returns it. */
  addOutbox(entry: Omit<Mutation, "seq">): Promise<Mutation>;
  /** Replace the entry with this `seq`. */
  putOutbox(entry: Mutation): Promise<void>;
  deleteOutbox(seq: number): Promise<void>;
  clearOutbox(): Promise<void>;

  getConflict(conflictId: string): Promise<LocalConflict | null>;
  putConflict(conflict: LocalConflict): Promise<void>;
  /** Oldest first (`createdAt`). */
  listConflicts(): Promise<LocalConflict[]>;
  clearConflicts(): Promise<void>;

  putRejection(rejection: Rejection): Promise<void>;
  /** Oldest first (`createdAt`). */
  listRejections(): Promise<Rejection[]>;
  deleteRejection(mutationId: string): Promise<void>;
  clearRejections(): Promise<void>;

  /** The bytes kept under this sha256, or `null`. */
  getFile(sha256: string): Promise<Uint8Array | null>;
  /** Whether bytes are kept under this sha256 (without reading them). */
  hasFile(sha256: string): Promise<boolean>;
  /** Insert or replace. */
  putFile(sha256: string, bytes: Uint8Array): Promise<void>;
  clearFiles(): Promise<void>;

  getUpload(sha256: string): Promise<PendingUpload | null>;
  /** Insert or replace by `sha256`. */
  putUpload(upload: PendingUpload): Promise<void>;
  /** Oldest first (`createdAt`, then `sha256`). */
  listUploads(): Promise<PendingUpload[]>;
  deleteUpload(sha256: string): Promise<void>;
  clearUploads(): Promise<void>;
}

export interface StorageAdapter {
  /**
   * Run `fn` as one transaction: its writes are all kept, or (it throws)
   * none. `readonly` lets an adapter take a cheaper lock; a `readonly`
   * transaction never writes. Transactions do not interleave.
   */
  transaction<T>(mode: "readonly" | "readwrite", fn: (tx: StorageTx) => Promise<T>): Promise<T>;
}

/** JSON values are copied in and out, so a caller can never change stored rows in place. */
function copy<T>(value: T): T {
  return value === null || value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

/** Bytes are copied too (a copy of their own buffer, however large the one they are a view of). */
function copyBytes(bytes: Uint8Array): Uint8Array {
  return bytes.slice();
}

const objectKey = (model: string, id: string): string => `${model}\u0000${id}`;

/** The order of the `uploads` queue: oldest first, then by sha256. */
export function byUploadOrder(a: PendingUpload, b: PendingUpload): number {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  return a.sha256 < b.sha256 ? -1 : a.sha256 > b.sha256 ? 1 : 0;
}

interface MemoryState {
  meta: Map<string, string>;
  objects: Map<string, StoredObject>;
  outbox: Map<number, Mutation>;
  conflicts: Map<string, LocalConflict>;
  rejections: Map<string, Rejection>;
  files: Map<string, Uint8Array>;
  uploads: Map<string, PendingUpload>;
  nextSeq: number;
}

/**
 * Everything in memory: for tests, for a web page that does not need to
 * survive a reload, and as the model of what an adapter must do. A
 * transaction that throws is rolled back (its writes are undone); one runs at
 * a time.
 */
export class MemoryStorage implements StorageAdapter {
  private state: MemoryState = {
    meta: new Map(),
    objects: new Map(),
    outbox: new Map(),
    conflicts: new Map(),
    rejections: new Map(),
    files: new Map(),
    uploads: new Map(),
    nextSeq: 1,
  };
  private queue: Promise<unknown> = Promise.resolve();

  transaction<T>(mode: "readonly" | "readwrite", fn: (tx: StorageTx) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      const undo: Array<() => void> = [];
      const tx = this.makeTx(mode, undo);
      try {
        return await fn(tx);
      } catch (error) {
        for (const step of undo.reverse()) step();
        throw error;
      }
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private makeTx(mode: "readonly" | "readwrite", undo: Array<() => void>): StorageTx {
    const s = this.state;
    const writable = (): void => {
      if (mode !== "readwrite") throw new Error("write in a readonly transaction");
    };
    // Remember a map entry's value before a write, to put it back on rollback.
    function saving<K, V>(map: Map<K, V>, key: K): void {
      const had = map.has(key);
      const before = map.get(key);
      undo.push(() => {
        if (had) map.set(key, before as V);
        else map.delete(key);
      });
    }
    function dropWhere<K, V>(map: Map<K, V>, test: (value: V, key: K) => boolean): void {
      for (const [key, value] of [...map]) {
        if (test(value, key)) {
          saving(map, key);
          map.delete(key);
        }
      }
    }
    return {
      getMeta: async (key) => s.meta.get(key) ?? null,
      setMeta: async (key, value) => {
        writable();
        saving(s.meta, key);
        if (value === null) s.meta.delete(key);
        else s.meta.set(key, value);
      },
      clearMeta: async (keep) => {
        writable();
        dropWhere(s.meta, (_v, key) => !keep.includes(key));
      },
      getObject: async (model, id) => copy(s.objects.get(objectKey(model, id)) ?? null),
      putObject: async (object) => {
        writable();
        const key = objectKey(object.model, object.id);
        saving(s.objects, key);
        s.objects.set(key, copy(object));
      },
      listObjects: async (model) =>
        [...s.objects.values()]
          .filter((o) => model === undefined || o.model === model)
          .sort((a, b) => (a.model < b.model ? -1 : a.model > b.model ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
          .map(copy),
      dropObjects: async (filter) => {
        writable();
        dropWhere(
          s.objects,
          (o) =>
            (filter.models === undefined || filter.models.includes(o.model)) &&
            (filter.generationBelow === undefined || o.generation < filter.generationBelow) &&
            (!filter.tombstones || o.data === null),
        );
      },
      listOutbox: async () => [...s.outbox.values()].sort((a, b) => a.seq - b.seq).map(copy),
      addOutbox: async (entry) => {
        writable();
        const seq = s.nextSeq;
        s.nextSeq += 1;
        undo.push(() => {
          s.nextSeq = Math.max(s.nextSeq - 1, seq);
        });
        const stored: Mutation = { ...copy(entry), seq };
        saving(s.outbox, seq);
        s.outbox.set(seq, stored);
        return copy(stored);
      },
      putOutbox: async (entry) => {
        writable();
        saving(s.outbox, entry.seq);
        s.outbox.set(entry.seq, copy(entry));
      },
      deleteOutbox: async (seq) => {
        writable();
        saving(s.outbox, seq);
        s.outbox.delete(seq);
      },
      clearOutbox: async () => {
        writable();
        dropWhere(s.outbox, () => true);
      },
      getConflict: async (id) => copy(s.conflicts.get(id) ?? null),
      putConflict: async (conflict) => {
        writable();
        saving(s.conflicts, conflict.conflictId);
        s.conflicts.set(conflict.conflictId, copy(conflict));
      },
      listConflicts: async () =>
        [...s.conflicts.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt)).map(copy),
      clearConflicts: async () => {
        writable();
        dropWhere(s.conflicts, () => true);
      },
      putRejection: async (rejection) => {
        writable();
        saving(s.rejections, rejection.mutationId);
        s.rejections.set(rejection.mutationId, copy(rejection));
      },
      listRejections: async () =>
        [...s.rejections.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt)).map(copy),
      deleteRejection: async (mutationId) => {
        writable();
        saving(s.rejections, mutationId);
        s.rejections.delete(mutationId);
      },
      clearRejections: async () => {
        writable();
        dropWhere(s.rejections, () => true);
      },
      getFile: async (sha256) => {
        const bytes = s.files.get(sha256);
        return bytes === undefined ? null : copyBytes(bytes);
      },
      hasFile: async (sha256) => s.files.has(sha256),
      putFile: async (sha256, bytes) => {
        writable();
        saving(s.files, sha256);
        s.files.set(sha256, copyBytes(bytes));
      },
      clearFiles: async () => {
        writable();
        dropWhere(s.files, () => true);
      },
      getUpload: async (sha256) => copy(s.uploads.get(sha256) ?? null),
      putUpload: async (upload) => {
        writable();
        saving(s.uploads, upload.sha256);
        s.uploads.set(upload.sha256, copy(upload));
      },
      listUploads: async () => [...s.uploads.values()].sort(byUploadOrder).map(copy),
      deleteUpload: async (sha256) => {
        writable();
        saving(s.uploads, sha256);
        s.uploads.delete(sha256);
      },
      clearUploads: async () => {
        writable();
        dropWhere(s.uploads, () => true);
      },
    };
  }
}
