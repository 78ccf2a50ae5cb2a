/**
 * The device's local store: the sync rules, on top of any `StorageAdapter`.
 *
 * What the app shows is the *local view*: the server copy with the pending
 * edits of the outbox laid over it. Pulls and push results only ever write
 * server copies; the outbox is only written by the user's edits and consumed
 * by push results. That separation is what keeps a local edit made while a
 * pull is in flight from being overwritten by it: the pulled state becomes the
 * new server copy underneath, the edit stays on top, and it still goes out
 * with the `base_version` it was made on, to be merged by the server.
 *
 * Every public method here is one storage transaction (a port of the Python
 * reference client's client/store.py).
 */

import { NotFound, ValidationError } from "./errors.js";
import type {
  Data,
  LocalConflict,
  Mutation,
  Op,
  PendingUpload,
  Rejection,
  StorageAdapter,
  StorageTx,
  StoredObject,
} from "./storage.js";

/** A change of a pulled page (docs/protocol.md, "Pull"). */
export interface PulledChange {
  model: string;
  id: string;
  op: "upsert" | "delete";
  version: number;
  data: Data | null;
}

export type PushStatus = "applied" | "merged" | "conflict" | "rejected";

/** One result of a push (docs/protocol.md, "Push", "Response"). */
export interface PushResult {
  mutation_id: string | null;
  status: PushStatus;
  id: string | null;
  version: number | null;
  data: Data | null;
  conflict_id: string | null;
  errors: Record<string, string[]> | null;
  reason?: string | null;
}

/** A targeted re-fetch under way (`410 resync_required` naming models). */
export interface RefetchState {
  models: string[];
  /** The cursor to go on with once the re-fetch is done. */
  cursor: string;
  generation: number;
  /** The re-fetch's own page cursor so far; `null`: not started. */
  page: string | null;
}

/** How a conflict is described by `GET /api/v1/sync/conflicts/`. */
export interface ConflictDescription {
  id: string;
  model: string;
  object_id: string;
  status: string;
  mutation_id?: string | null;
  client_op?: string | null;
  client_data?: Data | null;
  server_version?: number | null;
  server_data?: Data | null;
  resolved_version?: number | null;
  created_at?: string | null;
  [key: string]: unknown;
}

export interface LocalObject {
  model: string;
  id: string;
  data: Data;
}

const KEEP_ON_FORGET = ["base_url", "platform"];

export function now(): string {
  return new Date().toISOString();
}

export function newId(): string {
  return globalThis.crypto.randomUUID();
}

