"""A user's data: a copy of it (export) or its erasure, on their request.

What is theirs:
- the synced objects they own (every registered model with an owner field),
  with every history row of those objects, and the history rows they wrote
  on other people's objects;
- their devices, API tokens (metadata only: a token's secret is never
  stored, and its digest is not exported), channel grants, stored push
  results, conflicts they raised, failed-login records (django-axes);
- the account itself.

Erasure, in this order:
1. The account is locked: deactivated, password made unusable, every token
   deleted, so none of their devices can write while it runs.
2. Their live objects are deleted THROUGH THE WRITE SERVICE
   (`sync.engine.write.mutations_apply` in `Scope.everything`), in batches of
   `ERASE_BATCH`, each its own transaction (one huge transaction would hold
   the change feed's lock, and with it every writer, for its whole length).
   So every device that sees one of them (a teammate's) pulls a delete, and
   back-office mirrors read the delete on the feed, like any other delete.
   Deletes follow the references' on_delete like any other: a teammate's note
   on their work order goes with it, and an object another user's object
   protects (a teammate's work order on their customer) is KEPT, live and
   untouched: it is shared business data, the account it names is
   anonymised below, and deleting it would break the teammate's object.
3. In one transaction, what is left goes:
   - the history rows of their objects are purged. That is the point of an
     erasure: the audit trail holds every version of the objects, i.e. the
     very data to erase. The feed rows stay (ids and versions, no values):
     they carry the deletes to the devices; compaction removes them later;
   - the deleted object rows go, except those something not erased still
     references without a delete rule (emptied tombstones, every synced
     value blanked);
   - conflicts they raised are deleted, and so are conflicts others raised
     on their objects: both carry their data (their unapplied edit, or their
     object's values) and the object they are about is gone. Conflicts they
     resolved or dismissed as staff stay, naming the anonymised account;
   - their devices, grants, stored push results, team memberships and every
     other row that deleting the account would delete (Django's CASCADE
     relations), push outbox rows that would only wake their own devices,
     failed-login records, and admin log entries about their objects;
   - the account is anonymised rather than deleted: it is renamed
     `erased-<id>`, its name and email emptied, its groups and permissions
     removed. Deleting it would break the rows that must keep pointing at an
     account (the tombstones' owner; history rows they wrote on other
     people's objects, which are those people's audit trail).

Running an erasure again finishes one that stopped halfway.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from devices.models import Device, PushOutbox
from sync import registry, writers
from sync.channels import own_channel
from sync.choices import Op, Reason, Status
from sync.engine.mutations import Mutation
from sync.engine.scope import Scope
from sync.engine.write import mutations_apply
from sync.models import ChannelGrant, Conflict, GrantEvent, MutationRecord, Token
from sync.registry import SyncedType

logger = logging.getLogger(__name__)

# Deletes per write-service call (and transaction): the push limit.
ERASE_BATCH = 500
# Ids per IN (...) list when reading or deleting by id.
CHUNK = 500


class ErasureFailed(Exception):
    """The write service did not delete some objects; nothing was purged."""


@dataclass
class ErasureReport:
    user_id: int
    # Deleted through the write service (devices pull the deletes).
    deleted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Rows removed (object rows, history rows, devices, ...), per model label.
    purged: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Object rows kept, emptied, because other users' objects reference them.
    emptied: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Live objects kept because other users' objects protect them (on_delete).
    kept: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "deleted": dict(self.deleted),
            "purged": dict(self.purged),
            "emptied": dict(self.emptied),
            "kept": dict(self.kept),
        }


# --- what is theirs ---------------------------------------------------------------------


def owned_types() -> list[SyncedType]:
    """Registered models whose objects have an owner (the others belong to nobody)."""
    return [t for t in registry.all_types() if t.owner_field]


def _owned(stype: SyncedType, user_id: int) -> models.QuerySet:
    attname = stype.codecs[stype.owner_field or ""].attname
    return stype.model._default_manager.filter(**{attname: user_id})


def _history(stype: SyncedType) -> Any:
    """The model of an object's history rows (django-simple-history's, untyped)."""
    return stype.model.history.model


def _chunks(ids: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def user_data_summary(*, user: Any) -> dict[str, int]:
    """How much there is, for the confirmation page: counts only."""
    counts: dict[str, int] = {}
    for stype in owned_types():
        owned = _owned(stype, user.pk)
        counts[stype.label] = owned.count()
        counts[f"{stype.label} history"] = (
            _history(stype)._default_manager.filter(id__in=owned.values("pk")).count()
        )
    counts["devices"] = Device.objects.filter(user_id=user.pk).count()
    counts["API tokens"] = Token.objects.filter(user_id=user.pk).count()
    counts["conflicts raised"] = Conflict.objects.filter(user_id=user.pk).count()
    return counts


# --- export -----------------------------------------------------------------------------


def user_data_export(*, user: Any) -> dict[str, Any]:
    """Everything of theirs, as JSON-ready data (`export_json` writes it)."""
    data: dict[str, Any] = {
        "exported_at": timezone.now(),
        "account": {
            "id": user.pk,
            "username": user.get_username(),
            "email": getattr(user, "email", ""),
            "first_name": getattr(user, "first_name", ""),
            "last_name": getattr(user, "last_name", ""),
            "date_joined": getattr(user, "date_joined", None),
            "last_login": user.last_login,
            "is_active": user.is_active,
            "is_staff": getattr(user, "is_staff", False),
            "groups": sorted(user.groups.values_list("name", flat=True)),
        },
        "objects": {},
        "history": {},
    }
    for stype in owned_types():
        owned = _owned(stype, user.pk)
        data["objects"][stype.label] = [
            {
                "id": obj.pk,
                "version": obj.version,
                "created_at": obj.created_at,
                "updated_at": obj.updated_at,
                "deleted_at": obj.deleted_at,
                "data": stype.encode(obj.__dict__),
            }
            for obj in owned.order_by("created_at", "pk").iterator()
        ]
        rows = (
            _history(stype)
            ._default_manager.filter(Q(id__in=owned.values("pk")) | Q(history_user_id=user.pk))
            .order_by("history_id")
        )
        data["history"][stype.label] = [
            {
                "object_id": row.id,
                "version": row.version,
                "history_date": row.history_date,
                "history_type": row.history_type,
                "by_them": row.history_user_id == user.pk,
                "change_reason": row.history_change_reason,
                "data": stype.encode(row.__dict__),
            }
            for row in rows.iterator()
        ]
    data["devices"] = [
        {
            "id": d.pk,
            "platform": d.platform,
            "name": d.name,
            "app_version": d.app_version,
            # The token itself is a credential for sending to the device.
            "push_token_registered": bool(d.push_token),
            "push_active": d.push_active,
            "last_seen": d.last_seen,
            "last_push_at": d.last_push_at,
            "created_at": d.created_at,
        }
        for d in Device.objects.filter(user_id=user.pk).order_by("created_at")
    ]
    data["api_tokens"] = [
        {
            "name": t.name,
            "created": t.created,
            "expiry": t.expiry,
            "last_used_at": t.last_used_at,
            "kind": "login" if t.sliding else "issued",
        }
        for t in Token.objects.filter(user_id=user.pk).order_by("created")
    ]
    data["channels"] = sorted(
        ChannelGrant.objects.filter(user_id=user.pk).values_list("channel", flat=True)
    )
    data["conflicts"] = [
        {
            "id": c.pk,
            "model": c.model,
            "object_id": c.object_id,
            "kind": c.kind,
            "status": c.status,
            "fields": c.fields,
            "base_data": c.base_data,
            "server_data": c.server_data,
            "client_data": c.client_data,
            "client_op": c.client_op,
            "device_id": c.device_id,
            "created_at": c.created_at,
            "resolved_at": c.resolved_at,
            "resolution": c.resolution,
        }
        for c in Conflict.objects.filter(user_id=user.pk).order_by("created_at")
    ]
    data["push_results"] = list(
        MutationRecord.objects.filter(user_id=user.pk)
        .order_by("created_at")
        .values("mutation_id", "device_id", "model", "object_id", "status", "created_at")
    )
    data["login_records"] = _login_records(user.get_username())
    return data


def export_json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False).encode()


def _axes_models() -> list[type[models.Model]]:
    """django-axes' records of logins and failed logins (by username)."""
    if not apps.is_installed("axes"):
        return []
    return [
        apps.get_model("axes", name) for name in ("AccessLog", "AccessFailureLog", "AccessAttempt")
    ]


