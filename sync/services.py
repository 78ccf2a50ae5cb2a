"""The only code that writes synced data.

Device pushes, the admin, management commands and the demo seeder all call
`mutations_apply`, so versions, history, the change feed and (later) pushes can
never disagree.

A batch is applied in one transaction with a fixed number of queries, whatever
its size: objects are locked and loaded per model, mutations are validated and
merged in memory in order, and the results are written with bulk statements.
If the bulk write hits a database error (a unique clash with a concurrent push,
a deadlock victim), the batch is replayed one mutation per transaction, so one
bad mutation never rolls back the others.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, models, transaction
from django.utils import timezone

from . import feed, registry
from .codecs import error_messages
from .cursor import BadCursor, Cursor, decode
from .errors import SyncError
from .models import Change, ChannelGrant, Conflict, GrantEvent, MutationRecord, SyncedModel
from .registry import Resolution, SyncedType

logger = logging.getLogger(__name__)

OPS = ("create", "update", "delete")


@dataclass
class MutationResult:
    mutation_id: str | None
    status: str
    id: str | None = None
    version: int | None = None
    data: dict[str, Any] | None = None
    conflict_id: str | None = None
    errors: dict[str, list[str]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Mutation:
    """A mutation whose envelope is well-formed."""

    mutation_id: uuid.UUID
    type: SyncedType
    op: str
    id: uuid.UUID
    base_version: int | None
    data: Mapping[str, Any]  # empty for a delete

    @property
    def key(self) -> tuple[str, uuid.UUID]:
        return self.type.label, self.id

    @property
    def label(self) -> str:
        return self.type.label


@dataclass
class _Malformed:
    """A mutation whose envelope is not: rejected before anything is loaded. Its
    mutation_id, when valid, is kept so that a retry replays the rejection."""

    mutation_id: uuid.UUID | None
    result: MutationResult
    label: str = ""
    id: uuid.UUID | None = None


_Item = _Mutation | _Malformed


def _parse(raw: Any) -> _Item:
    if not isinstance(raw, dict):
        return _Malformed(
            None, MutationResult(None, "rejected", errors={"mutation": ["Must be an object."]})
        )
    errors: dict[str, list[str]] = {}
    mutation_id = _uuid_or_none(raw.get("mutation_id"))
    if mutation_id is None:
        errors["mutation_id"] = ["A UUID is required."]
    label = raw.get("model")
    stype = registry.get(label) if isinstance(label, str) else None
    if stype is None:
        errors["model"] = [f"Unknown model {label!r}; see GET /api/v1/sync/models/."]
    op = raw.get("op")
    if op not in OPS:
        errors["op"] = ["Must be one of create, update, delete."]
    object_id = _uuid_or_none(raw.get("id"))
    if object_id is None:
        errors["id"] = ["A UUID is required."]
    base = raw.get("base_version")
    if base is not None and (not isinstance(base, int) or isinstance(base, bool) or base < 0):
        errors["base_version"] = ["Must be a non-negative integer or null."]
    data = raw.get("data")
    if op in ("create", "update") and not isinstance(data, dict):
        errors["data"] = ["An object of field values is required."]
    if errors or stype is None or mutation_id is None or object_id is None:
        result = MutationResult(
            str(mutation_id) if mutation_id else _str_or_none(raw.get("mutation_id")),
            "rejected",
            id=str(object_id) if object_id else _str_or_none(raw.get("id")),
            errors=errors,
        )
        return _Malformed(mutation_id, result, stype.label if stype else "", object_id)
    return _Mutation(
        mutation_id, stype, str(op), object_id, base, data if isinstance(data, dict) else {}
    )


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _rejected(m: _Mutation, errors: dict[str, list[str]]) -> MutationResult:
    return MutationResult(str(m.mutation_id), "rejected", id=str(m.id), errors=errors)


class _Batch:
    """Working state of one transaction of mutations."""

    def __init__(self, *, user: Any, device_id: uuid.UUID | None, reason: str) -> None:
        self.user = user
        self.device_id = device_id
        self.reason = reason
        self.now = timezone.now()
        self.channels: set[str] = set()
        self.state: dict[tuple[str, uuid.UUID], SyncedModel | None] = {}
        self.in_db: set[tuple[str, uuid.UUID]] = set()
        self.dirty: dict[tuple[str, uuid.UUID], SyncedType] = {}
        self.bases: dict[tuple[str, uuid.UUID, int], models.Model] = {}
        self.refs_ok: set[tuple[str, Any]] = set()
        self.history: list[tuple[SyncedType, models.Model, str]] = []
        self.changes: list[Change] = []
        self.conflicts: list[Conflict] = []
        self.records: list[MutationRecord] = []
        self.feed_range: tuple[int, int] | None = None

    # --- loading -------------------------------------------------------------

    def load(self, items: Sequence[_Item]) -> dict[uuid.UUID, dict[str, Any]]:
        valid = [m for m in items if isinstance(m, _Mutation)]
        mids = {m.mutation_id for m in items if m.mutation_id is not None}
        replays = {
            r.mutation_id: r.result
            for r in MutationRecord.objects.filter(user_id=self.user.pk, mutation_id__in=mids)
        }
        self.channels = feed.user_channels(self.user.pk)
        ids_by_type: dict[str, tuple[SyncedType, set[uuid.UUID]]] = {}
        for m in valid:
            ids_by_type.setdefault(m.type.label, (m.type, set()))[1].add(m.id)
        # Lock rows in one global order (label, pk) so concurrent batches cannot deadlock.
        for label in sorted(ids_by_type):
            stype, ids = ids_by_type[label]
            for obj in (
                stype.model._default_manager.select_for_update()
                .filter(pk__in=sorted(ids))
                .order_by("pk")
            ):
                self.state[(label, obj.pk)] = obj
                self.in_db.add((label, obj.pk))
                self.bases[(label, obj.pk, obj.version)] = obj
        self._load_bases(valid)
        self._load_references(valid)
        return replays

    def _load_bases(self, valid: Sequence[_Mutation]) -> None:
        wanted: dict[str, tuple[SyncedType, set[uuid.UUID], set[int]]] = {}
        for m in valid:
            current = self.state.get(m.key)
            if m.op != "create" and current is not None and m.base_version is not None:
                if m.base_version < current.version:
                    entry = wanted.setdefault(m.type.label, (m.type, set(), set()))
                    entry[1].add(m.id)
                    entry[2].add(m.base_version)
        for label, (stype, ids, versions) in wanted.items():
            history = stype.model.history.model
            for row in history.objects.filter(id__in=ids, version__in=versions).order_by(
                "history_id"
            ):
                self.bases[(label, row.id, row.version)] = row

    def _load_references(self, valid: Sequence[_Mutation]) -> None:
        wanted: dict[type[models.Model], set[Any]] = defaultdict(set)
        for m in valid:
            if not m.data:
                continue
            for name, codec in m.type.references.items():
                value = m.data.get(name)
                if value is None or codec.read_only:
                    continue
                try:
                    wanted[codec.ref_model].add(codec.decode(value))  # type: ignore[index]
                except ValidationError:
                    continue  # reported when the mutation is applied
        for model, ids in wanted.items():
            target = registry.for_model(model)
            label = model._meta.label_lower
            if target is None:
                for pk in model._default_manager.filter(pk__in=ids).values_list("pk", flat=True):
                    self.refs_ok.add((label, pk))
                continue
            fields = ["pk", *[a for _, a in target.scope_attnames]]
            for row in model._default_manager.filter(pk__in=ids, deleted_at__isnull=True).values(
                *fields
            ):
                if target.channels_of(row) & self.channels:
                    self.refs_ok.add((label, row["pk"]))

    # --- applying ------------------------------------------------------------

    def visible(self, stype: SyncedType, obj: models.Model) -> bool:
        return bool(stype.channels_of(obj.__dict__) & self.channels)

    def decode(self, m: _Mutation, *, full: bool) -> tuple[dict[str, Any], dict[str, list[str]]]:
        stype = m.type
        values: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        for name, raw in m.data.items():
            codec = stype.codecs.get(name)
            if codec is None:
                errors[name] = ["Unknown field."]
                continue
            if codec.read_only:
                errors[name] = ["This field is read-only."]
                continue
            try:
                value = codec.decode(raw)
            except ValidationError as exc:
                errors[name] = error_messages(exc)
                continue
            if (
                codec.type == "reference"
                and value is not None
                and not self._reference_ok(codec.ref_label or "", value)
            ):
                errors[name] = [f"No {codec.ref_label} with this id in your scope."]
                continue
            values[name] = value
        if full:
            for name, codec in stype.writable.items():
                if codec.required and name not in m.data and name not in errors:
                    errors[name] = ["This field is required."]
        return values, errors

    def _reference_ok(self, label: str, pk: Any) -> bool:
        target = registry.get(label)
        if target is not None and (label, pk) in self.state:
            # An object this batch loaded, created or changed counts as it is now.
            obj = self.state[(label, pk)]
            return obj is not None and not obj.is_deleted and self.visible(target, obj)
        return (label, pk) in self.refs_ok

    def placement_errors(
        self, stype: SyncedType, before: Any, after: Any
    ) -> dict[str, list[str]] | None:
        """A write must leave the object visible to its author, and may only put it
        in channels the author belongs to (or that it was already in: editing a
        teammate's object keeps it in the teammate's own channel)."""
        new = stype.channels_of(after.__dict__)
        if not new & self.channels:
            return {
                name: ["The object would be outside your scope."]
                for name in sorted(stype.scope.values())
            }
        old = (
            stype.channels_of(before.__dict__)
            if before is not None and not before.is_deleted
            else set()
        )
        foreign = new - old - self.channels
        if not foreign:
            return None
        errors: dict[str, list[str]] = {}
        for prefix, name in stype.scope.items():
            value = getattr(after, stype.codecs[name].attname)
            if f"{prefix}:{value}" in foreign:
                errors[name] = ["You may only place objects in scopes you belong to."]
        return errors

    def apply(self, m: _Mutation) -> MutationResult:
        stype = m.type
        current = self.state.get(m.key)
        if m.op == "create":
            return self._create(m, stype, current)
        if current is None or not self.visible(stype, current):
            return _rejected(m, {"id": [f"No {stype.label} with this id in your scope."]})
        if m.base_version is None:
            return _rejected(m, {"base_version": ["Required for update and delete."]})
        if m.base_version > current.version:
            return _rejected(
                m,
                {"base_version": [f"Ahead of the server, which is at version {current.version}."]},
            )
        if m.op == "update":
            return self._update(m, stype, current)
        return self._delete(m, stype, current)

    def _create(self, m: _Mutation, stype: SyncedType, current: Any) -> MutationResult:
        if current is not None:
            return _rejected(m, {"id": ["An object with this id already exists."]})
        if m.base_version not in (None, 0):
            return _rejected(m, {"base_version": ["Must be null for a create."]})
        values, errors = self.decode(m, full=True)
        if errors:
            return _rejected(m, errors)
        obj = stype.model(id=m.id, created_at=self.now)
        for name, value in values.items():
            setattr(obj, stype.codecs[name].attname, value)
        if stype.owner_field:
            setattr(obj, stype.codecs[stype.owner_field].attname, self.user.pk)
        misplaced = self.placement_errors(stype, None, obj)
        if misplaced:
            return _rejected(m, misplaced)
        self.write(stype, None, obj, "+")
        return self._done(m, stype, obj, "applied")

    def _update(self, m: _Mutation, stype: SyncedType, current: Any) -> MutationResult:
        values, errors = self.decode(m, full=False)
        if errors:
            return _rejected(m, errors)
        client = {name: stype.codecs[name].encode(v) for name, v in values.items()}
        server = stype.encode(current.__dict__)
        if current.is_deleted:
            if m.base_version == current.version:
                return _rejected(m, {"id": ["This object has been deleted."]})
            return self._settle(
                m, stype, current, Conflict.Kind.UPDATE_DELETE, client, values, list(client)
            )
        if m.base_version == current.version:
            return self._apply_values(m, stype, current, values, "applied")
        base_row = self.bases.get((stype.label, m.id, m.base_version or 0))
        base = stype.encode(base_row.__dict__) if base_row is not None else None
        # Three-way merge against the stored state at base_version. Without a
        # base (history pruned) every field the client sent counts as changed on
        # both sides, so only identical values merge silently.
        to_apply: dict[str, Any] = {}
        clashing: list[str] = []
        changed = [f for f, v in client.items() if base is None or base[f] != v]
        for f in changed:
            server_changed = base is None or server[f] != base[f]
            if not server_changed:
                to_apply[f] = values[f]
            elif server[f] != client[f]:
                clashing.append(f)
        if stype.policy == "manual" and changed:
            clashing = changed
        if not clashing:
            return self._apply_values(m, stype, current, to_apply, "merged")
        if stype.policy == "server_wins":
            return self._apply_values(m, stype, current, to_apply, "merged")
        if stype.policy == "client_wins":
            to_apply.update({f: values[f] for f in clashing})
            return self._apply_values(m, stype, current, to_apply, "merged")
        if stype.policy == "custom":
            resolved = self._resolve(stype, base, server, client, clashing)
            if resolved is not None:
                to_apply.update(resolved)
                return self._apply_values(m, stype, current, to_apply, "merged")
        return self._conflict(m, stype, current, Conflict.Kind.UPDATE_UPDATE, client, clashing)

    def _resolve(
        self,
        stype: SyncedType,
        base: dict[str, Any] | None,
        server: dict[str, Any],
        client: dict[str, Any],
        clashing: list[str],
    ) -> dict[str, Any] | None:
        """Run the model's custom resolver; None means a person must decide."""
        try:
            outcome = stype.resolver(base, server, client, list(clashing))  # type: ignore[misc]
        except Exception:
            # A failing resolver must not fail the whole push: a person decides.
            logger.exception("%s resolver failed; queueing a conflict", stype.label)
            return None
        if not isinstance(outcome, Resolution) or outcome.needs_person:
            return None
        resolved: dict[str, Any] = {}
        for name, raw in outcome.values.items():
            codec = stype.writable.get(name)
            if codec is None:
                logger.error("%s resolver returned unknown field %s", stype.label, name)
                return None
            try:
                resolved[name] = codec.decode(raw)
            except ValidationError:
                logger.exception("%s resolver returned an invalid %s", stype.label, name)
                return None
        return resolved

    def _delete(self, m: _Mutation, stype: SyncedType, current: Any) -> MutationResult:
        if current.is_deleted:
            return MutationResult(
                str(m.mutation_id), "applied", id=str(m.id), version=current.version
            )
        if m.base_version == current.version:
            return self._soft_delete(m, stype, current, "applied")
        return self._settle(m, stype, current, Conflict.Kind.DELETE_UPDATE, None, {}, [])

    def _settle(
        self,
        m: _Mutation,
        stype: SyncedType,
        current: Any,
        kind: str,
        client: dict[str, Any] | None,
        values: dict[str, Any],
        fields: list[str],
    ) -> MutationResult:
        """Update-vs-delete and delete-vs-update: a policy may settle it, else a person."""
        if stype.policy == "server_wins":
            return self._done(m, stype, current, "merged")
        if stype.policy == "client_wins":
            if kind == Conflict.Kind.DELETE_UPDATE:
                return self._soft_delete(m, stype, current, "merged")
            return self._apply_values(m, stype, current, values, "merged", undelete=True)
        return self._conflict(m, stype, current, kind, client, fields)

    def _apply_values(
        self,
        m: _Mutation,
        stype: SyncedType,
        current: Any,
        values: Mapping[str, Any],
        status: str,
        *,
        undelete: bool = False,
    ) -> MutationResult:
        after = copy.copy(current)
        for name, value in values.items():
            setattr(after, stype.codecs[name].attname, value)
        if undelete:
            after.deleted_at = None
        if not undelete and stype.encode(after.__dict__) == stype.encode(current.__dict__):
            return self._done(m, stype, current, status)  # nothing changed: no new version
        errors = self.placement_errors(stype, current, after)
        if errors:
            return _rejected(m, errors)
        self.write(stype, current, after, "~")
        return self._done(m, stype, after, status)

    def _soft_delete(
        self, m: _Mutation, stype: SyncedType, current: Any, status: str
    ) -> MutationResult:
        after = copy.copy(current)
        after.deleted_at = self.now
        self.write(stype, current, after, "-")
        return self._done(m, stype, after, status)

    def _conflict(
        self,
        m: _Mutation,
        stype: SyncedType,
        current: Any,
        kind: str,
        client: dict[str, Any] | None,
        fields: list[str],
    ) -> MutationResult:
        base_row = self.bases.get((stype.label, m.id, m.base_version or 0))
        conflict = Conflict(
            model=stype.label,
            object_id=m.id,
            kind=kind,
            policy=stype.policy,
            fields=sorted(fields),
            base_version=m.base_version,
            server_version=current.version,
            base_data=stype.encode(base_row.__dict__) if base_row is not None else None,
            server_data=None if current.is_deleted else stype.encode(current.__dict__),
            client_data=client,
            client_op=m.op,
            user_id=self.user.pk,
            device_id=self.device_id,
            mutation_id=m.mutation_id,
            created_at=self.now,
        )
        self.conflicts.append(conflict)
        result = self._done(m, stype, current, "conflict")
        result.conflict_id = str(conflict.id)
        return result

    def _done(self, m: _Mutation, stype: SyncedType, obj: Any, status: str) -> MutationResult:
        data = None if obj.is_deleted else stype.encode(obj.__dict__)
        return MutationResult(
            str(m.mutation_id), status, id=str(m.id), version=obj.version, data=data
        )

    def write(self, stype: SyncedType, before: Any, after: Any, history_type: str) -> None:
        """Record a new version of an object: state, history row and feed rows."""
        after.version = (before.version if before is not None else 0) + 1
        after.updated_at = self.now
        key = (stype.label, after.pk)
        self.state[key] = after
        self.dirty[key] = stype
        snapshot = copy.copy(after)
        self.history.append((stype, snapshot, history_type))
        # A later mutation of this batch may name this version as its base.
        self.bases[(stype.label, after.pk, after.version)] = snapshot
        old = (
            stype.channels_of(before.__dict__)
            if before is not None and not before.is_deleted
            else set()
        )
        if after.is_deleted:
            gone, live = old | stype.channels_of(after.__dict__), set()
        else:
            live = stype.channels_of(after.__dict__)
            gone = old - live
        for channel, op in [
            *((c, Change.Op.UPSERT) for c in sorted(live)),
            *((c, Change.Op.DELETE) for c in sorted(gone)),
        ]:
            self.changes.append(
                Change(
                    channel=channel,
                    model=stype.label,
                    object_id=after.pk,
                    version=after.version,
                    op=op,
                    created_at=self.now,
                )
            )

    # --- flushing ------------------------------------------------------------

    def record(self, m: _Item, result: MutationResult) -> None:
        if m.mutation_id is None:
            return
        self.records.append(
            MutationRecord(
                user_id=self.user.pk,
                mutation_id=m.mutation_id,
                device_id=self.device_id,
                model=m.label,
                object_id=m.id,
                status=result.status,
                result=result.as_dict(),
                created_at=self.now,
            )
        )

    def flush(self) -> None:
        creates: dict[SyncedType, list[SyncedModel]] = defaultdict(list)
        updates: dict[SyncedType, list[SyncedModel]] = defaultdict(list)
        for key in sorted(self.dirty, key=lambda k: (k[0], k[1])):
            stype = self.dirty[key]
            obj = self.state[key]
            if obj is not None:  # always set for a dirty key
                (updates if key in self.in_db else creates)[stype].append(obj)
        for stype, objs in creates.items():
            stype.model._default_manager.bulk_create(objs)
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
        if self.records:
            # Sorted so that two batches inserting overlapping ids wait on each
            # other in the same order instead of deadlocking.
            self.records.sort(key=lambda r: r.mutation_id)
            MutationRecord.objects.bulk_create(self.records)
        self.feed_range = feed.append(self.changes)

    def _flush_history(self) -> None:
        # Built by hand rather than with bulk_history_create so that soft deletes
        # are recorded as deletions ("-") in the audit trail.
        rows: dict[type[models.Model], list[models.Model]] = defaultdict(list)
        user_id = getattr(self.user, "pk", None)
        for stype, snapshot, history_type in self.history:
            history = stype.model.history.model
            rows[history].append(
                history(
                    history_date=self.now,
                    history_type=history_type,
                    history_user_id=user_id,
                    history_change_reason=self.reason[:100],
                    **{f.attname: getattr(snapshot, f.attname) for f in history.tracked_fields},
                )
            )
        for history, objs in rows.items():
            history._default_manager.bulk_create(objs)


