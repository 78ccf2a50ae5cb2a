from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from devices.models import Device
from devices.webpush import normalized_token
from syncbase.conf import sync_settings
from syncbase.errors import SyncError

_FIELDS = ("platform", "name", "app_version", "push_token")


def device_register(
    *, user: Any, device_id: uuid.UUID, data: dict[str, Any]
) -> tuple[Device, bool]:
    """Idempotent upsert of the caller's device; returns (device, created)."""
    now = timezone.now()
    data = _checked(data)
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
    limit = sync_settings.SYNC_MAX_DEVICES_PER_USER
    get_user_model().objects.select_for_update().only("pk").get(pk=user.pk)
    if Device.objects.filter(user_id=user.pk).count() >= limit:
        raise SyncError(
            "too_many_devices",
            f"This account already has {limit} devices, the most it may have; delete one "
            "it no longer uses (DELETE /api/v1/devices/<id>/) and register again.",
            status_code=409,
        )


def _checked(data: dict[str, Any]) -> dict[str, Any]:
    """A Web Push subscription registered as push_token is checked and stored
    in one form (devices/webpush.py); an FCM token is kept as given."""
    token = data.get("push_token")
    if not token:
        return data
    return {**data, "push_token": normalized_token(token)}


def device_update(*, device: Device, data: dict[str, Any]) -> Device:
    data = _checked(data)
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
