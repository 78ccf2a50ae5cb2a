"""The device's local store: one SQLite file holding everything a device knows.

Tables (the same shape ports to Room on Android or Core Data / GRDB on iOS):

- `objects`: the **server copy** of each object, `(model, id, version, data)`,
  exactly as the server last sent it. `data` NULL is a tombstone: the object
  is deleted, and its version is kept so that an older state arriving late
  (the replayed result of a lost push) cannot bring it back.
- `outbox`: the **pending local edits**, one mutation each, oldest first, with
  the `mutation_id` chosen when the edit was made. An entry is `sent` once it
  went out in a request; from then on it is frozen and resent unchanged until
  its result arrives, so a retry after a crash or a lost response carries the
  same ids and the server applies nothing twice. Each entry keeps the
  `X-Schema-Version` it was made under: an edit made before the app was
  upgraded is pushed in the shape it was made in.
- `conflicts` and `rejections`: what the server did not apply, kept for the
  user (a conflict can be resolved from the app; a rejection shows its errors).
- `meta`: the pull cursor, the login, the device id, the last sync, the
  server's URL (and its live pulls' URL, when they are served elsewhere), a
  targeted re-fetch under way (`refetch`), the last deprecation notice.
- `models`: discovery's description of each model, for offline validation.

What the app shows is the **local view**: the server copy with the pending
edits of the outbox laid over it. Pulls and push results only ever write
server copies; the outbox is only written by the user's edits and consumed
by push results. That separation is what keeps a local edit made while a
pull is in flight from being overwritten by it: the pulled state becomes the
new server copy underneath, the edit stays on top, and it still goes out
with the `base_version` it was made on, to be merged by the server.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Key = tuple[str, str]  # (model label, object id)
Data = dict[str, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS objects (
    model TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT,                          -- JSON; NULL: deleted (a tombstone)
    generation INTEGER NOT NULL,        -- the initial sync that last saw it
    PRIMARY KEY (model, id)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    mutation_id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    object_id TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    base_version INTEGER,               -- NULL for a create, or until rebased
    data TEXT,
    sent INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    schema TEXT                         -- X-Schema-Version when made; NULL: none sent
);
CREATE INDEX IF NOT EXISTS outbox_object ON outbox (model, object_id, seq);
CREATE TABLE IF NOT EXISTS conflicts (
    conflict_id TEXT PRIMARY KEY,
    mutation_id TEXT,
    model TEXT NOT NULL,
    object_id TEXT NOT NULL,
    op TEXT NOT NULL,
    client_data TEXT,
    server_version INTEGER,
    server_data TEXT,
    status TEXT NOT NULL,
    resolved_version INTEGER,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejections (
    mutation_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    object_id TEXT NOT NULL,
    op TEXT NOT NULL,
    data TEXT,
    errors TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (model TEXT PRIMARY KEY, description TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (    -- files attached here, to send (client/files.py)
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    upload_id TEXT,                     -- the server's upload, once asked for
    created_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class ServerCopy:
    version: int
    data: Data | None  # None: deleted


@dataclass(frozen=True)
class Mutation:
    """An outbox entry: one pending local edit."""

    seq: int
    mutation_id: str
    model: str
    object_id: str
    op: str
    base_version: int | None
    data: Data | None
    sent: bool
    schema: str | None = None  # the X-Schema-Version it was made under (None: none)

    @property
    def key(self) -> Key:
        return (self.model, self.object_id)

    def wire(self) -> dict[str, Any]:
        """The mutation as a push sends it."""
        return {
            "mutation_id": self.mutation_id,
            "model": self.model,
            "op": self.op,
            "id": self.object_id,
            "base_version": self.base_version,
            "data": self.data,
        }


@dataclass(frozen=True)
class LocalConflict:
    conflict_id: str
    mutation_id: str | None
    model: str
    object_id: str
    op: str
    client_data: Data | None  # the user's values, as pushed
    server_version: int | None
    server_data: Data | None
    status: str  # open, resolved, superseded, dismissed, gone
    resolved_version: int | None
    created_at: str


@dataclass(frozen=True)
class Rejection:
    mutation_id: str
    model: str
    object_id: str
    op: str
    data: Data | None
    errors: dict[str, list[str]]
    created_at: str


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    """A device's SQLite file. Every method is one local transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        # An app edits from the UI thread while the sync runs on another: one
        # lock serialises our transactions on the shared connection.
        self._lock = threading.RLock()
        self._depth = 0
        # WAL: readers do not block the writer. synchronous=FULL: an outbox
        # entry the user was told is saved survives a power cut.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "schema" not in columns:  # a store made before entries kept their schema
            self._db.execute("ALTER TABLE outbox ADD COLUMN schema TEXT")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._depth = 0

    # --- meta ------------------------------------------------------------

    def get(self, key: str) -> str | None:
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["value"]

    def set(self, key: str, value: str | None) -> None:
        with self.transaction() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    @property
    def cursor(self) -> str | None:
        return self.get("cursor")

    def _generation(self) -> int:
        return int(self.get("generation") or 0)

    # --- server copies ---------------------------------------------------

    def server_copy(self, model: str, object_id: str) -> ServerCopy | None:
        with self.transaction() as db:
            row = db.execute(
                "SELECT version, data FROM objects WHERE model = ? AND id = ?", (model, object_id)
            ).fetchone()
        return None if row is None else ServerCopy(row["version"], _loads(row["data"]))

    def server_copies(self, model: str | None = None) -> dict[Key, ServerCopy]:
        """Every live object as the server last sent it (tombstones left out)."""
        query = "SELECT model, id, version, data FROM objects WHERE data IS NOT NULL"
        args: tuple[str, ...] = ()
        if model is not None:
            query += " AND model = ?"
            args = (model,)
        with self.transaction() as db:
            rows = db.execute(query + " ORDER BY model, id", args).fetchall()
        return {(r["model"], r["id"]): ServerCopy(r["version"], _loads(r["data"])) for r in rows}

    def _adopt(
        self, model: str, object_id: str, version: int, data: Data | None, *, newer_only: bool
    ) -> bool:
        """Store a server state unless we already hold a newer one.

        Versions only go up, so an older state is stale news and is dropped.
        A pulled change of the *same* version is taken (`newer_only=False`): it
        is either the same state, or the same version entering or leaving our
        scope (a team joined or left), which only the pull knows about. A push
        result or a resolution of the same version is not: it is the replayed
        answer to a request made before whatever we pulled since.
        """
        held = self.server_copy(model, object_id)
        if held is not None and (
            version < held.version or (newer_only and version == held.version)
        ):
            return False
        with self.transaction() as db:
            db.execute(
                "INSERT INTO objects (model, id, version, data, generation) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, id) DO UPDATE SET "
                "version = excluded.version, data = excluded.data, "
                "generation = excluded.generation",
                (model, object_id, version, _dumps(data), self._generation()),
            )
        return True

    def _adopt_pulled(self, changes: Sequence[Mapping[str, Any]]) -> None:
        """A pulled page's changes, each as the server copy of its object."""
        for change in changes:
            self._adopt(
                change["model"],
                change["id"],
                change["version"],
                change["data"] if change["op"] == "upsert" else None,
                newer_only=False,
            )

    def adopt_result(self, model: str, object_id: str, version: int, data: Data | None) -> bool:
        """A state the server answered a push or a resolution with."""
        with self.transaction():
            return self._adopt(model, object_id, version, data, newer_only=True)

    def apply_page(
        self, changes: Sequence[Mapping[str, Any]], cursor: str, *, has_more: bool
    ) -> None:
        """Apply a pulled page and store its cursor, in one local transaction,
        so a crash leaves either both or neither (the page is then pulled again)."""
        with self.transaction():
            if self.cursor is None:
                self._initial_sync_begins()
            self._adopt_pulled(changes)
            self.set("cursor", cursor)
            if not has_more and self.get("initial_sync"):
                self._initial_sync_ends()

    def _initial_sync_begins(self) -> None:
        # The local rows stay visible while the initial sync runs (the app is
        # not blanked for the minutes a large one can take); they are marked
        # with the generation before this one and replaced as pages arrive.
        generation = self._generation() + 1
        self.set("generation", str(generation))
        self.set("initial_sync", "1")
        # Its own generation: a targeted re-fetch during it moves the current
        # one on, and what this sync brought before that must stay.
        self.set("initial_generation", str(generation))

    def _initial_sync_ends(self) -> None:
        # An initial sync sends no deletes for what was deleted before it
        # started, so whatever it did not bring (or adopt from a push made
        # meanwhile) is gone on the server: drop it (docs/protocol.md).
        with self.transaction() as db:
            began = int(self.get("initial_generation") or self._generation())
            db.execute("DELETE FROM objects WHERE generation < ?", (began,))
            self.set("initial_sync", None)
            self.set("initial_generation", None)

    # --- a targeted re-fetch (410 resync_required naming models) -----------

    def refetch(self) -> dict[str, Any] | None:
        """The re-fetch under way: `models`, the `cursor` to go on with once
        it is done, its `generation`, and the cursor of its `page`s so far
        (None: not started); None when there is none."""
        return _loads(self.get("refetch"))

    def begin_refetch(self, models: Sequence[str], cursor: str) -> dict[str, Any]:
        """Keep a `410`'s `models` and `cursor` before acting on them, so that
        an interrupted re-fetch is resumed by the next sync. Its rows get a
        generation of their own, as an initial sync's do."""
        with self.transaction():
            pending = self.refetch()
            if pending is not None:
                # Another one before the first finished (a live pull's, say):
                # both models' data, from the start, then the newer cursor.
                models = sorted({*pending["models"], *models})
                generation = pending["generation"]
            else:
                generation = self._generation() + 1
                self.set("generation", str(generation))
            state = {
                "models": sorted(models),
                "cursor": cursor,
                "generation": generation,
                "page": None,
            }
            self.set("refetch", _dumps(state))
        return state

    def restart_refetch(self) -> None:
        """The re-fetch's own cursor was refused: fetch its models from the start."""
        with self.transaction():
            state = self.refetch()
            if state is not None:
                self.set("refetch", _dumps({**state, "page": None}))

    def apply_refetch_page(
        self, changes: Sequence[Mapping[str, Any]], page_cursor: str, *, has_more: bool
    ) -> None:
        """A page of the re-fetch, in one transaction with its cursor. The
        last one drops the rows of those models it did not bring (or a push
        adopt meanwhile): they are gone on the server, as after an initial
        sync. The outbox stays. Then the main cursor becomes the `410`'s."""
        with self.transaction() as db:
            state = self.refetch()
            if state is None:
                raise RuntimeError("no re-fetch under way")
            self._adopt_pulled(changes)
            if has_more:
                self.set("refetch", _dumps({**state, "page": page_cursor}))
                return
            marks = ",".join("?" * len(state["models"]))
            db.execute(
                f"DELETE FROM objects WHERE model IN ({marks}) AND generation < ?",  # noqa: S608
                (*state["models"], state["generation"]),
            )
            self.set("cursor", state["cursor"])
            self.set("refetch", None)

    def forget_account(self) -> None:
        """Another user signs in on this device: nothing of the previous one's
        may leak into their session, nor be pushed under their name."""
        with self.transaction() as db:
            for table in ("objects", "outbox", "conflicts", "rejections", "uploads"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            db.execute("DELETE FROM meta WHERE key NOT IN ('base_url', 'live_url', 'platform')")

    def start_over(self) -> None:
        """Forget the cursor: the next pull is an initial sync (after a `410` or
        `400 bad_cursor`). The outbox, conflicts and rejections stay."""
        self.set("cursor", None)

    def prune_tombstones(self) -> None:
        """Drop tombstones once no sent entry awaits its result: they only
        guard against a late replayed result resurrecting a deleted object."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM outbox WHERE sent = 1 LIMIT 1").fetchone() is None:
                db.execute("DELETE FROM objects WHERE data IS NULL")

    # --- the outbox ------------------------------------------------------

    def pending(self) -> list[Mutation]:
        with self.transaction() as db:
            rows = db.execute("SELECT * FROM outbox ORDER BY seq").fetchall()
        return [_mutation(r) for r in rows]

    def outbox_state(self) -> tuple[int, int]:
        """(pending edits, seconds the oldest has waited): the handshake's
        `X-Outbox-Pending` and `X-Outbox-Oldest-Age`; (0, 0) when empty."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox"
            ).fetchone()
        if not row["n"]:
            return 0, 0
        made = datetime.fromisoformat(row["oldest"].replace("Z", "+00:00"))
        return int(row["n"]), max(0, int((datetime.now(UTC) - made).total_seconds()))

    def _pending_for(self, key: Key) -> list[Mutation]:
        with self.transaction() as db:
            rows = db.execute(
                "SELECT * FROM outbox WHERE model = ? AND object_id = ? ORDER BY seq", key
            ).fetchall()
        return [_mutation(r) for r in rows]

    def queue(
        self, model: str, object_id: str, op: str, data: Data | None, *, schema: str | None = None
    ) -> str | None:
        """Record a local edit; returns the mutation id that carries it, or None
        when it cancelled a create the server never saw. `schema`: the
        `X-Schema-Version` the app speaks (None: it sends none).

        At most one unsent entry per object: a new edit folds into it
        (docs/protocol.md, "The local store"). An entry already sent is frozen,
        so an edit after it gets an entry of its own, sent after that one's
        result has given it its `base_version`. So does an edit made under
        another schema (the app was upgraded in between): the two are in
        different shapes.
        """
        with self.transaction() as db:
            entries = self._pending_for((model, object_id))
            last = entries[-1] if entries else None
            if last is not None and not last.sent and last.schema == schema:
                return self._fold(last, op, data)
            if op == "create" or last is not None:
                base = None  # a create has none; behind a sent entry: rebased later
            else:
                copy = self.server_copy(model, object_id)
                base = copy.version if copy is not None else None
            mutation_id = str(uuid.uuid4())
            db.execute(
                "INSERT INTO outbox (mutation_id, model, object_id, op, base_version, data, "
                "created_at, schema) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (mutation_id, model, object_id, op, base, _dumps(data), _now(), schema),
            )
            return mutation_id

    def _fold(self, last: Mutation, op: str, data: Data | None) -> str | None:
        with self.transaction() as db:
            if op == "update" and last.op in ("create", "update"):
                # create + update → the create with the new values;
                # update + update → one update with the union of changed fields.
                merged = {**(last.data or {}), **(data or {})}
                db.execute("UPDATE outbox SET data = ? WHERE seq = ?", (_dumps(merged), last.seq))
                return last.mutation_id
            if op == "delete" and last.op == "create":
                # The server never saw the object: nothing to send at all.
                db.execute("DELETE FROM outbox WHERE seq = ?", (last.seq,))
                return None
            if op == "delete" and last.op == "update":
                # The delete, with the update's base_version.
                db.execute(
                    "UPDATE outbox SET op = 'delete', data = NULL WHERE seq = ?", (last.seq,)
                )
                return last.mutation_id
        raise ValueError(f"cannot {op} after a pending {last.op}")

    def next_batch(self, limit: int = 500) -> list[Mutation]:
        """The oldest entries, up to the first one of an object already in the
        batch: an entry queued behind another of its object waits for that
        one's result (its base_version), and everything after it waits too,
        so that mutations still reach the server in the order they were made
        (deleting a work order, then its customer, must not be reordered).
        One request says one schema: the batch also ends before the first
        entry made under another one (edits from before an app upgrade)."""
        batch: list[Mutation] = []
        seen: set[Key] = set()
        for entry in self.pending():
            if entry.key in seen or len(batch) == limit:
                break
            if batch and entry.schema != batch[0].schema:
                break
            batch.append(entry)
            seen.add(entry.key)
        return batch

    def take_batch(self, limit: int = 500) -> list[Mutation]:
        """`next_batch`, frozen (`mark_sent`) in the same transaction that reads
        it: an edit made meanwhile on another thread folds into an entry
        before the batch is read, or queues behind it after, never into an
        entry whose request is already built from older data."""
        with self.transaction():
            batch = self.next_batch(limit)
            self.mark_sent(batch)
        return [replace(entry, sent=True) for entry in batch]

    def mark_sent(self, batch: Iterable[Mutation]) -> None:
        """Freeze entries before they go out: from now on they are resent as
        they are, whatever happens to the request."""
        with self.transaction() as db:
            db.executemany(
                "UPDATE outbox SET sent = 1 WHERE mutation_id = ?",
                [(m.mutation_id,) for m in batch],
            )

    def settle(self, entry: Mutation, result: Mapping[str, Any]) -> None:
        """Apply one push result: adopt the server's state, record a conflict
        or a rejection, drop the entry and rebase the next one of its object."""
        with self.transaction() as db:
            status = result["status"]
            object_id = result.get("id") or entry.object_id
            if status in ("applied", "merged", "conflict"):
                # `data: null` means the object is deleted on the server.
                self._adopt(
                    entry.model, object_id, result["version"], result["data"], newer_only=True
                )
            if status == "conflict":
                db.execute(
                    "INSERT OR REPLACE INTO conflicts (conflict_id, mutation_id, model, "
                    "object_id, op, client_data, server_version, server_data, status, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
                    (
                        result["conflict_id"],
                        entry.mutation_id,
                        entry.model,
                        object_id,
                        entry.op,
                        _dumps(entry.data),
                        result["version"],
                        _dumps(result["data"]),
                        _now(),
                    ),
                )
            elif status == "rejected":
                db.execute(
                    "INSERT OR REPLACE INTO rejections (mutation_id, model, object_id, op, "
                    "data, errors, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.mutation_id,
                        entry.model,
                        entry.object_id,
                        entry.op,
                        _dumps(entry.data),
                        _dumps(result.get("errors") or {}),
                        _now(),
                    ),
                )
            db.execute("DELETE FROM outbox WHERE seq = ?", (entry.seq,))
            # The next edit of this object was made on top of this one: its
            # base is the version this one produced, or (rejected: nothing was
            # written) the version this one was based on.
            if status == "rejected":
                base = entry.base_version if entry.base_version is not None else 0
            else:
                base = result["version"]
            db.execute(
                "UPDATE outbox SET base_version = ? WHERE seq = (SELECT MIN(seq) FROM outbox "
                "WHERE model = ? AND object_id = ? AND seq > ?) AND op != 'create'",
                (base, entry.model, entry.object_id, entry.seq),
            )

    def adopt_push_cursor(self, sent: str | None, received: str) -> None:
        """Take a push's response cursor, unless a pull moved ours meanwhile.

        Only when we sent one: without it the server starts from the device's
        last pull, which for a device that never finished one is a fresh
        initial-sync position that our local rows know nothing about.
        """
        with self.transaction():
            if sent is not None and self.cursor == sent:
                self.set("cursor", received)

    # --- the local view --------------------------------------------------

    def local(self, model: str, object_id: str) -> Data | None:
        """An object as the user sees it: server copy + pending edits."""
        with self.transaction():
            copy = self.server_copy(model, object_id)
            data = copy.data if copy is not None else None
            for entry in self._pending_for((model, object_id)):
                data = _overlay(data, entry)
        return data

    def local_all(self, model: str | None = None) -> dict[Key, Data]:
        with self.transaction():
            view: dict[Key, Data | None] = {
                key: copy.data for key, copy in self.server_copies(model).items()
            }
            for entry in self.pending():
                if model is None or entry.model == model:
                    view[entry.key] = _overlay(view.get(entry.key), entry)
        return {key: data for key, data in sorted(view.items()) if data is not None}

    # --- conflicts and rejections -----------------------------------------

    def conflicts(self, status: str | None = "open") -> list[LocalConflict]:
        query = "SELECT * FROM conflicts"
        args: tuple[str, ...] = ()
        if status is not None:
            query, args = query + " WHERE status = ?", (status,)
        with self.transaction() as db:
            rows = db.execute(query + " ORDER BY created_at", args).fetchall()
        return [_conflict(r) for r in rows]

    def conflict(self, conflict_id: str) -> LocalConflict | None:
        with self.transaction() as db:
            row = db.execute(
                "SELECT * FROM conflicts WHERE conflict_id = ?", (conflict_id,)
            ).fetchone()
        return None if row is None else _conflict(row)

    def record_conflict(self, described: Mapping[str, Any]) -> None:
        """Store a conflict as `GET /sync/conflicts/` describes it (one raised
        on another of this user's devices, or the latest word on ours)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO conflicts (conflict_id, mutation_id, model, object_id, op, "
                "client_data, server_version, server_data, status, resolved_version, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (conflict_id) DO UPDATE SET status = excluded.status, "
                "resolved_version = excluded.resolved_version",
                (
                    described["id"],
                    described.get("mutation_id"),
                    described["model"],
                    described["object_id"],
                    described.get("client_op") or "update",
                    _dumps(described.get("client_data")),
                    described.get("server_version"),
                    _dumps(described.get("server_data")),
                    described["status"],
                    described.get("resolved_version"),
                    described.get("created_at") or _now(),
                ),
            )

    def conflict_closed(
        self, conflict_id: str, status: str, resolved_version: int | None = None
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE conflicts SET status = ?, resolved_version = ? WHERE conflict_id = ?",
                (status, resolved_version, conflict_id),
            )

    def rejections(self) -> list[Rejection]:
        with self.transaction() as db:
            rows = db.execute("SELECT * FROM rejections ORDER BY created_at").fetchall()
        return [
            Rejection(
                mutation_id=r["mutation_id"],
                model=r["model"],
                object_id=r["object_id"],
                op=r["op"],
                data=_loads(r["data"]),
                errors=_loads(r["errors"]),
                created_at=r["created_at"],
            )
            for r in rows
        ]

    def dismiss_rejection(self, mutation_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM rejections WHERE mutation_id = ?", (mutation_id,))

    # --- discovery --------------------------------------------------------

    def save_models(self, descriptions: Sequence[Mapping[str, Any]]) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM models")
            db.executemany(
                "INSERT INTO models (model, description) VALUES (?, ?)",
                [(d["model"], _dumps(d)) for d in descriptions],
            )

    def models(self) -> list[dict[str, Any]]:
        with self.transaction() as db:
            rows = db.execute("SELECT description FROM models ORDER BY model").fetchall()
        return [_loads(r["description"]) for r in rows]

    # --- files to upload (client/files.py) --------------------------------------

    def queue_upload(self, sha256: str, size: int, content_type: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO uploads (sha256, size, content_type, created_at)"
                " VALUES (?, ?, ?, ?)",
                (sha256, size, content_type, datetime.now(UTC).isoformat()),
            )

    def pending_uploads(self) -> list[sqlite3.Row]:
        with self.transaction() as db:
            return list(db.execute("SELECT * FROM uploads ORDER BY created_at, sha256"))

    def set_upload_id(self, sha256: str, upload_id: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE uploads SET upload_id = ? WHERE sha256 = ?", (upload_id, sha256))

    def upload_done(self, sha256: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM uploads WHERE sha256 = ?", (sha256,))


def _overlay(data: Data | None, entry: Mutation) -> Data | None:
    if entry.op == "create":
        return dict(entry.data or {})
    if entry.op == "update":
        # An edit of an object the server has since deleted (or that left our
        # scope) shows nothing until its push settles what happens to it.
        return None if data is None else {**data, **(entry.data or {})}
    return None


def _mutation(row: sqlite3.Row) -> Mutation:
    return Mutation(
        seq=row["seq"],
        mutation_id=row["mutation_id"],
        model=row["model"],
        object_id=row["object_id"],
        op=row["op"],
        base_version=row["base_version"],
        data=_loads(row["data"]),
        sent=bool(row["sent"]),
        schema=row["schema"],
    )


def _conflict(row: sqlite3.Row) -> LocalConflict:
    return LocalConflict(
        conflict_id=row["conflict_id"],
        mutation_id=row["mutation_id"],
        model=row["model"],
        object_id=row["object_id"],
        op=row["op"],
        client_data=_loads(row["client_data"]),
        server_version=row["server_version"],
        server_data=_loads(row["server_data"]),
        status=row["status"],
        resolved_version=row["resolved_version"],
        created_at=row["created_at"],
    )
