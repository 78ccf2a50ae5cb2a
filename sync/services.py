"""The only code that writes synced data: one door for every writer.

- `mutations_apply`: mutations in the protocol's push form, applied in a
  scope (a device user's channels, staff's everything, a service account's
  grant), merging stale writes under the model's policy or refusing them.
- `push_apply`: a device's push (limits, and a cursor it may adopt).
- `conflict_resolve` / `conflict_dismiss`: settling a queued conflict, by the
  user who raised it or by staff, written as a new version like any push.
- `channel_grant` / `channel_revoke`: who belongs to which channel.

A batch is applied in one transaction with a fixed number of queries (see
`sync.batch`). If the bulk write hits a database error (a unique clash with a
concurrent push, a deadlock victim), the batch is replayed one mutation per
transaction, so one bad mutation never rolls back the others.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from devices.wakeups import wakeup_record

from . import feed, metrics, registry
from .batch import CHANGED, DELETED, Batch, run
from .choices import Choice, ConflictKind, ConflictStatus, OnStale, ResolvedBy, Status
from .cursor import BadCursor, Cursor, decode
from .errors import SyncError
from .metrics import ConflictEvent
from .models import Change, ChannelGrant, Conflict, GrantEvent, MutationRecord, SyncedModel
from .mutations import Malformed, Mutation, MutationResult, Parsed, parse
from .registry import SyncedType
from .scope import Scope, own_channel

logger = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    results: list[MutationResult]
    feed_range: feed.Written | None
    # The channels the batch wrote in (set when feed_range is; empty for a
    # scope over everything).
    channels: frozenset[str] = frozenset()
    # It also wrote objects its mutations did not name (a cascade).
    side_effects: bool = False


def mutations_apply(
    *,
    user: Any,
    mutations: Sequence[Any],
    scope: Scope | None = None,
    device_id: uuid.UUID | None = None,
    reason: str = "",
    on_stale: str = OnStale.MERGE,
) -> BatchOutcome:
    """Apply mutations (protocol push form, or parsed `Mutation`s) in order, as
    `user` within `scope` (default: the user's own channels); one result each.

    `on_stale=OnStale.REFUSE` answers a write based on an older version with
    status `stale` and the current state instead of merging it.
    """
    scope = scope or Scope.of_user(user)
    items = [m if isinstance(m, Mutation | Malformed) else parse(m) for m in mutations]

    def attempt(batch_items: Sequence[Parsed]) -> BatchOutcome:
        with transaction.atomic():
            batch = Batch(scope=scope, device_id=device_id, reason=reason, on_stale=on_stale)
            results = run(batch, batch_items)
        return BatchOutcome(
            results, batch.feed_range, scope.channels or frozenset(), batch.side_effects
        )

    try:
        return attempt(items)
    except DatabaseError:
        logger.warning(
            "Batch of %d mutations failed as a whole; applying one by one",
            len(items),
            exc_info=True,
        )
    results: list[MutationResult] = []
    for m in items:
        try:
            outcome = attempt([m])
        except IntegrityError as exc:
            if isinstance(m, Malformed):
                # Only its record could clash: a concurrent retry stored the same rejection.
                results.append(m.result)
                continue
            result = m.rejected({"non_field_errors": [_integrity_message(exc)]})
            _record_alone(scope=scope, device_id=device_id, m=m, result=result)
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
    *, scope: Scope, device_id: uuid.UUID | None, m: Mutation, result: MutationResult
) -> None:
    try:
        with transaction.atomic():
            MutationRecord.objects.create(
                user_id=scope.user_id,
                mutation_id=m.mutation_id,
                device_id=device_id,
                model=m.label,
                object_id=m.id,
                status=result.status,
                result=result.as_dict(),
            )
    except IntegrityError:
        logger.info("Mutation %s was recorded concurrently", m.mutation_id)


# --- device pushes -------------------------------------------------------------------


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
    metrics.push_counted(r.status for r in outcome.results)
    return PushOutcome(outcome.results, _push_cursor(user, device, cursor, outcome))


def _push_cursor(user: Any, device: Any, token: str | None, outcome: BatchOutcome) -> str:
    """The device's pull cursor, moved past this push's own changes when nothing
    else happened in its channels in between (so it need not pull back its own
    writes). Never moves past a change of anyone else: always safe to adopt."""
    start = _device_cursor(user, device, token)
    own = outcome.feed_range
    if own is None or start.s >= own.end:
        return start.encode()  # nothing of ours to skip
    if outcome.side_effects:
        # The results do not describe everything written (a delete's cascade),
        # so the device must pull its own changes back.
        return start.encode()
    # A client in an initial sync (i) or a backfill (b) keeps exactly what that
    # brings, so its own writes must come with it.
    if start.b or start.i is not None:
        return start.encode()
    horizon = feed.horizon()
    if horizon.purged > start.s:
        # Behind compaction: its next pull must get a 410, not skip it.
        return start.encode()
    if horizon.frontier <= own.tx:
        # An older transaction is still in flight: it may yet commit rows that
        # come before ours, which the device must not skip.
        return start.encode()
    others = Change.objects.filter(
        feed.after(start.s), feed.before(own.start), channel__in=outcome.channels
    )
    if start.m is not None:
        others = others.filter(model__in=start.m)
    if others.exists():
        return start.encode()
    return start.evolve(s=own.end).encode()


def _device_cursor(user: Any, device: Any, token: str | None) -> Cursor:
    """The cursor the device sent, else the one it last finished a pull with,
    else a fresh initial-sync position."""
    for candidate in (token, device.last_cursor):
        if not candidate:
            continue
        try:
            cur = decode(candidate)
        except BadCursor:
            continue
        if cur.u == user.pk:
            return cur
    # No filter yet: the device's first pull binds it (see `Cursor.f`).
    horizon, grants = feed.horizon_and_grants(user.pk)
    return Cursor(g=grants.last_event, i=horizon.caught_up(), u=user.pk, f=True)


# --- conflicts -----------------------------------------------------------------------


@dataclass
class Resolved:
    conflict: Conflict
    object: dict[str, Any]  # {"model", "id", "version", "data"}


def conflict_resolve(
    *,
    conflict_id: uuid.UUID | str,
    user: Any,
    choice: str,
    expected_version: int,
    values: Mapping[str, Any] | None = None,
    note: str = "",
    as_staff: bool = False,
    device_id: uuid.UUID | None = None,
) -> Resolved:
    """Settle an open conflict: keep the server's values, take the client's, or
    write the given value of each field at stake (`Choice`).

    `user` is the user who raised it (from the app), or staff (`as_staff`).
    `expected_version` is the object's version the resolver saw; if it has
    moved on since, nothing is written (412 with the current state): a
    resolution never lands over a write its resolver did not see. The
    resolution is a new version through the same writes as a push (history
    row by `user` naming the conflict, change feed). A deleted object comes
    back with the client's (or the given) values, or stays deleted.
    """
    if choice not in Choice.values:
        raise SyncError(
            "invalid",
            "choice must be server, client or fields.",
            errors={"choice": ["Must be one of server, client, fields."]},
        )
    peek = _conflict_for(conflict_id, user=user, as_staff=as_staff)
    stype = registry.get(peek.model)
    if stype is None:
        raise SyncError("unknown_model", f"{peek.model} is no longer synced.", status_code=409)
    if not as_staff and stype.conflict_resolution == ResolvedBy.STAFF:
        raise SyncError(
            "staff_resolution_only",
            f"Conflicts on {stype.label} are settled by staff; yours is in their queue.",
            status_code=403,
        )
    scope = Scope.everything(user, sets_owner=False) if as_staff else Scope.of_user(user)
    with transaction.atomic():
        batch = Batch(
            scope=scope,
            device_id=device_id,
            reason=f"conflict {peek.pk} resolved ({choice})",
            on_stale=OnStale.REFUSE,
        )
        # The object's row first, then the conflict's: a push locks objects and
        # then marks conflicts superseded, so the other order could deadlock.
        batch.lock(stype, [peek.object_id])
        conflict = Conflict.objects.select_for_update().get(pk=peek.pk)
        _check_open(conflict)
        current = batch.current((stype.label, conflict.object_id))
        if current is None or not (as_staff or scope.sees(stype, current.__dict__)):
            raise _conflict_not_found()
        if current.version != expected_version:
            raise SyncError(
                "stale",
                f"The object is at version {current.version} now, not {expected_version}: "
                "look at its current values and resolve again.",
                status_code=412,
                extra={"object": _object_body(stype, current)},
            )
        wire = _resolution_values(conflict, choice, values)
        batch.load_references([(stype, wire)])
        decoded, errors = batch.decode(stype, wire, full=False)
        if errors:
            raise SyncError("invalid", "Some values are not valid; see errors.", errors=errors)
        after = _resolution_state(batch, stype, conflict, current, choice, decoded)
        if after.is_deleted and not current.is_deleted:
            # Deleting, like a push: dependants follow their references' on_delete.
            batch.load_dependants([(stype, current.pk)])
            blocked = batch.delete(stype, current)
            if blocked:
                raise SyncError("protected", blocked["id"][0], status_code=409, errors=blocked)
            after = batch.objects[(stype.label, current.pk)]
        else:
            if not after.is_deleted:
                misplaced = scope.placement_errors(stype, current.__dict__, after.__dict__)
                if misplaced:
                    raise SyncError(
                        "invalid",
                        "The resolution would move the object out of scope.",
                        errors=misplaced,
                    )
            # Always a new version, even when the values stay: the resolution is
            # an event every device and the history must see.
            batch.write(stype, current, after, DELETED if after.is_deleted else CHANGED)
        batch.resolved = conflict
        batch.flush()
        conflict.status = ConflictStatus.RESOLVED
        conflict.resolution = {"choice": choice, "values": wire}
        conflict.note = note
        conflict.resolved_by = user
        conflict.resolved_at = batch.now
        conflict.resolved_version = after.version
        conflict.save(
            update_fields=[
                "status",
                "resolution",
                "note",
                "resolved_by",
                "resolved_at",
                "resolved_version",
            ]
        )
        metrics.conflicts_counted(ConflictEvent.RESOLVED)
    return Resolved(conflict, _object_body(stype, after))


def conflict_dismiss(*, conflict_id: uuid.UUID | str, user: Any, note: str = "") -> Conflict:
    """Staff close a conflict without writing anything (the server's state stands)."""
    with transaction.atomic():
        conflict = Conflict.objects.select_for_update().filter(pk=conflict_id).first()
        if conflict is None:
            raise _conflict_not_found()
        _check_open(conflict)
        conflict.status = ConflictStatus.DISMISSED
        conflict.note = note
        conflict.resolved_by = user
        conflict.resolved_at = timezone.now()
        conflict.save(update_fields=["status", "note", "resolved_by", "resolved_at"])
        metrics.conflicts_counted(ConflictEvent.DISMISSED)
    return conflict


def _conflict_for(conflict_id: uuid.UUID | str, *, user: Any, as_staff: bool) -> Conflict:
    try:
        pk = uuid.UUID(str(conflict_id))
    except ValueError:
        raise _conflict_not_found() from None
    conflict = Conflict.objects.filter(pk=pk).first()
    if conflict is None or not (as_staff or conflict.user_id == user.pk):
        raise _conflict_not_found()
    return conflict


def _conflict_not_found() -> SyncError:
    return SyncError("not_found", "No such conflict of yours.", status_code=404)


def _check_open(conflict: Conflict) -> None:
    if conflict.status != ConflictStatus.OPEN:
        who = f" by {conflict.resolved_by}" if conflict.resolved_by_id else ""
        raise SyncError(
            "conflict_settled",
            f"This conflict is already {conflict.status}{who}; nothing was changed.",
            status_code=409,
            extra={"status": conflict.status},
        )


def _resolution_values(
    conflict: Conflict, choice: str, values: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The wire values a resolution writes over the object's current state."""
    if choice == Choice.SERVER:
        return {}
    if choice == Choice.CLIENT:
        return dict(conflict.client_data or {})
    if not isinstance(values, Mapping):
        raise SyncError(
            "invalid",
            "choice fields needs values: the final value of each field at stake.",
            errors={"values": ["An object of field values is required."]},
        )
    if conflict.kind == ConflictKind.DELETE_UPDATE:
        raise SyncError(
            "invalid",
            "A deletion is settled by keeping the object (server) or deleting it (client).",
            errors={"choice": ["Must be server or client for this conflict."]},
        )
    missing = [f for f in conflict.fields if f not in values]
    allowed = set(conflict.fields) | set(conflict.client_data or {})
    errors = {f: ["A value is required for each field at stake."] for f in missing}
    errors.update({f: ["Not part of this conflict."] for f in values if f not in allowed})
    if errors:
        raise SyncError("invalid", "values must cover the fields at stake.", errors=errors)
    return dict(values)


def _resolution_state(
    batch: Batch,
    stype: SyncedType,
    conflict: Conflict,
    current: SyncedModel,
    choice: str,
    values: Mapping[str, Any],
) -> SyncedModel:
    """The object as the resolution leaves it."""
    client_deleted = conflict.kind == ConflictKind.DELETE_UPDATE
    if current.is_deleted:
        if choice == Choice.SERVER or client_deleted:
            return batch.with_values(stype, current, {}, restore=False)  # stays deleted
        return batch.with_values(stype, current, values, restore=True)
    if client_deleted and choice == Choice.CLIENT:
        return batch.deleted(current)
    return batch.with_values(stype, current, values, restore=False)


def _object_body(stype: SyncedType, obj: SyncedModel) -> dict[str, Any]:
    return {
        "model": stype.label,
        "id": str(obj.pk),
        "version": obj.version,
        "data": None if obj.is_deleted else stype.encode(obj.__dict__),
    }


# --- staff writes (the admin) ---------------------------------------------------------


def object_write(*, user: Any, mutation: Mapping[str, Any], reason: str) -> MutationResult:
    """A staff member's create, update or delete of any object, in the push form
    (without a mutation_id): applied like a device's push, stale edits merged
    under the model's policy, with `user` in the history."""
    outcome = mutations_apply(
        user=user,
        mutations=[{**mutation, "mutation_id": str(uuid.uuid4())}],
        scope=Scope.everything(user),
        reason=reason,
    )
    return outcome.results[0]


def object_restore(
    *,
    user: Any,
    stype: SyncedType,
    object_id: uuid.UUID,
    expected_version: int,
    values: Mapping[str, Any],
    reason: str,
) -> dict[str, Any]:
    """Bring a deleted object back with `values` (wire form; e.g. a version from
    its history) as a new version. 412 if it moved on from `expected_version`."""
    scope = Scope.everything(user)
    with transaction.atomic():
        batch = Batch(scope=scope, reason=reason)
        batch.lock(stype, [object_id])
        current = batch.current((stype.label, object_id))
        if current is None:
            raise SyncError("not_found", f"No {stype.label} with this id.", status_code=404)
        if current.version != expected_version:
            raise SyncError(
                "stale",
                f"The object is at version {current.version} now, not {expected_version}.",
                status_code=412,
                extra={"object": _object_body(stype, current)},
            )
        if not current.is_deleted:
            raise SyncError(
                "not_deleted", "Only a deleted object can be restored.", status_code=409
            )
        batch.load_references([(stype, values)])
        decoded, errors = batch.decode(stype, values, full=False)
        if errors:
            raise SyncError("invalid", "Some values are not valid; see errors.", errors=errors)
        after = batch.write(
            stype, current, batch.with_values(stype, current, decoded, restore=True), CHANGED
        )
        batch.flush()
    return _object_body(stype, after)


# --- channels ------------------------------------------------------------------------


def channel_grant(*, user: Any, channel: str) -> bool:
    """Add `user` to `channel`; their next pull brings the channel's existing objects."""
    with transaction.atomic():
        _, created = ChannelGrant.objects.get_or_create(user_id=user.pk, channel=channel)
        if created:
            feed.lock_grants()  # grant events are numbered in commit order
            GrantEvent.objects.create(user_id=user.pk, channel=channel, granted=True)
            _wake_user(user)  # their devices have the channel's objects to pull
    return created


def channel_revoke(*, user: Any, channel: str) -> bool:
    """Remove `user` from `channel`; their next pull deletes what they no longer see."""
    with transaction.atomic():
        deleted, _ = ChannelGrant.objects.filter(user_id=user.pk, channel=channel).delete()
        if deleted:
            feed.lock_grants()
            GrantEvent.objects.create(user_id=user.pk, channel=channel, granted=False)
            _wake_user(user)  # their devices have deletes to pull
    return bool(deleted)


def _wake_user(user: Any) -> None:
    wakeup_record(channels=[own_channel(user.pk)], origin_device_id=None, seq=feed.head())


__all__ = [
    "BatchOutcome",
    "PushOutcome",
    "Resolved",
    "Status",
    "channel_grant",
    "channel_revoke",
    "conflict_dismiss",
    "conflict_resolve",
    "mutations_apply",
    "object_restore",
    "object_write",
    "push_apply",
]