@dataclass
class BatchOutcome:
    results: list[MutationResult]
    feed_range: tuple[int, int] | None
    # The author's channels as the batch saw them (set when feed_range is).
    channels: frozenset[str] = frozenset()


def _run(
    *, user: Any, device_id: uuid.UUID | None, items: Sequence[_Item], reason: str
) -> BatchOutcome:
    with transaction.atomic():
        batch = _Batch(user=user, device_id=device_id, reason=reason)
        replays = batch.load(items)
        results: list[MutationResult] = []
        first: dict[uuid.UUID, MutationResult] = {}
        for m in items:
            if m.mutation_id is not None and m.mutation_id in replays:
                results.append(MutationResult(**replays[m.mutation_id]))
                continue
            if m.mutation_id is not None and m.mutation_id in first:
                results.append(copy.copy(first[m.mutation_id]))
                continue
            result = m.result if isinstance(m, _Malformed) else batch.apply(m)
            batch.record(m, result)
            if m.mutation_id is not None:
                first[m.mutation_id] = result
            results.append(result)
        batch.flush()
    return BatchOutcome(results, batch.feed_range, frozenset(batch.channels))


def mutations_apply(
    *,
    user: Any,
    mutations: Sequence[Any],
    device_id: uuid.UUID | None = None,
    reason: str = "",
) -> BatchOutcome:
    """Apply mutations (protocol push form) in order; one result per mutation."""
    items = [_parse(raw) for raw in mutations]
    try:
        return _run(user=user, device_id=device_id, items=items, reason=reason)
    except DatabaseError:
        logger.warning(
            "Batch of %d mutations failed as a whole; applying one by one",
            len(items),
            exc_info=True,
        )
    results: list[MutationResult] = []
    for m in items:
        try:
            outcome = _run(user=user, device_id=device_id, items=[m], reason=reason)
        except IntegrityError as exc:
            if isinstance(m, _Malformed):
                # Only its record could clash: a concurrent retry stored the same rejection.
                results.append(m.result)
                continue
            result = _rejected(m, {"non_field_errors": [_integrity_message(exc)]})
            _record_alone(user=user, device_id=device_id, m=m, result=result)
            results.append(result)
            continue
        results.extend(outcome.results)
    # Applied over several transactions, others' changes may sit between ours:
    # report no feed range, so the push cursor is not moved past them.
    return BatchOutcome(results, None)