function overlay(data: Data | null, entry: Mutation): Data | null {
  if (entry.op === "create") return { ...(entry.data ?? {}) };
  // An edit of an object the server has since deleted (or that left our
  // scope) shows nothing until its push settles what happens to it.
  if (entry.op === "update") return data === null ? null : { ...data, ...(entry.data ?? {}) };
  return null;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class LocalStore {
  constructor(readonly adapter: StorageAdapter) {}

  private read<T>(fn: (tx: StorageTx) => Promise<T>): Promise<T> {
    return this.adapter.transaction("readonly", fn);
  }

  private write<T>(fn: (tx: StorageTx) => Promise<T>): Promise<T> {
    return this.adapter.transaction("readwrite", fn);
  }

  // --- meta -----------------------------------------------------------------

  get(key: string): Promise<string | null> {
    return this.read((tx) => tx.getMeta(key));
  }

  set(key: string, value: string | null): Promise<void> {
    return this.write((tx) => tx.setMeta(key, value));
  }

  /** Several meta keys, in one transaction. */
  setMany(values: Record<string, string | null>): Promise<void> {
    return this.write(async (tx) => {
      for (const [key, value] of Object.entries(values)) await tx.setMeta(key, value);
    });
  }

  cursor(): Promise<string | null> {
    return this.get("cursor");
  }

  // --- server copies --------------------------------------------------------

  serverCopy(model: string, id: string): Promise<StoredObject | null> {
    return this.read((tx) => tx.getObject(model, id));
  }

  /** Every live object as the server last sent it (tombstones left out). */
  async serverCopies(model?: string): Promise<StoredObject[]> {
    const rows = await this.read((tx) => tx.listObjects(model));
    return rows.filter((row) => row.data !== null);
  }

  /**
   * Store a server state unless a newer one is held. Versions only go up, so
   * an older state is stale news. A pulled change of the *same* version is
   * taken (`newerOnly` false: it may be the object entering or leaving our
   * scope); a push result or resolution of the same version is not (it is a
   * replayed answer to a request made before what we pulled since).
   */
  private async adopt(
    tx: StorageTx,
    model: string,
    id: string,
    version: number,
    data: Data | null,
    newerOnly: boolean,
  ): Promise<boolean> {
    const held = await tx.getObject(model, id);
    if (held !== null && (version < held.version || (newerOnly && version === held.version))) {
      return false;
    }
    const generation = Number((await tx.getMeta("generation")) ?? "0");
    await tx.putObject({ model, id, version, data, generation });
    return true;
  }

  private async adoptPulled(tx: StorageTx, changes: readonly PulledChange[]): Promise<void> {
    for (const change of changes) {
      await this.adopt(
        tx,
        change.model,
        change.id,
        change.version,
        change.op === "upsert" ? change.data : null,
        false,
      );
    }
  }

  /** A state the server answered a push or a resolution with. */
  adoptResult(model: string, id: string, version: number, data: Data | null): Promise<boolean> {
    return this.write((tx) => this.adopt(tx, model, id, version, data, true));
  }

  /**
   * Apply a pulled page and store its cursor in one transaction, so a crash
   * leaves both or neither (the page is then pulled again). The first page of
   * an initial sync starts a new generation; its last one drops the rows of
   * older generations (gone on the server: an initial sync sends no deletes
   * for what was deleted before it started).
   */
  applyPage(changes: readonly PulledChange[], cursor: string, hasMore: boolean): Promise<void> {
    return this.write(async (tx) => {
      if ((await tx.getMeta("cursor")) === null) {
        // The local rows stay visible while the initial sync runs; they are
        // replaced as pages arrive.
        const generation = Number((await tx.getMeta("generation")) ?? "0") + 1;
        await tx.setMeta("generation", String(generation));
        await tx.setMeta("initial_sync", "1");
        await tx.setMeta("initial_generation", String(generation));
      }
      await this.adoptPulled(tx, changes);
      await tx.setMeta("cursor", cursor);
      if (!hasMore && (await tx.getMeta("initial_sync")) !== null) {
        const began = Number(
          (await tx.getMeta("initial_generation")) ?? (await tx.getMeta("generation")) ?? "0",
        );
        await tx.dropObjects({ generationBelow: began });
        await tx.setMeta("initial_sync", null);
        await tx.setMeta("initial_generation", null);
      }
    });
  }

  /** Forget the cursor: the next pull is an initial sync. The outbox, conflicts and rejections stay. */
  startOver(): Promise<void> {
    return this.set("cursor", null);
  }

  // --- a targeted re-fetch (410 resync_required naming models) --------------

  async refetch(): Promise<RefetchState | null> {
    const kept = await this.get("refetch");
    return kept === null ? null : (JSON.parse(kept) as RefetchState);
  }

  /**
   * Keep a `410`'s `models` and `cursor` before acting on them, so that an
   * interrupted re-fetch is resumed by the next sync. Its rows get a
   * generation of their own.
   */
  beginRefetch(models: readonly string[], cursor: string): Promise<RefetchState> {
    return this.write(async (tx) => {
      const keptRaw = await tx.getMeta("refetch");
      const pending = keptRaw === null ? null : (JSON.parse(keptRaw) as RefetchState);
      let generation: number;
      let all = [...models];
      if (pending !== null) {
        // Another before the first finished: both models, from the start, then the newer cursor.
        all = [...pending.models, ...models];
        generation = pending.generation;
      } else {
        generation = Number((await tx.getMeta("generation")) ?? "0") + 1;
        await tx.setMeta("generation", String(generation));
      }
      const state: RefetchState = {
        models: [...new Set(all)].sort(),
        cursor,
        generation,
        page: null,
      };
      await tx.setMeta("refetch", JSON.stringify(state));
      return state;
    });
  }

  /** The re-fetch's own cursor was refused: fetch its models from the start. */
  restartRefetch(): Promise<void> {
    return this.write(async (tx) => {
      const kept = await tx.getMeta("refetch");
      if (kept === null) return;
      await tx.setMeta("refetch", JSON.stringify({ ...(JSON.parse(kept) as RefetchState), page: null }));
    });
  }

  /**
   * A page of the re-fetch, in one transaction with its cursor. The last one
   * drops the rows of those models it did not bring (nor a push adopt
   * meanwhile) and sets the main cursor to the `410`'s. The outbox stays.
   */
  applyRefetchPage(changes: readonly PulledChange[], pageCursor: string, hasMore: boolean): Promise<void> {
    return this.write(async (tx) => {
      const kept = await tx.getMeta("refetch");
      if (kept === null) throw new Error("no re-fetch under way");
      const state = JSON.parse(kept) as RefetchState;
      await this.adoptPulled(tx, changes);
      if (hasMore) {
        await tx.setMeta("refetch", JSON.stringify({ ...state, page: pageCursor }));
        return;
      }
      await tx.dropObjects({ models: state.models, generationBelow: state.generation });
      await tx.setMeta("cursor", state.cursor);
      await tx.setMeta("refetch", null);
    });
  }

  /**
   * Another user signs in (or this one logs out): nothing of the previous
   * one's may leak into their session, nor be sent under their name; their
   * files and uploads go too.
   */
  forgetAccount(): Promise<void> {
    return this.write(async (tx) => {
      await tx.dropObjects({});
      await tx.clearOutbox();
      await tx.clearConflicts();
      await tx.clearRejections();
      await tx.clearFiles();
      await tx.clearUploads();
      await tx.clearMeta(KEEP_ON_FORGET);
    });
  }

  /** Drop tombstones once no sent entry awaits its result. */
  pruneTombstones(): Promise<void> {
    return this.write(async (tx) => {
      const outbox = await tx.listOutbox();
      if (!outbox.some((entry) => entry.sent)) await tx.dropObjects({ tombstones: true });
    });
  }

  // --- the outbox -------------------------------------------------------------

  pending(): Promise<Mutation[]> {
    return this.read((tx) => tx.listOutbox());
  }

  /** `[pending edits, seconds the oldest has waited]`: the handshake's outbox headers. */
  async outboxState(): Promise<[number, number]> {
    const entries = await this.pending();
    const first = entries[0];
    if (first === undefined) return [0, 0];
    const oldest = Math.min(...entries.map((e) => Date.parse(e.createdAt)));
    return [entries.length, Math.max(0, Math.floor((Date.now() - oldest) / 1000))];
  }

  /**
   * Record a local edit; returns the mutation id that carries it, or `null`
   * when it cancelled a create the server never saw. At most one unsent entry
   * per object: a new edit folds into it. An entry already sent is frozen, so
   * an edit after it gets an entry of its own (its `base_version` comes from
   * that one's result). So does an edit made under another schema.
   */
  private async queue(
    tx: StorageTx,
    model: string,
    objectId: string,
    op: Op,
    data: Data | null,
    schema: string | null,
  ): Promise<string | null> {
    const entries = (await tx.listOutbox()).filter((e) => e.model === model && e.objectId === objectId);
    const last = entries[entries.length - 1];
    if (last !== undefined && !last.sent && last.schema === schema) {
      return this.fold(tx, last, op, data);
    }
    let baseVersion: number | null = null; // a create has none; behind a sent entry: rebased later
    if (op !== "create" && last === undefined) {
      baseVersion = (await tx.getObject(model, objectId))?.version ?? null;
    }
    const entry = await tx.addOutbox({
      mutationId: newId(),
      model,
      objectId,
      op,
      baseVersion,
      data,
      sent: false,
      createdAt: now(),
      schema,
    });
    return entry.mutationId;
  }

  private async fold(tx: StorageTx, last: Mutation, op: Op, data: Data | null): Promise<string | null> {
    if (op === "update" && (last.op === "create" || last.op === "update")) {
      // create + update → the create with the new values;
      // update + update → one update with the union of the changed fields.
      await tx.putOutbox({ ...last, data: { ...(last.data ?? {}), ...(data ?? {}) } });
      return last.mutationId;
    }
    if (op === "delete" && last.op === "create") {
      // The server never saw the object: nothing to send at all.
      await tx.deleteOutbox(last.seq);
      return null;
    }
    if (op === "delete" && last.op === "update") {
      // The delete, with the update's base_version.
      await tx.putOutbox({ ...last, op: "delete", data: null });
      return last.mutationId;
    }
    throw new Error(`cannot ${op} after a pending ${last.op}`);
  }

  private async localIn(tx: StorageTx, model: string, id: string): Promise<Data | null> {
    let data = (await tx.getObject(model, id))?.data ?? null;
    for (const entry of await tx.listOutbox()) {
      if (entry.model === model && entry.objectId === id) data = overlay(data, entry);
    }
    return data;
  }

  /** Queue a create; refused when the id is already known here. */
  queueCreate(model: string, id: string, data: Data, schema: string | null): Promise<string> {
    return this.write(async (tx) => {
      if ((await this.localIn(tx, model, id)) !== null || (await tx.getObject(model, id)) !== null) {
        throw new ValidationError({ id: ["An object with this id already exists."] });
      }
      return (await this.queue(tx, model, id, "create", data, schema)) as string;
    });
  }

  /**
   * Queue an update of the fields that differ from what the user sees;
   * `null` when nothing changed (nothing is queued).
   */
  queueUpdate(model: string, id: string, changes: Data, schema: string | null): Promise<string | null> {
    return this.write(async (tx) => {
      const current = await this.localIn(tx, model, id);
      if (current === null) throw new NotFound(`No ${model} ${id} here.`);
      const changed: Data = {};
      for (const [key, value] of Object.entries(changes)) {
        if (!(key in current) || !sameJson(current[key], value)) changed[key] = value;
      }
      if (Object.keys(changed).length === 0) return null;
      return this.queue(tx, model, id, "update", changed, schema);
    });
  }

  queueDelete(model: string, id: string, schema: string | null): Promise<string | null> {
    return this.write(async (tx) => {
      if ((await this.localIn(tx, model, id)) === null) throw new NotFound(`No ${model} ${id} here.`);
      return this.queue(tx, model, id, "delete", null, schema);
    });
  }

  /**
   * The next push batch: the oldest entries, up to the first one of an
   * object already in the batch (it waits for that one's result, and so does
   * everything after it: mutations reach the server in the order they were
   * made), and up to the first made under another schema.
   */
  async nextBatch(limit = 500): Promise<Mutation[]> {
    return batchOf(await this.pending(), limit);
  }

  /**
   * The next push batch, frozen in the same transaction that reads it, and
   * returned as frozen: an edit made meanwhile (in this tab or another) folds
   * into an entry before the batch is read, or queues behind it after, never
   * into an entry whose request is already built from older data.
   */
  takeBatch(limit = 500): Promise<Mutation[]> {
    return this.write(async (tx) => {
      const batch = batchOf(await tx.listOutbox(), limit);
      const frozen = batch.map((entry) => ({ ...entry, sent: true }));
      for (const entry of frozen) await tx.putOutbox(entry);
      return frozen;
    });
  }

  /** Freeze entries before they go out: from now on they are resent as they are. */
  markSent(batch: readonly Mutation[]): Promise<void> {
    return this.write(async (tx) => {
      const ids = new Set(batch.map((m) => m.mutationId));
      for (const entry of await tx.listOutbox()) {
        if (ids.has(entry.mutationId) && !entry.sent) await tx.putOutbox({ ...entry, sent: true });
      }
    });
  }

  /**
   * Settle a push batch in one transaction: each result (adopt the server's
   * state, record a conflict or a rejection, drop the entry, rebase the next
   * entry of its object), then the push's cursor, taken only if ours is still
   * the one sent (a pull may have moved it meanwhile) and we sent one.
   */
  settleBatch(
    batch: readonly Mutation[],
    results: readonly PushResult[],
    sentCursor: string | null,
    receivedCursor: string | null,
  ): Promise<void> {
    if (results.length !== batch.length) {
      return Promise.reject(new Error(`push answered ${results.length} results for ${batch.length} mutations`));
    }
    return this.write(async (tx) => {
      for (let i = 0; i < batch.length; i += 1) {
        await this.settle(tx, batch[i] as Mutation, results[i] as PushResult);
      }
      if (sentCursor !== null && receivedCursor && (await tx.getMeta("cursor")) === sentCursor) {
        await tx.setMeta("cursor", receivedCursor);
      }
    });
  }

  private async settle(tx: StorageTx, entry: Mutation, result: PushResult): Promise<void> {
    const status = result.status;
    const objectId = result.id ?? entry.objectId;
    if (status === "applied" || status === "merged" || status === "conflict") {
      // `data: null`: the object is deleted on the server.
      await this.adopt(tx, entry.model, objectId, result.version ?? 0, result.data, true);
    }
    if (status === "conflict") {
      await tx.putConflict({
        conflictId: String(result.conflict_id),
        mutationId: entry.mutationId,
        model: entry.model,
        objectId,
        op: entry.op,
        clientData: entry.data,
        serverVersion: result.version,
        serverData: result.data,
        status: "open",
        resolvedVersion: null,
        createdAt: now(),
      });
    } else if (status === "rejected") {
      await tx.putRejection({
        mutationId: entry.mutationId,
        model: entry.model,
        objectId: entry.objectId,
        op: entry.op,
        data: entry.data,
        errors: result.errors ?? {},
        reason: result.reason ?? null,
        createdAt: now(),
      });
    } else if (status !== "applied" && status !== "merged") {
      throw new Error(`unknown push status ${String(status)}`);
    }
    await tx.deleteOutbox(entry.seq);
    // The next edit of this object was made on top of this one: its base is
    // the version this one produced or (rejected: nothing was written) the one
    // this one was based on.
    const base = status === "rejected" ? (entry.baseVersion ?? 0) : (result.version ?? 0);
    const next = (await tx.listOutbox()).find(
      (e) => e.model === entry.model && e.objectId === entry.objectId && e.seq > entry.seq,
    );
    if (next !== undefined && next.op !== "create") await tx.putOutbox({ ...next, baseVersion: base });
  }

  // --- the local view ---------------------------------------------------------

  /** An object as the user sees it: server copy + pending edits. */
  local(model: string, id: string): Promise<Data | null> {
    return this.read((tx) => this.localIn(tx, model, id));
  }

  localAll(model?: string): Promise<LocalObject[]> {
    return this.read(async (tx) => {
      const view = new Map<string, { model: string; id: string; data: Data | null }>();
      for (const row of await tx.listObjects(model)) {
        view.set(`${row.model}\u0000${row.id}`, { model: row.model, id: row.id, data: row.data });
      }
      for (const entry of await tx.listOutbox()) {
        if (model !== undefined && entry.model !== model) continue;
        const key = `${entry.model}\u0000${entry.objectId}`;
        const held = view.get(key);
        view.set(key, { model: entry.model, id: entry.objectId, data: overlay(held?.data ?? null, entry) });
      }
      return [...view.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .flatMap(([, o]) => (o.data === null ? [] : [{ model: o.model, id: o.id, data: o.data }]));
    });
  }

  // --- conflicts and rejections -------------------------------------------------

  async conflicts(status: string | null = "open"): Promise<LocalConflict[]> {
    const all = await this.read((tx) => tx.listConflicts());
    return status === null ? all : all.filter((c) => c.status === status);
  }

  conflict(conflictId: string): Promise<LocalConflict | null> {
    return this.read((tx) => tx.getConflict(conflictId));
  }

  /** Store a conflict as the server describes it (one raised on another device, or the latest word on ours). */
  recordConflict(described: ConflictDescription): Promise<void> {
    return this.write(async (tx) => {
      const held = await tx.getConflict(described.id);
      if (held !== null) {
        await tx.putConflict({
          ...held,
          status: described.status,
          resolvedVersion: described.resolved_version ?? null,
        });
        return;
      }
      await tx.putConflict({
        conflictId: described.id,
        mutationId: described.mutation_id ?? null,
        model: described.model,
        objectId: described.object_id,
        op: described.client_op ?? "update",
        clientData: described.client_data ?? null,
        serverVersion: described.server_version ?? null,
        serverData: described.server_data ?? null,
        status: described.status,
        resolvedVersion: described.resolved_version ?? null,
        createdAt: described.created_at ?? now(),
      });
    });
  }

  conflictClosed(conflictId: string, status: string, resolvedVersion: number | null = null): Promise<void> {
    return this.write(async (tx) => {
      const held = await tx.getConflict(conflictId);
      if (held !== null) await tx.putConflict({ ...held, status, resolvedVersion });
    });
  }

  rejections(): Promise<Rejection[]> {
    return this.read((tx) => tx.listRejections());
  }

  dismissRejection(mutationId: string): Promise<void> {
    return this.write((tx) => tx.deleteRejection(mutationId));
  }

  // --- files (files.ts) ---------------------------------------------------------

  /**
   * Keep a file's bytes under their sha256 and, for a file attached here
   * (`upload` given), queue its upload: both in one transaction, so a file
   * is never queued without its bytes. Queuing a file already queued keeps
   * the first entry (and its upload id).
   */
  keepFile(sha256: string, bytes: Uint8Array, upload: { size: number; contentType: string } | null = null): Promise<void> {
    return this.write(async (tx) => {
      if (!(await tx.hasFile(sha256))) await tx.putFile(sha256, bytes);
      if (upload !== null && (await tx.getUpload(sha256)) === null) {
        await tx.putUpload({ sha256, size: upload.size, contentType: upload.contentType, uploadId: null, createdAt: now() });
      }
    });
  }

  file(sha256: string): Promise<Uint8Array | null> {
    return this.read((tx) => tx.getFile(sha256));
  }

  hasFile(sha256: string): Promise<boolean> {
    return this.read((tx) => tx.hasFile(sha256));
  }

  /** The files attached here and not on the server yet, oldest first. */
  pendingUploads(): Promise<PendingUpload[]> {
    return this.read((tx) => tx.listUploads());
  }

  /** Remember the server's upload of a queued file (`null`: start a new one next time). */
  setUploadId(sha256: string, uploadId: string | null): Promise<void> {
    return this.write(async (tx) => {
      const held = await tx.getUpload(sha256);
      if (held !== null && held.uploadId !== uploadId) await tx.putUpload({ ...held, uploadId });
    });
  }

  /** The server has the file: out of the queue (its bytes stay kept). */
  uploadDone(sha256: string): Promise<void> {
    return this.write((tx) => tx.deleteUpload(sha256));
  }
}

/** The oldest entries that may go out together (see `LocalStore.nextBatch`). */
function batchOf(pending: readonly Mutation[], limit: number): Mutation[] {
  const batch: Mutation[] = [];
  const seen = new Set<string>();
  for (const entry of pending) {
    const key = `${entry.model}\u0000${entry.objectId}`;
    if (seen.has(key) || batch.length === limit) break;
    if (batch[0] !== undefined && entry.schema !== batch[0].schema) break;
    batch.push(entry);
    seen.add(key);
  }
  return batch;
}
