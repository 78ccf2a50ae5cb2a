from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from sync.cursor import BadCursor, decode
from sync.errors import SyncError

from .models import Device

_FIELDS = ("platform", "name", "app_version", "push_token")


def device_register(
    *, user: Any, device_id: uuid.UUID, data: dict[str, Any]
) -> tuple[Device, bool]:
    """Idempotent upsert of the caller's device; returns (device, created)."""
    now = timezone.now()
    values = {k: data[k] for k in _FIELDS if k in data and data[k] is not None}
    if "push_token" in values:
        values["push_active"] = bool(values["push_token"])
    device = Device.objects.filter(pk=device_id).first()
    if device is None:
        try:
            with transaction.atomic():
                _check_room_for_a_device(user)
                created = Device.objects.create(
                    id=device_id, user=user, created_at=now, updated_at=now, **values
                )
            return created, True
        except IntegrityError:
            # Registered concurrently by another request: treat it as a re-registration.
            device = Device.objects.get(pk=device_id)
    if device.user_id != user.pk:
        raise SyncError(
            "device_taken",
            "This device id is registered to another account; generate a new one.",
            status_code=409,
        )
    return device_update(device=device, data=data), False


def _check_room_for_a_device(user: Any) -> None:
    """At most SYNC_MAX_DEVICES_PER_USER devices per user (re-registering one
    of them is always fine). The user's row is locked so that registrations
    racing each other count one after the other and cannot overshoot together."""
    limit = settings.SYNC_MAX_DEVICES_PER_USER
    get_user_model().objects.select_for_update().only("pk").get(pk=user.pk)
    if Device.objects.filter(user_id=user.pk).count() >= limit:
        raise SyncError(
            "too_many_devices",
            f"This account already has {limit} devices, the most it may have; delete one "
            "it no longer uses (DELETE /api/v1/devices/<id>/) and register again.",
            status_code=409,
        )


def device_update(*, device: Device, data: dict[str, Any]) -> Device:
    changed = []
    for key in _FIELDS:
        if key in data and data[key] is not None and getattr(device, key) != data[key]:
            setattr(device, key, data[key])
            changed.append(key)
    if "push_token" in changed:
        device.push_active = bool(device.push_token)
        changed.append("push_active")
    if changed:
        device.updated_at = timezone.now()
        device.save(update_fields=[*changed, "updated_at"])
    return device


def device_delete(*, device: Device) -> None:
    device.delete()


# A device's last_seen (and the cursor of its last finished pull) is written at
# most this often when nothing new reached it: an up-to-date device polling
# would otherwise commit a write for every empty pull.
SEEN_EVERY = dt.timedelta(minutes=1)


def _same_filter(old: str, new: str) -> bool:
    """Whether two cursors are for the same `models` filter (a push hands the
    stored one back, and a pull refuses a cursor of another filter)."""
    try:
        return decode(old).m == decode(new).m
    except BadCursor:
        return False


def device_seen(*, device: Device, cursor: str | None = None, moved: bool = False) -> None:
    """Record that the device synced: `cursor` is where a pull left it up to
    date, `moved` says that pull brought changes. A stale `last_cursor` only
    makes a push without a cursor hand back an older position (the device pulls
    some changes again); it never skips one."""
    now = timezone.now()
    recent = device.last_seen is not None and now - device.last_seen < SEEN_EVERY
    if recent and not (
        cursor is not None
        and (moved or not device.last_cursor or not _same_filter(device.last_cursor, cursor))
    ):
        return
    if connection.vendor == "postgresql":
        params: list[Any] = [now, device.pk] if cursor is None else [now, cursor, device.pk]
        with connection.cursor() as db:
            db.execute(_seen_sql(cursor is not None), params)
        return
    values: dict[str, Any] = {"last_seen": now}
    if cursor is not None:
        values["last_cursor"] = cursor
    Device.objects.filter(pk=device.pk).update(**values)


@functools.cache
def _seen_sql(with_cursor: bool) -> str:
    """`device_seen`'s write on PostgreSQL, in one statement that commits
    without waiting for the disk (`synchronous_commit` off for its own
    transaction only): the write is bookkeeping, and the worst a crash can do
    is lose the last moments of it (a stale `last_cursor`, which costs a
    device some changes pulled again), while waiting for the flush added
    0.3-1 ms to every pull that brought changes. Written out rather than
    with `update()`, whose building and compiling took 0.18 ms of CPU per
    call against 0.08."""
    table = connection.ops.quote_name(Device._meta.db_table)
    columns = "last_seen = %s, last_cursor = %s" if with_cursor else "last_seen = %s"
    # Fixed names; every value is a parameter.
    return (
        "WITH async AS (SELECT set_config('synchronous_commit', 'off', true)) "  # noqa: S608
        f"UPDATE {table} SET {columns} FROM async WHERE id = %s"
    )
