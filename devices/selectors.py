from __future__ import annotations

import uuid
from typing import Any

from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request

from sync.errors import SyncError

from .models import Device

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
    device = (
        Device.objects.filter(pk=device_id, user_id=user_id_of(request))
        .only("id", "user_id", "last_cursor", "last_seen")
        .first()
    )
    if device is None:
        raise SyncError(
            "device_forbidden",
            "This device is not registered to your account; register it via POST /api/v1/devices/.",
            status_code=403,
        )
    return device


def devices_for_user(*, user: Any):  # noqa: ANN201
    return Device.objects.filter(user_id=user.pk).order_by("created_at")
