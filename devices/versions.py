"""App versions: how they compare, and what a platform's policy says of one
(docs/protocol.md, "Too old: drain first, then stop")."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from dataclasses import dataclass
from email.utils import format_datetime

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from devices.models import AppVersionPolicy

_VERSION = re.compile(r"^(\d{1,9})(?:\.(\d{1,9})){0,3}(?:[-+][0-9A-Za-z.+-]*)?$")


def version_key(text: str) -> tuple[int, ...] | None:
    """`2.10.1` → (2, 10, 1, 0); a suffix (`-beta.2`, `+45`) is ignored;
    None if it is not a version."""
    text = text.strip()
    if len(text) > 50 or not _VERSION.match(text):
        return None
    numbers = re.split(r"[-+]", text, maxsplit=1)[0].split(".")
    return tuple(int(n) for n in numbers) + (0,) * (4 - len(numbers))


def below(version: str, bound: str) -> bool:
    """Whether `version` is older than `bound` (a bound that is blank or not a
    version bounds nothing; the admin refuses those)."""
    ours, theirs = version_key(version), version_key(bound)
    return ours is not None and theirs is not None and ours < theirs


@dataclass(frozen=True)
class Verdict:
    """What a platform's policy says of an app version."""

    upgrade_required: bool = False
    minimum: str = ""
    deprecated_at: dt.datetime | None = None  # set when the version is deprecated
    sunset_at: dt.datetime | None = None
    upgrade_url: str = ""

    def headers(self) -> dict[str, str]:
        """RFC 9745 `Deprecation`, RFC 8594 `Sunset`, and a `Link` to the upgrade."""
        out: dict[str, str] = {}
        if self.deprecated_at is not None:
            out["Deprecation"] = f"@{int(self.deprecated_at.timestamp())}"
            if self.sunset_at is not None:
                out["Sunset"] = format_datetime(self.sunset_at.astimezone(dt.UTC), usegmt=True)
            if self.upgrade_url:
                out["Link"] = f'<{self.upgrade_url}>; rel="deprecation"; type="text/html"'
        return out


FINE = Verdict()

# Policies, read at most this often per process (a change in the admin is
# seen here at once, by other processes within this).
POLICY_FRESH_SECONDS = 5.0
_policies: tuple[float, dict[str, AppVersionPolicy]] = (0.0, {})
_lock = threading.Lock()


def _policy(platform: str) -> AppVersionPolicy | None:
    global _policies
    read_at, known = _policies
    if time.monotonic() - read_at >= POLICY_FRESH_SECONDS:
        known = {p.platform: p for p in AppVersionPolicy.objects.all()}
        with _lock:
            _policies = (time.monotonic(), known)
    return known.get(platform)


@receiver([post_save, post_delete], sender=AppVersionPolicy)
def _forget(**kwargs: object) -> None:
    global _policies
    with _lock:
        _policies = (0.0, {})


def verdict(platform: str, app_version: str) -> Verdict:
    """What the policy of `platform` says of `app_version` (blank: an app that
    did not say, which no policy stops)."""
    if not app_version:
        return FINE
    policy = _policy(platform)
    if policy is None:
        return FINE
    now = timezone.now()
    deprecated = bool(policy.deprecated_below) and below(app_version, policy.deprecated_below)
    sunset_passed = policy.sunset_at is not None and policy.sunset_at <= now
    required = below(app_version, policy.minimum_version) or (deprecated and sunset_passed)
    if not (required or deprecated):
        return FINE
    minimum = policy.minimum_version
    if deprecated and sunset_passed and (not minimum or below(minimum, policy.deprecated_below)):
        minimum = policy.deprecated_below
    return Verdict(
        upgrade_required=required,
        minimum=minimum,
        deprecated_at=(policy.deprecated_at or policy.updated_at) if deprecated else None,
        sunset_at=policy.sunset_at if deprecated else None,
        upgrade_url=policy.upgrade_url,
    )