def _integrity_message(exc: IntegrityError) -> str:
    text = str(exc).splitlines()[0] if str(exc) else "constraint violated"
    return f"The database refused this change: {text}"


def _record_alone(
    *, user: Any, device_id: uuid.UUID | None, m: _Mutation, result: MutationResult
) -> None:
    if m.mutation_id is None:
        return
    try:
        with transaction.atomic():
            MutationRecord.objects.create(
                user_id=user.pk,
                mutation_id=m.mutation_id,
                device_id=device_id,
                model=m.label,
                object_id=m.id,
                status=result.status,
                result=result.as_dict(),
            )
    except IntegrityError:
        logger.info("Mutation %s was recorded concurrently", m.mutation_id)


@dataclass
class PushOutcome:
    results: list[MutationResult]
    cursor: str


def push_apply(
    *, user: Any, device: Any, mutations: Sequence[Any], cursor: str | None = None
) -> PushOutcome:
    """A device's push: apply the batch, then hand back a cursor it may adopt."""
    limit = settings.SYNC_PUSH_MAX_MUTATIONS
    if len(mutations) > limit:
        raise SyncError(
            "too_many_mutations",
            f"At most {limit} mutations per push; send the rest in another request.",
            status_code=413,
        )
    outcome = mutations_apply(
        user=user, mutations=mutations, device_id=device.pk, reason=f"push from device {device.pk}"
    )
    return PushOutcome(outcome.results, _push_cursor(user, device, cursor, outcome))