def _login_records(username: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for model in _axes_models():
        for row in model._default_manager.filter(username=username).values(
            "attempt_time", "ip_address", "user_agent", "path_info"
        ):
            out.append({"kind": model._meta.model_name, **row})
    return sorted(out, key=lambda r: r["attempt_time"])


# --- erasure ----------------------------------------------------------------------------


def user_data_erase(*, user: Any, by: Any = None) -> ErasureReport:
    """Erase a user's data (see the module's docstring). `by` is the staff
    member doing it, the author of the deletes; without one the deletes are
    written as the user themselves (their history rows are purged anyway)."""
    author = by if by is not None else user
    report = ErasureReport(user_id=user.pk)
    username = user.get_username()
    _lock_out(user, report)
    for stype in _referencing_first(owned_types()):
        deleted, kept = _delete_through_service(stype, user, author)
        if deleted:
            report.deleted[stype.label] += deleted
        if kept:
            report.kept[stype.label] += kept
    # Rows go for good, unrecorded: the deletes devices pull were written above.
    with transaction.atomic(), writers.purging():
        _purge(user, username, report)
    logger.info(
        "erased the data of user %s by %s: %s",
        user.pk,
        getattr(author, "pk", None),
        report.as_dict(),
    )
    return report


def _lock_out(user: Any, report: ErasureReport) -> None:
    with transaction.atomic():
        user.is_active = False
        user.set_unusable_password()
        user.save(update_fields=["is_active", "password"])
        _remove(report, Token.objects.filter(user_id=user.pk))


def _referencing_first(types: list[SyncedType]) -> list[SyncedType]:
    """Models that reference others before those they reference (notes before
    their work orders before their customers), so that no delete leaves a live
    object pointing at a deleted one of the same user."""
    order: list[SyncedType] = []
    remaining = list(types)
    while remaining:
        for stype in remaining:
            referenced_by_others = any(
                other is not stype
                and any(c.ref_model is stype.model for c in other.references.values())
                for other in remaining
            )
            if not referenced_by_others:
                order.append(stype)
                remaining.remove(stype)
                break
        else:  # a cycle: the rest in registration order
            order.extend(remaining)
            break
    return order


def _delete_through_service(stype: SyncedType, user: Any, author: Any) -> tuple[int, int]:
    """Delete the user's live objects of `stype`, a batch per transaction;
    returns how many were deleted and how many other objects protect."""
    scope = Scope.everything(author)
    live = _owned(stype, user.pk).filter(deleted_at__isnull=True).order_by("pk")
    done, protected = 0, set[uuid.UUID]()
    while True:
        # Re-read each time: anything created meanwhile (staff may still set
        # them as an owner) is caught by the next round.
        ids = list(live.exclude(pk__in=protected).values_list("pk", flat=True)[:ERASE_BATCH])
        if not ids:
            return done, len(protected)
        outcome = mutations_apply(
            user=author,
            mutations=[
                Mutation(uuid.uuid4(), stype, Op.DELETE, object_id, None, {}, at_current=True)
                for object_id in ids
            ],
            scope=scope,
            reason=f"erasure of user {user.pk}",
        )
        failed = []
        for result in outcome.results:
            if result.status in (Status.APPLIED, Status.MERGED):
                done += 1
            elif result.reason == Reason.PROTECTED:
                protected.add(uuid.UUID(str(result.id)))
            else:
                failed.append(result)
        if failed:
            raise ErasureFailed(
                f"{len(failed)} {stype.label} object(s) were not deleted, e.g. "
                f"{failed[0].id}: {failed[0].errors}; nothing has been purged"
            )


def _purge(user: Any, username: str, report: ErasureReport) -> None:
    # What the deletes left live (protected by others' objects) stays as it is.
    owned_ids = {
        stype: list(
            _owned(stype, user.pk).filter(deleted_at__isnull=False).values_list("pk", flat=True)
        )
        for stype in owned_types()
    }
    device_ids = list(Device.objects.filter(user_id=user.pk).values_list("pk", flat=True))

    for stype, ids in owned_ids.items():
        # Conflicts about their objects, whoever raised them.
        for chunk in _chunks(ids):
            _remove(report, Conflict.objects.filter(model=stype.label, object_id__in=chunk))
        # The admin's log names objects by their str(): their data.
        content_type = ContentType.objects.get_for_model(stype.model)
        for chunk in _chunks([str(i) for i in ids]):
            _remove(report, LogEntry.objects.filter(content_type=content_type, object_id__in=chunk))
    _remove(report, Conflict.objects.filter(user_id=user.pk))

    kept = _still_referenced({stype.model: set(ids) for stype, ids in owned_ids.items()})
    for stype in _referencing_first(list(owned_ids)):
        keep = kept.get(stype.model, set())
        gone = [i for i in owned_ids[stype] if i not in keep]
        for chunk in _chunks(gone):
            _remove(report, stype.model._default_manager.filter(pk__in=chunk))
        if keep:
            _empty(stype, sorted(keep))
            report.emptied[stype.label] += len(keep)
    # After the rows: every version they had is in their history.
    for stype, ids in owned_ids.items():
        history = _history(stype)
        for chunk in _chunks(ids):
            _remove(report, history._default_manager.filter(id__in=chunk))

    # Wake-ups meant only for their own devices have nobody left to wake; the
    # others still wake teammates, and no longer name a device of theirs.
    _remove(report, PushOutbox.objects.filter(channels=[own_channel(user.pk)]))
    PushOutbox.objects.filter(origin_device_id__in=device_ids).update(origin_device_id=None)
    PushOutbox.objects.filter(conflict_device_id__in=device_ids).update(conflict_device_id=None)

    for own_model in (Device, ChannelGrant, GrantEvent, MutationRecord):
        _remove(report, own_model._default_manager.filter(user_id=user.pk))
    for related_model, attname in _cascading_relations(type(user)):
        _remove(report, related_model._default_manager.filter(**{attname: user.pk}))
    for model in _axes_models():
        _remove(report, model._default_manager.filter(username=username))
    _anonymise(user)


def _remove(report: ErasureReport, queryset: models.QuerySet) -> None:
    """Delete, counting every row per table (cascades included)."""
    _, per_model = queryset.delete()
    for label, n in per_model.items():
        if n:
            report.purged[label.lower()] += n


def _still_referenced(erasing: dict[type[models.Model], set[Any]]) -> dict[Any, set[Any]]:
    """Rows among `erasing` that something not erased references, directly or
    through other kept rows: deleting them would break another user's object
    (or fail on PROTECT)."""
    kept: dict[Any, set[Any]] = defaultdict(set)
    changed = True
    while changed:
        changed = False
        for model, ids in erasing.items():
            candidates = sorted(ids - kept[model])
            if not candidates:
                continue
            for rel_model, attname in _referring_fields(model):
                going = erasing.get(rel_model, set()) - kept[rel_model]
                for chunk in _chunks(candidates):
                    referrers = rel_model._default_manager.filter(**{f"{attname}__in": chunk})
                    for pk, target in referrers.values_list("pk", attname):
                        if pk not in going and target not in kept[model]:
                            kept[model].add(target)
                            changed = True
    return {model: ids for model, ids in kept.items() if ids}


def _referring_fields(model: type[models.Model]) -> Iterable[tuple[type[models.Model], str]]:
    """(model, attname) of every foreign key that points at `model` and that
    the database or Django enforces (not simple-history's copies)."""
    for rel in model._meta.related_objects:
        if rel.many_to_many or rel.on_delete is models.DO_NOTHING:
            continue
        yield rel.related_model, rel.field.attname


def _cascading_relations(user_model: type[models.Model]) -> Iterable[tuple[Any, str]]:
    """Rows that deleting the account would delete with it (team memberships,
    service account, admin log entries it wrote, ...)."""
    for rel in user_model._meta.related_objects:
        if rel.many_to_many or rel.on_delete is not models.CASCADE:
            continue
        yield rel.related_model, rel.field.attname


def _empty(stype: SyncedType, ids: Sequence[Any]) -> None:
    """Blank every synced value of deleted rows that must stay. Written
    directly, not as a new version: a deleted object is never sent to a
    device again, and its history is gone with the erasure."""
    values: dict[str, Any] = {"last_device_id": None}
    kept_names = set(stype.scope.values()) | set(stype.references) | {stype.owner_field}
    for name, codec in stype.codecs.items():
        if codec.read_only or name in kept_names:
            continue
        model_field = stype.model._meta.get_field(name)
        assert isinstance(model_field, models.Field)  # noqa: S101 - registry guarantees it
        if model_field.null:
            values[codec.attname] = None
        elif model_field.has_default():
            values[codec.attname] = model_field.get_default()
        elif model_field.empty_strings_allowed:
            values[codec.attname] = ""
    for chunk in _chunks(ids):
        stype.model._default_manager.filter(pk__in=chunk).update(**values)


def _anonymise(user: Any) -> None:
    user.username = f"erased-{user.pk}"
    for name in ("email", "first_name", "last_name"):
        if hasattr(user, name):
            setattr(user, name, "")
    user.is_active = False
    user.is_staff = False
    user.is_superuser = False
    user.last_login = None
    user.set_unusable_password()
    user.save()
    user.groups.clear()
    user.user_permissions.clear()
