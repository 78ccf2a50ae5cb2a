"""What every sync call says about the app making it (docs/protocol.md, "App
versions and schema changes"): its version, the schema it speaks, and its
outbox. Read once per request."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from devices.models import Device
from devices.versions import Verdict, verdict, version_key
from sync.engine.versions import AppSchema, parse_schema
from syncbase.errors import SyncError

APP_VERSION = "X-App-Version"
SCHEMA_VERSION = "X-Schema-Version"
OUTBOX_PENDING = "X-Outbox-Pending"
OUTBOX_OLDEST = "X-Outbox-Oldest-Age"


@dataclass(frozen=True)
class Handshake:
    app_version: str  # "" when the app did not say
    schema: AppSchema
    outbox_pending: int | None
    outbox_oldest_age: int | None  # seconds
    said: bool = True  # False: the app sent none of these headers

    def device_changes(self, device: Device) -> dict[str, Any]:
        """The device's fields to write for what this call reported (empty:
        nothing worth a write; the periodic `last_seen` write takes it all)."""
        changes: dict[str, Any] = {}
        if self.app_version and self.app_version != device.app_version:
            changes["app_version"] = self.app_version
            changes["schema_versions"] = self.schema.reported()
        if self.outbox_pending is not None and self.outbox_pending != device.outbox_pending:
            changes["outbox_pending"] = self.outbox_pending
            changes["outbox_oldest_at"] = self.oldest_at()
        return changes

    def report(self) -> dict[str, Any]:
        """Every field this call reported, for the periodic write."""
        out: dict[str, Any] = {"schema_versions": self.schema.reported()}
        if self.app_version:
            out["app_version"] = self.app_version
        if self.outbox_pending is not None:
            out["outbox_pending"] = self.outbox_pending
            out["outbox_oldest_at"] = self.oldest_at()
        return out

    def oldest_at(self) -> dt.datetime | None:
        if not self.outbox_pending or self.outbox_oldest_age is None:
            return None
        return timezone.now() - dt.timedelta(seconds=self.outbox_oldest_age)


def handshake(request: Request) -> Handshake:
    raw = request._request
    found = getattr(raw, "sync_handshake", None)
    if found is None:
        found = _read(request)
        raw.sync_handshake = found  # type: ignore[attr-defined]
    return found


def _read(request: Request) -> Handshake:
    headers = request.headers
    app_version = (headers.get(APP_VERSION) or "").strip()
    if app_version and version_key(app_version) is None:
        raise SyncError(
            "bad_app_version",
            f"{APP_VERSION} must be a version such as 2.4.1 (numbers and dots, "
            "an optional -suffix), at most 50 characters.",
        )
    schema_header = headers.get(SCHEMA_VERSION)
    pending = _count(headers, OUTBOX_PENDING)
    return Handshake(
        app_version=app_version,
        schema=parse_schema(schema_header),
        outbox_pending=pending,
        outbox_oldest_age=_count(headers, OUTBOX_OLDEST),
        said=bool(app_version or schema_header or pending is not None),
    )


def _count(headers: Any, name: str) -> int | None:
    raw = headers.get(name)
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10):
        raise SyncError("bad_header", f"{name} must be a non-negative whole number.")
    return int(raw)


def reported(request: Request) -> Handshake | None:
    """The handshake, if the app said anything of itself (for `device_seen`)."""
    found = handshake(request)
    return found if found.said else None


def app_verdict(request: Request, device: Device) -> Verdict:
    """The platform's policy on the calling app's version (the header's, or
    the one the device registered with); worked out once per request (a pull
    asks before reading and again for its answer's headers)."""
    raw = request._request
    found = getattr(raw, "sync_verdict", None)
    if found is None:
        version = handshake(request).app_version or device.app_version
        found = verdict(device.platform, version)
        raw.sync_verdict = found  # type: ignore[attr-defined]
    return found


def refuse_if_too_old(found: Verdict, device: Device) -> None:
    """`426 upgrade_required` for a pull from an app below the minimum."""
    if not found.upgrade_required:
        return
    extra = {"minimum_version": found.minimum, "platform": device.platform}
    if found.upgrade_url:
        extra["upgrade_url"] = found.upgrade_url
    raise SyncError(
        "upgrade_required",
        f"This app version is no longer supported on {device.platform}: upgrade to "
        f"{found.minimum} or later. Your pending changes are still accepted: push them first.",
        status_code=426,
        extra=extra,
        headers={"Upgrade": f"{device.platform}-app/{found.minimum}", **found.headers()},
    )


def with_version_headers(response: Response, found: Verdict) -> Response:
    for name, value in found.headers().items():
        response[name] = value
    return response
