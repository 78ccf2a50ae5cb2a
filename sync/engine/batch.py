"""One transaction of writes to synced objects, with a fixed number of queries.

A `Batch` loads (locks the objects it will touch, their base versions from
history, the references it must check), writes in memory (`write`: a new
version, its history row and its feed rows), and flushes everything with bulk
statements at the end. `apply` dispatches one parsed mutation: it checks the
envelope against the current state, asks `sync.merge` what a stale write does,
and turns the answer into writes, a conflict or a rejection.

Everything a batch may see and write is decided by its `Scope`; everything a
stale write does by `sync.merge`. Nothing here is specific to who is writing:
device pushes, conflict resolutions, the admin and the back-office API all
write through it (see `sync.engine.write`).
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter, defaultdict
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, models
from django.db.models.base import ModelState
from django.utils import timezone

from sync import merge, registry, writers
from sync.choices import ConflictStatus, OnStale, Op, Reason, Status
from sync.codecs import error_messages
from sync.engine import feed, metrics
from sync.engine.metrics import ConflictEvent
from sync.engine.mutations import Malformed, Mutation, MutationResult, Parsed, echo
from sync.engine.scope import Scope
from sync.models import Change, Conflict, MutationRecord, SyncedModel
from sync.notify.wakeups import wakeup_record
from sync.registry import SyncedType
from syncbase import bulk

Key = tuple[str, uuid.UUID]

# History types of django-simple-history.
CREATED, CHANGED, DELETED = "+", "~", "-"

# Unknown fields a rejection names one by one (the rest are counted), and how
# much of a made-up name it repeats.
UNKNOWN_NAMED = 10
NAME_ECHO_CHARS = 100

# Messages other writers tell apart (the data API answers 404 / 409 for them).
GONE = "This object has been deleted."
BLOCKED = "Cannot be deleted while these refer to it: "


def _copied(obj: SyncedModel) -> SyncedModel:
    """A copy of an instance's field values, as copy.copy makes it, without
    Python's pickling protocol (which cost a sixth of a push of 500)."""
    clone = obj.__class__.__new__(obj.__class__)
    clone.__dict__.update(obj.__dict__)
    state = clone._state = ModelState()
    state.db, state.adding = obj._state.db, obj._state.adding
    return clone


def not_in_scope(label: str) -> str:
    return f"No {label} with this id in your scope."


@dataclass
class DeletePlan:
    """What one delete does to the objects that reference it."""

    doomed: dict[Key, tuple[SyncedType, SyncedModel]]  # the object and its cascade
    cleared: list[tuple[SyncedType, SyncedModel, str, Any]] = field(default_factory=list)
    blocking: list[tuple[SyncedType, SyncedModel]] = field(default_factory=list)


