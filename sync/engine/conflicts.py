"""Settling a queued conflict, by the user who raised it or by staff: a new
version written like any push, never over a newer write (docs/protocol.md)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from sync import registry
from sync.choices import Choice, ConflictKind, ConflictStatus, OnStale, ResolvedBy
from sync.engine import metrics
from sync.engine.batch import CHANGED, DELETED, Batch
from sync.engine.metrics import ConflictEvent
from sync.engine.scope import Scope
from sync.engine.write import object_body
from sync.models import Conflict, SyncedModel
from sync.registry import SyncedType
from syncbase.errors import SyncError

logger = logging.getLogger(__name__)


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
                extra={"object": object_body(stype, current)},
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
    return Resolved(conflict, object_body(stype, after))


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


def conflicts_for_user(*, user_id: int, status: str | None) -> Any:
    qs = (
        Conflict.objects.filter(user_id=user_id)
        .select_related("resolved_by")
        .order_by("-created_at")
    )
    if status:
        qs = qs.filter(status=status)
    return qs
