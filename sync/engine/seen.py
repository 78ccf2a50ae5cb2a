"""Recording that a device synced: when, and where its last pull left it."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Protocol

from django.db import connection
from django.utils import timezone

from devices.models import Device
from sync.engine.cursor import BadCursor, decode


class Reported(Protocol):
    """What an app says of itself on a sync call (sync.api.handshake.Handshake)."""

    def device_changes(self, device: Device) -> dict[str, Any]: ...

    def report(self) -> dict[str, Any]: ...


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


def device_seen(
    *,
    device: Device,
    cursor: str | None = None,
    moved: bool = False,
    reported: Reported | None = None,
) -> None:
    """Record that the device synced: `cursor` is where a pull left it up to
    date, `moved` says that pull brought changes, `reported` what the app
    said of itself (its version, schema and outbox; written when it changed,
    and with every periodic write). A stale `last_cursor` only makes a push
    without a cursor hand back an older position (the device pulls some
    changes again); it never skips one."""
    now = timezone.now()
    recent = device.last_seen is not None and now - device.last_seen < SEEN_EVERY
    if reported is not None and (not recent or reported.device_changes(device)):
        said: dict[str, Any] = {"last_seen": now, **reported.report()}
        if cursor is not None:
            said["last_cursor"] = cursor
        Device.objects.filter(pk=device.pk).update(**said)
        for name, value in said.items():
            setattr(device, name, value)
        return
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