def _push_cursor(user: Any, device: Any, token: str | None, outcome: BatchOutcome) -> str:
    """The device's pull cursor, moved past this push's own changes when nothing
    else happened in its channels in between (so it need not pull back its own
    writes). Never moves past a change of anyone else: always safe to adopt."""
    start: Cursor | None = None
    for candidate in (token, device.last_cursor):
        if candidate:
            try:
                start = decode(candidate)
            except BadCursor:
                continue
            if start.u == user.pk:
                break
            start = None
    if start is None:
        start = Cursor(s=0, g=feed.last_grant_event(user.pk), i=feed.head(), u=user.pk)
    own = outcome.feed_range
    # Not during an initial sync (i) or a backfill (b): a client ending an initial
    # sync keeps exactly what it brought, so its own writes must come with it.
    if own is None or start.b or start.i is not None or start.s >= own[1]:
        return start.encode()
    if feed.purged_through() > start.s:
        return start.encode()  # behind compaction: its next pull must get a 410, not skip it
    others = Change.objects.filter(channel__in=outcome.channels, seq__gt=start.s, seq__lt=own[0])
    if start.m is not None:
        others = others.filter(model__in=start.m)
    if others.exists():
        return start.encode()
    return start.evolve(s=own[1]).encode()


# --- channels ---------------------------------------------------------------------


def channel_grant(*, user: Any, channel: str) -> bool:
    """Add `user` to `channel`; their next pull brings the channel's existing objects."""
    with transaction.atomic():
        _, created = ChannelGrant.objects.get_or_create(user_id=user.pk, channel=channel)
        if created:
            feed.lock_tail()  # grant events are numbered in commit order, like the feed
            GrantEvent.objects.create(user_id=user.pk, channel=channel, granted=True)
    return created


def channel_revoke(*, user: Any, channel: str) -> bool:
    """Remove `user` from `channel`; their next pull deletes what they no longer see."""
    with transaction.atomic():
        deleted, _ = ChannelGrant.objects.filter(user_id=user.pk, channel=channel).delete()
        if deleted:
            feed.lock_tail()
            GrantEvent.objects.create(user_id=user.pk, channel=channel, granted=False)
    return bool(deleted)