class Batch:
    """Working state of one transaction of writes."""

    def __init__(
        self,
        *,
        scope: Scope,
        device_id: uuid.UUID | None = None,
        reason: str = "",
        on_stale: str = OnStale.MERGE,
    ) -> None:
        self.scope = scope
        self.device_id = device_id
        self.reason = reason
        self.on_stale = on_stale
        self.now = timezone.now()
        # What the transaction read (and, for objects, their state as it writes).
        self.objects: dict[Key, SyncedModel] = {}
        self.in_db: set[Key] = set()
        self.bases: dict[tuple[str, uuid.UUID, int], models.Model] = {}
        self.refs_in_scope: set[tuple[str, Any]] = set()
        self.open_conflicts: dict[Key, list[Conflict]] = defaultdict(list)
        # What it will write at flush.
        self.dirty: dict[Key, SyncedType] = {}
        self.history: list[tuple[SyncedType, SyncedModel, str]] = []
        # Feed rows as `feed.append` takes them (no model instance each).
        self.changes: list[dict[str, Any]] = []
        self.conflicts: list[Conflict] = []
        self.superseded: dict[uuid.UUID, dict[str, Any]] = {}
        self.records: list[dict[str, Any]] = []  # MutationRecord values
        self.feed_range: feed.Written | None = None
        # A conflict this batch settles: its device is told once it commits.
        self.resolved: Conflict | None = None
        # Whether it wrote objects no mutation named (a delete's cascade or
        # cleared references): the writer's results do not describe those.
        self.side_effects = False

    # --- loading -------------------------------------------------------------

    def load(self, items: Sequence[Parsed]) -> dict[uuid.UUID, tuple[dict[str, Any], str]]:
        """Lock and load what `items` touch; returns the stored results of
        replays, with what their mutations asked for (`Mutation.digest`)."""
        mids = {m.mutation_id for m in items if m.mutation_id is not None}
        # By mutation id alone, the user checked here: with a condition on the
        # user as well, PostgreSQL, whose statistics lag behind a user whose
        # records grow fast (an import, a device's first big push), scanned
        # all of that user's records for every batch (seconds per push of 500
        # at half a million records). The unique index leads with the id.
        user_id = self.scope.user_id
        replays = {
            mutation_id: (result, digest)
            for owner, mutation_id, result, digest in MutationRecord.objects.filter(
                mutation_id__any=mids
            ).values_list("user_id", "mutation_id", "result", "digest")
            if owner == user_id
        }
        valid = [m for m in items if isinstance(m, Mutation)]
        ids_by_type: dict[str, tuple[SyncedType, set[uuid.UUID]]] = {}
        for m in valid:
            ids_by_type.setdefault(m.label, (m.type, set()))[1].add(m.id)
        for label in sorted(ids_by_type):
            self.lock(*ids_by_type[label])
        self._load_bases(
            (m.type, m.id, m.base_version)
            for m in valid
            if m.op != Op.CREATE and m.base_version is not None
        )
        # What the batch names itself is locked above: found, or not stored.
        self.load_references(((m.type, m.data) for m in valid), known={m.key for m in valid})
        # Conflicts are raised on stored objects: an id not in the database
        # (a create) has none, and a batch of creates needs no query for them.
        self._load_open_conflicts([m.key for m in valid if m.key in self.in_db])
        self.load_dependants([(m.type, m.id) for m in valid if m.op == Op.DELETE])
        return replays

    def lock(self, stype: SyncedType, ids: Iterable[uuid.UUID]) -> None:
        # Rows are locked in one global order (label, pk), so concurrent batches
        # wait for each other instead of deadlocking. Ordered look-ups keep
        # `__in`: asked with one array (`__any`), the generic plan PostgreSQL
        # cached for a prepared statement while the table was small read the
        # whole table in key order on every push once it had grown (60-120 ms
        # a push of 500 in bench/run.py, against 5 ms).
        for obj in (
            stype.model._default_manager.select_for_update()
            .filter(pk__in=sorted(ids))
            .order_by("pk")
        ):
            self._keep(stype, obj)

    def _keep(self, stype: SyncedType, obj: SyncedModel) -> None:
        key = (stype.label, obj.pk)
        self.objects[key] = obj
        self.in_db.add(key)
        self.bases[(stype.label, obj.pk, obj.version)] = obj

    def load_dependants(self, roots: Sequence[tuple[SyncedType, uuid.UUID]]) -> None:
        """Lock the live objects that reference what may be deleted, and, for
        CASCADE, what references those: a delete follows each reference's
        on_delete. One query per reference and level, however many objects.

        They are locked after the objects the batch names, against the global
        (label, pk) order: a concurrent batch may then deadlock with this one,
        and PostgreSQL's victim is replayed one mutation at a time."""
        frontier: dict[str, tuple[SyncedType, set[Any]]] = {}
        for stype, object_id in roots:
            frontier.setdefault(stype.label, (stype, set()))[1].add(object_id)
        while frontier:
            found: dict[str, tuple[SyncedType, set[Any]]] = {}
            for label, (_, ids) in sorted(frontier.items()):
                for ref in registry.referrers(label):
                    rows = (
                        ref.type.model._default_manager.select_for_update()
                        .filter(**{f"{ref.attname}__in": ids}, deleted_at__isnull=True)
                        .order_by("pk")
                    )
                    for obj in rows:
                        if (ref.type.label, obj.pk) in self.objects:
                            continue
                        self._keep(ref.type, obj)
                        if ref.on_delete is models.CASCADE:
                            found.setdefault(ref.type.label, (ref.type, set()))[1].add(obj.pk)
            frontier = found

    def _load_bases(self, wanted: Iterable[tuple[SyncedType, uuid.UUID, int]]) -> None:
        """History rows at the base versions of stale writes: the merge's common ancestor."""
        by_type: dict[str, tuple[SyncedType, set[uuid.UUID], set[int]]] = {}
        for stype, object_id, version in wanted:
            current = self.objects.get((stype.label, object_id))
            if current is not None and version < current.version:
                entry = by_type.setdefault(stype.label, (stype, set(), set()))
                entry[1].add(object_id)
                entry[2].add(version)
        for label, (stype, ids, versions) in by_type.items():
            history = stype.model.history.model
            for row in history.objects.filter(id__in=ids, version__in=versions).order_by(
                "history_id"
            ):
                self.bases[(label, row.id, row.version)] = row

    def load_references(
        self,
        payloads: Iterable[tuple[SyncedType, Mapping[str, Any]]],
        *,
        known: Container[Key] = (),
    ) -> None:
        """Which referenced objects exist and are in scope, for every payload at
        once. `known`: keys already locked and loaded (`self.objects`) or known
        not to be stored, such as objects the batch itself creates; not asked again."""
        wanted: dict[type[models.Model], set[Any]] = defaultdict(set)
        for stype, data in payloads:
            if not data:
                continue
            for name, codec in stype.references.items():
                value = data.get(name)
                if value is None or not self._writable(stype, name):
                    continue
                try:
                    pk = codec.decode(value)
                except ValidationError:
                    continue  # reported when the payload is decoded
                if (codec.ref_label, pk) not in known:
                    wanted[codec.ref_model].add(pk)  # type: ignore[index]
        for model, ids in wanted.items():
            target = registry.for_model(model)
            label = model._meta.label_lower
            if target is None:
                for pk in model._default_manager.filter(pk__any=ids).values_list("pk", flat=True):
                    self.refs_in_scope.add((label, pk))
                continue
            fields = ["pk", *[a for _, a in target.scope_attnames]]
            for row in model._default_manager.filter(pk__any=ids, deleted_at__isnull=True).values(
                *fields
            ):
                if self.scope.sees(target, row):
                    self.refs_in_scope.add((label, row["pk"]))

    def _load_open_conflicts(self, keys: Sequence[Key]) -> None:
        """The author's open conflicts on these objects, which a newer write may make moot."""
        if not keys:
            return
        for conflict in Conflict.objects.filter(
            user_id=self.scope.user_id,
            status=ConflictStatus.OPEN,
            object_id__in={object_id for _, object_id in keys},
        ).order_by("created_at"):
            self.open_conflicts[(conflict.model, conflict.object_id)].append(conflict)

    # --- reading -------------------------------------------------------------

    def current(self, key: Key) -> SyncedModel | None:
        return self.objects.get(key)

    def base(self, stype: SyncedType, object_id: uuid.UUID, version: int) -> dict[str, Any] | None:
        row = self.bases.get((stype.label, object_id, version))
        return stype.encode(row.__dict__) if row is not None else None

    def _writable(self, stype: SyncedType, name: str) -> bool:
        codec = stype.codecs[name]
        return not codec.read_only or (self.scope.sets_owner and name == stype.owner_field)

    def decode(
        self, stype: SyncedType, data: Mapping[str, Any], *, full: bool
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """Wire values → Python values, with per-field errors; `full` for a create."""
        values: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        unknown = 0
        for name, raw in data.items():
            codec = stype.codecs.get(name)
            if codec is None:
                # Named up to a few: a result is answered and stored for
                # replays, and must not grow with what a client makes up.
                unknown += 1
                if unknown <= UNKNOWN_NAMED:
                    errors[echo(name[:NAME_ECHO_CHARS])] = ["Unknown field."]
                continue
            if not self._writable(stype, name):
                errors[name] = ["This field is read-only."]
                continue
            try:
                value = codec.decode(raw)
            except ValidationError as exc:
                errors[name] = error_messages(exc)
                continue
            if codec.type == "reference" and value is not None:
                if not self._reference_in_scope(codec.ref_label or "", value):
                    errors[name] = [not_in_scope(codec.ref_label or "")]
                    continue
            values[name] = value
        if unknown > UNKNOWN_NAMED:
            errors["data"] = [
                f"{unknown} unknown fields in all; see GET /api/v1/sync/models/ for "
                f"{stype.label}'s fields."
            ]
        if full:
            for name, codec in stype.writable.items():
                if codec.required and name not in data and name not in errors:
                    errors[name] = ["This field is required."]
        return values, errors

    def _reference_in_scope(self, label: str, pk: Any) -> bool:
        target = registry.get(label)
        if target is not None and (label, pk) in self.objects:
            # An object this batch loaded, created or changed counts as it is now.
            obj = self.objects[(label, pk)]
            return not obj.is_deleted and self.scope.sees(target, obj.__dict__)
        return (label, pk) in self.refs_in_scope

    # --- writing -------------------------------------------------------------

    def write(
        self, stype: SyncedType, before: SyncedModel | None, after: SyncedModel, history_type: str
    ) -> SyncedModel:
        """Buffer a new version of an object: its state, history row and feed rows."""
        after.version = (before.version if before is not None else 0) + 1
        after.updated_at = self.now
        after.last_device_id = self.device_id
        key = (stype.label, after.pk)
        self.objects[key] = after
        self.dirty[key] = stype
        snapshot = _copied(after)
        self.history.append((stype, snapshot, history_type))
        # A later write of this batch may name this version as its base.
        self.bases[(stype.label, after.pk, after.version)] = snapshot
        old = (
            stype.channels_of(before.__dict__)
            if before is not None and not before.is_deleted
            else set()
        )
        if after.is_deleted:
            # Every channel it was or would be in learns of the delete.
            gone, live = old | stype.channels_of(after.__dict__), set()
        else:
            live = stype.channels_of(after.__dict__)
            gone = old - live
        for channel, op in [
            *((c, Change.Op.UPSERT) for c in sorted(live)),
            *((c, Change.Op.DELETE) for c in sorted(gone)),
        ]:
            self.changes.append(
                {
                    "channel": channel,
                    "model": stype.label,
                    "object_id": after.pk,
                    "version": after.version,
                    "op": op,
                    "created_at": self.now,
                }
            )
        return after

    def with_values(
        self, stype: SyncedType, current: SyncedModel, values: Mapping[str, Any], *, restore: bool
    ) -> SyncedModel:
        """A copy of `current` with `values` (Python values) set, restored if asked."""
        after = _copied(current)
        for name, value in values.items():
            setattr(after, stype.codecs[name].attname, value)
        if restore:
            after.deleted_at = None
        return after

    def deleted(self, current: SyncedModel) -> SyncedModel:
        after = _copied(current)
        after.deleted_at = self.now
        return after

    def plan_delete(self, stype: SyncedType, current: SyncedModel) -> DeletePlan:
        """What deleting an object does, following the on_delete of every
        reference to it: CASCADE deletes the dependants too, SET_NULL /
        SET_DEFAULT clear the reference, PROTECT / RESTRICT refuse. The
        dependants must have been loaded (`load_dependants`)."""
        plan = DeletePlan(doomed={(stype.label, current.pk): (stype, current)})
        blocking: list[tuple[SyncedType, SyncedModel]] = []
        queue = [(stype, current)]
        while queue:
            target_type, target = queue.pop()
            for ref in registry.referrers(target_type.label):
                for obj in self._referring(ref, target.pk):
                    key = (ref.type.label, obj.pk)
                    if key in plan.doomed:
                        continue
                    if ref.on_delete is models.CASCADE:
                        plan.doomed[key] = (ref.type, obj)
                        queue.append((ref.type, obj))
                    elif ref.on_delete in (models.PROTECT, models.RESTRICT):
                        blocking.append((ref.type, obj))
                    elif ref.on_delete is models.SET_NULL:
                        plan.cleared.append((ref.type, obj, ref.attname, None))
                    elif ref.on_delete is models.SET_DEFAULT:
                        plan.cleared.append((ref.type, obj, ref.attname, ref.field.get_default()))
                    # DO_NOTHING: the model asked for nothing.
        # RESTRICT (and PROTECT) give way when the referrer goes in the same cascade.
        plan.blocking = [(t, o) for t, o in blocking if (t.label, o.pk) not in plan.doomed]
        plan.cleared = [c for c in plan.cleared if (c[0].label, c[1].pk) not in plan.doomed]
        return plan

    def delete(self, stype: SyncedType, current: SyncedModel) -> dict[str, list[str]] | None:
        """Soft-delete an object as `plan_delete` says; per-field errors if refused."""
        plan = self.plan_delete(stype, current)
        if plan.blocking:
            return {"id": [_blocked_message(self.scope, plan.blocking)]}
        for ref_type, obj, attname, value in plan.cleared:
            after = _copied(obj)
            setattr(after, attname, value)
            self.write(ref_type, obj, after, CHANGED)
        for doomed_type, before in plan.doomed.values():
            if not before.is_deleted:
                self.write(doomed_type, before, self.deleted(before), DELETED)
        self.side_effects |= bool(plan.cleared) or len(plan.doomed) > 1
        return None

    def _referring(self, ref: registry.Referrer, target_pk: Any) -> list[SyncedModel]:
        """Live objects of the batch whose reference `ref` points at `target_pk`,
        as they are now in the batch (created, changed or loaded)."""
        label = ref.type.label
        return [
            obj
            for (obj_label, _), obj in self.objects.items()
            if obj_label == label and not obj.is_deleted and getattr(obj, ref.attname) == target_pk
        ]

    def raise_conflict(self, conflict: Conflict) -> Conflict:
        conflict.created_at = self.now
        # A newer conflict of the same author over (at least) the same fields
        # replaces an older one: it carries their latest intent.
        for older in self.open_conflicts[(conflict.model, conflict.object_id)]:
            if older.client_op == conflict.client_op and set(older.fields) <= set(conflict.fields):
                self._supersede(older, f"conflict {conflict.pk}")
        self.conflicts.append(conflict)
        self.open_conflicts[(conflict.model, conflict.object_id)].append(conflict)
        return conflict

    def supersede_settled(self, key: Key, fields: Iterable[str] | None, by: str) -> None:
        """The author wrote `fields` of an object (None: deleted it): their open
        conflicts over those fields are moot."""
        written = None if fields is None else set(fields)
        for conflict in self.open_conflicts.get(key, ()):
            if written is None or (conflict.fields and set(conflict.fields) <= written):
                self._supersede(conflict, by)

    def _supersede(self, conflict: Conflict, by: str) -> None:
        if conflict.status != ConflictStatus.OPEN:
            return
        resolution = {"superseded_by": by}
        conflict.status = ConflictStatus.SUPERSEDED
        conflict.resolution = resolution
        conflict.resolved_at = self.now
        if conflict not in self.conflicts:  # one of the loaded rows: updated at flush
            self.superseded[conflict.pk] = resolution

    def record(self, item: Parsed, result: MutationResult, digest: str) -> None:
        """Keep the result of a mutation, so that a retry replays it; `digest`:
        what it asked for, before it was applied (Mutation.digest)."""
        if item.mutation_id is None:
            return
        self.records.append(
            {
                "user_id": self.scope.user_id,
                "mutation_id": item.mutation_id,
                "device_id": self.device_id,
                "model": item.label,
                "object_id": item.id,
                "status": result.status,
                "result": result.as_dict(),
                "digest": digest,
                "created_at": self.now,
            }
        )

    # --- flushing ------------------------------------------------------------

    def flush(self) -> None:
        creates: dict[SyncedType, list[SyncedModel]] = defaultdict(list)
        updates: dict[SyncedType, list[SyncedModel]] = defaultdict(list)
        for key in sorted(self.dirty, key=lambda k: (k[0], k[1])):
            (updates if key in self.in_db else creates)[self.dirty[key]].append(self.objects[key])
        # The batch versions, records and feeds these rows itself: the
        # database's capture of other writers (sync.engine.capture) stands aside.
        with writers.service_writes():
            for stype, objs in creates.items():
                bulk.insert(stype.model, objs)
            for stype, objs in updates.items():
                # Rows known to exist (locked above) are rewritten with one
                # INSERT ... ON CONFLICT DO UPDATE: Django's bulk_update builds a
                # CASE expression per field and object and costs seconds per 500.
                fields = [f.name for f in stype.model._meta.concrete_fields if not f.primary_key]
                stype.model._default_manager.bulk_create(
                    objs, update_conflicts=True, unique_fields=["id"], update_fields=fields
                )
        self._flush_history()
        if self.conflicts:
            Conflict.objects.bulk_create(self.conflicts)
        superseded = sum(c.status == ConflictStatus.SUPERSEDED for c in self.conflicts)
        # One statement for all of them (a batch may supersede hundreds), and
        # only where still open: a resolver may have settled one meanwhile.
        superseded += bulk.update_each(
            Conflict,
            {
                conflict_id: {
                    "status": ConflictStatus.SUPERSEDED,
                    "resolution": resolution,
                    "resolved_at": self.now,
                }
                for conflict_id, resolution in sorted(self.superseded.items())
            },
            only_if={"status": ConflictStatus.OPEN},
        )
        metrics.conflicts_counted(ConflictEvent.OPENED, len(self.conflicts))
        metrics.conflicts_counted(ConflictEvent.SUPERSEDED, superseded)
        if self.records:
            # Sorted so that two batches inserting overlapping ids wait on each
            # other in the same order instead of deadlocking.
            self.records.sort(key=lambda r: r["mutation_id"])
            bulk.insert_values(MutationRecord, self.records)
        self.feed_range = feed.append(self.changes)
        if self.feed_range is not None:
            # In this transaction: the devices to wake are recorded with the
            # change itself, and sent after commit (sync.notify.wakeups).
            wakeup_record(
                channels={c["channel"] for c in self.changes},
                origin_device_id=self.device_id,
                seq=self.feed_range.last,
                conflict_id=self.resolved.pk if self.resolved is not None else None,
                conflict_device_id=self.resolved.device_id if self.resolved is not None else None,
            )

    def _flush_history(self) -> None:
        # Built by hand rather than with bulk_history_create so that soft deletes
        # are recorded as deletions ("-") in the audit trail.
        fixed = {
            "history_date": self.now,
            "history_user_id": self.scope.user_id,
            "history_change_reason": self.reason[:100],
        }
        # An object written once has, once flushed, the state its history row
        # records: PostgreSQL copies those rows itself (most of a batch). The
        # snapshots of an object written more than once go from memory.
        writes = Counter((stype.label, snapshot.pk) for stype, snapshot, _ in self.history)
        copied: dict[SyncedType, tuple[list[Any], list[str]]] = {}
        rows: dict[type[models.Model], list[dict[str, Any]]] = defaultdict(list)
        # Looked up once per model: `Model.history` builds a new manager class
        # on every access (a quarter of a push's time when done per row).
        models_of: dict[SyncedType, tuple[type[models.Model], list[str]]] = {}
        by_copy = connection.vendor == "postgresql"
        for stype, snapshot, history_type in self.history:
            if by_copy and writes[(stype.label, snapshot.pk)] == 1:
                ids, types = copied.setdefault(stype, ([], []))
                ids.append(snapshot.pk)
                types.append(history_type)
                continue
            if stype not in models_of:
                history = stype.model.history.model
                models_of[stype] = (history, [f.attname for f in history.tracked_fields])
            history, attnames = models_of[stype]
            row = {name: getattr(snapshot, name) for name in attnames}
            row.update(fixed, history_type=history_type)
            rows[history].append(row)
        for history, values in rows.items():
            bulk.insert_values(history, values)
        for stype, (ids, types) in copied.items():
            bulk.insert_selected(
                stype.model.history.model,
                stype.model,
                ids,
                fixed=fixed,
                each={"history_type": types},
            )


# --- dispatching one mutation ---------------------------------------------------------


def apply(batch: Batch, m: Mutation) -> MutationResult:
    """Apply one well-formed mutation to the batch; the result says what happened."""
    stype = m.type
    current = batch.current(m.key)
    if m.op == Op.CREATE:
        return _create(batch, m, current)
    if current is None or not batch.scope.sees(stype, current.__dict__):
        return m.rejected({"id": [not_in_scope(stype.label)]}, Reason.NOT_FOUND)
    if m.at_current:
        m.base_version = current.version
    if m.base_version is None:
        return m.rejected({"base_version": ["Required for update and delete."]})
    if m.base_version > current.version:
        return m.rejected(
            {"base_version": [f"Ahead of the server, which is at version {current.version}."]}
        )
    stale = m.base_version < current.version
    if stale and batch.on_stale == OnStale.REFUSE:
        return _result(m, stype, current, Status.STALE)
    if m.op == Op.UPDATE:
        return _update(batch, m, current, stale)
    return _delete(batch, m, current, stale)


def _create(batch: Batch, m: Mutation, current: SyncedModel | None) -> MutationResult:
    stype = m.type
    if current is not None:
        return m.rejected({"id": ["An object with this id already exists."]}, Reason.EXISTS)
    if m.base_version not in (None, 0):
        return m.rejected({"base_version": ["Must be null for a create."]})
    values, errors = batch.decode(stype, m.data, full=True)
    if errors:
        return m.rejected(errors)
    attrs = {"id": m.id, "created_at": batch.now}
    if stype.owner_field:
        # The writer owns what it creates, unless it may name the owner (values).
        attrs[stype.codecs[stype.owner_field].attname] = batch.scope.user_id
    attrs.update((stype.codecs[name].attname, value) for name, value in values.items())
    obj = stype.new(**attrs)
    misplaced = batch.scope.placement_errors(stype, None, obj.__dict__)
    if misplaced:
        return m.rejected(misplaced)
    batch.write(stype, None, obj, CREATED)
    return _result(m, stype, obj, Status.APPLIED)


def _update(batch: Batch, m: Mutation, current: SyncedModel, stale: bool) -> MutationResult:
    stype = m.type
    values, errors = batch.decode(stype, m.data, full=False)
    if errors:
        return m.rejected(errors)
    if not stale:
        if current.is_deleted:
            return m.rejected({"id": [GONE]}, Reason.GONE)
        return _write_values(batch, m, current, values, Status.APPLIED)
    client = {name: stype.codecs[name].encode(v) for name, v in values.items()}
    base = batch.base(stype, m.id, m.base_version or 0)
    if current.is_deleted:
        clash = merge.clash_of_update_with_delete(base, client)
    else:
        clash = merge.clash_of_updates(base, stype.encode(current.__dict__), client)
    return _settle(batch, m, current, clash, values)


def _delete(batch: Batch, m: Mutation, current: SyncedModel, stale: bool) -> MutationResult:
    stype = m.type
    if current.is_deleted:
        return _result(m, stype, current, Status.APPLIED)  # deleting twice changes nothing
    if not stale:
        return _write_delete(batch, m, current, Status.APPLIED)
    base = batch.base(stype, m.id, m.base_version or 0)
    clash = merge.clash_of_delete_with_update(base, stype.encode(current.__dict__))
    return _settle(batch, m, current, clash, {})


def _settle(
    batch: Batch,
    m: Mutation,
    current: SyncedModel,
    clash: merge.Clash,
    client_values: Mapping[str, Any],
) -> MutationResult:
    """Carry out what the model's policy decides for a stale write."""
    stype = m.type
    decision = merge.decide(stype.policy, clash, stype.resolver)
    if decision.action == merge.Action.WRITE:
        values = _decision_values(stype, decision, client_values)
        if values is not None:
            return _write_values(batch, m, current, values, Status.MERGED)
        decision = merge.person(clash)  # the resolver's answer is not valid data
    if decision.action == merge.Action.DELETE:
        return _write_delete(batch, m, current, Status.MERGED)
    if decision.action == merge.Action.KEEP:
        return _result(m, stype, current, Status.MERGED)
    server_data, client_data = clash.server, clash.client
    if decision.values:
        # The client's changes nobody else made go in now; only the fields at
        # stake wait for a person (and a resolution writes only those).
        values = _decision_values(stype, decision, client_values) or {}
        after = batch.with_values(stype, current, values, restore=False)
        if stype.encode(after.__dict__) != stype.encode(current.__dict__):
            misplaced = batch.scope.placement_errors(stype, current.__dict__, after.__dict__)
            if misplaced:
                return m.rejected(misplaced)
            current = batch.write(stype, current, after, CHANGED)
            batch.supersede_settled(m.key, values, f"mutation {m.mutation_id}")
            server_data = stype.encode(current.__dict__)
        client_data = {f: (clash.client or {})[f] for f in decision.fields}
    conflict = batch.raise_conflict(
        Conflict(
            model=stype.label,
            object_id=m.id,
            kind=clash.kind,
            policy=stype.policy,
            fields=list(decision.fields),
            base_version=m.base_version,
            server_version=current.version,
            base_data=clash.base,
            server_data=server_data,
            client_data=client_data,
            client_op=m.op,
            user_id=batch.scope.user_id,
            device_id=batch.device_id,
            mutation_id=m.mutation_id,
        )
    )
    result = _result(m, stype, current, Status.CONFLICT)
    result.conflict_id = str(conflict.pk)
    return result


def _decision_values(
    stype: SyncedType, decision: merge.Decision, client_values: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The decision's values as Python values. The client's were decoded with the
    mutation; a custom resolver's are checked here like any incoming data, and
    None means they are not valid (then a person decides)."""
    values: dict[str, Any] = {}
    for name, raw in decision.values.items():
        if name not in decision.from_resolver:
            values[name] = client_values[name]
            continue
        codec = stype.writable.get(name)
        if codec is None:
            return None
        try:
            values[name] = codec.decode(raw)
        except ValidationError:
            return None
    return values


def _write_values(
    batch: Batch, m: Mutation, current: SyncedModel, values: Mapping[str, Any], status: str
) -> MutationResult:
    stype = m.type
    restore = current.is_deleted
    after = batch.with_values(stype, current, values, restore=restore)
    if not restore and stype.encode(after.__dict__) == stype.encode(current.__dict__):
        # Nothing changed: no new version, though the author has had their say.
        batch.supersede_settled(m.key, m.data, f"mutation {m.mutation_id}")
        return _result(m, stype, current, status)
    errors = batch.scope.placement_errors(stype, current.__dict__, after.__dict__)
    if errors:
        return m.rejected(errors)
    batch.write(stype, current, after, CHANGED)
    batch.supersede_settled(m.key, m.data, f"mutation {m.mutation_id}")
    return _result(m, stype, after, status)


def _write_delete(batch: Batch, m: Mutation, current: SyncedModel, status: str) -> MutationResult:
    blocked = batch.delete(m.type, current)
    if blocked:
        return m.rejected(blocked, Reason.PROTECTED)
    batch.supersede_settled(m.key, None, f"mutation {m.mutation_id}")
    after = batch.current(m.key)
    assert after is not None  # noqa: S101 - it was just written
    return _result(m, m.type, after, status)


def _result(m: Mutation, stype: SyncedType, obj: SyncedModel, status: str) -> MutationResult:
    data = None if obj.is_deleted else stype.encode(obj.__dict__)
    return MutationResult(str(m.mutation_id), status, id=str(m.id), version=obj.version, data=data)


def run(batch: Batch, items: Sequence[Parsed]) -> list[MutationResult]:
    """Load, apply in order (replays answered from their stored result), flush."""
    replays = batch.load(items)
    results: list[MutationResult] = []
    first: dict[uuid.UUID, tuple[MutationResult, str]] = {}
    for m in items:
        digest = m.digest() if isinstance(m, Mutation) else ""
        earlier = None
        if m.mutation_id is not None:
            if m.mutation_id in replays:
                stored, asked = replays[m.mutation_id]
                earlier = (MutationResult(**stored), asked)
            elif m.mutation_id in first:
                result, asked = first[m.mutation_id]
                earlier = (copy.copy(result), asked)
        if earlier is not None:
            result, asked = earlier
            # The same id for another change: refused, and not recorded (the
            # first change keeps its result for its own retries).
            reused = isinstance(m, Mutation) and asked and asked != digest
            results.append(m.reused() if reused else result)  # type: ignore[union-attr]
            continue
        result = m.result if isinstance(m, Malformed) else apply(batch, m)
        if result.status != Status.STALE:  # a refused write may be tried again
            batch.record(m, result, digest)
        if m.mutation_id is not None:
            first[m.mutation_id] = (result, digest)
        results.append(result)
    batch.flush()
    return results


def _blocked_message(scope: Scope, blocking: list[tuple[SyncedType, SyncedModel]]) -> str:
    """Which objects stop a delete; only those the writer may see are named."""
    by_label: dict[str, tuple[SyncedType, list[SyncedModel]]] = {}
    for stype, obj in blocking:
        by_label.setdefault(stype.label, (stype, []))[1].append(obj)
    parts = []
    for label, (stype, objs) in sorted(by_label.items()):
        seen = sorted(str(o.pk) for o in objs if scope.sees(stype, o.__dict__))
        named = f" ({', '.join(seen[:10])}{', …' if len(seen) > 10 else ''})" if seen else ""
        parts.append(f"{len(objs)} {label}{named}")
    return BLOCKED + "; ".join(parts) + "."
