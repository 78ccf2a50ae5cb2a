from __future__ import annotations

import functools
import uuid
from typing import Any

from django.db import connection
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request

from devices.models import Device
from syncbase.errors import SyncError

HEADER = "X-Device-Id"


def user_id_of(request: Request) -> int:
    """The authenticated caller's id (views are IsAuthenticated; this narrows the type)."""
    pk = request.user.pk
    if pk is None:
        raise NotAuthenticated()
    return int(pk)


def device_from_request(request: Request) -> Device:
    """The registered device named by X-Device-Id, which must be the caller's."""
    raw = request.headers.get(HEADER)
    if not raw:
        raise SyncError(
            "device_required",
            f"Send the {HEADER} header with the id of a device registered "
            "via POST /api/v1/devices/.",
        )
    try:
        device_id = uuid.UUID(raw)
    except ValueError:
        raise SyncError("bad_device_id", f"{HEADER} must be a UUID.") from None
    remembered = getattr(request._request, "sync_device", None)
    if remembered is not None and remembered[0] == device_id:
        device = remembered[1]  # read with the token (sync.api.device_auth)
    else:
        device = _device_of(device_id, user_id_of(request))
    if device is None:
        raise SyncError(
            "device_forbidden",
            "This device is not registered to your account; register it via POST /api/v1/devices/.",
            status_code=403,
        )
    return device


def remember_device(request: Request, device_id: uuid.UUID, device: Device | None) -> None:
    """The caller's device with this id (None: it has none), as authentication
    read it, for `device_from_request`."""
    request._request.sync_device = (device_id, device)  # type: ignore[attr-defined]


# What a sync request needs of its device (the rest is loaded if read).
DEVICE_FIELDS = [
    "id",
    "user_id",
    "platform",
    "app_version",
    "last_cursor",
    "last_seen",
    "outbox_pending",
]


@functools.cache
def _device_query() -> str:
    table = connection.ops.quote_name(Device._meta.db_table)
    # Fixed column and table names; the ids are parameters.
    return f"SELECT {', '.join(DEVICE_FIELDS)} FROM {table} WHERE id = %s AND user_id = %s"  # noqa: S608


def _device_of(device_id: uuid.UUID, user_id: int) -> Device | None:
    """The same as Device.objects.filter(pk=..., user_id=...).only(...).first(),
    without building and compiling a queryset: on every pull and push, that
    took over a millisecond, more than the lookup itself. PostgreSQL only:
    psycopg returns the columns' Python types, where SQLite needs the ORM's
    converters."""
    if connection.vendor != "postgresql":
        return Device.objects.filter(pk=device_id, user_id=user_id).only(*DEVICE_FIELDS).first()
    with connection.cursor() as cursor:
        cursor.execute(_device_query(), [device_id, user_id])
        row = cursor.fetchone()
    return Device.from_db(connection.alias, DEVICE_FIELDS, row) if row is not None else None


def devices_for_user(*, user: Any):  # noqa: ANN201
    return Device.objects.filter(user_id=user.pk).order_by("created_at")
