"""What every push sender shares (devices/push.py for FCM and the console,
devices/webpush.py for browsers): whom to send to, and how it went."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from django.utils import timezone

# Messages to one device replace each other while it is offline.
COLLAPSE_KEY = "sync"


@dataclass(frozen=True)
class Target:
    device_id: uuid.UUID
    token: str
    platform: str


@dataclass
class SendReport:
    """What happened to each device of one send."""

    sent: list[uuid.UUID] = field(default_factory=list)
    # The token is gone for good (app uninstalled, token rotated, another
    # sender's token, a browser unsubscribed): stop using it.
    unregistered: list[uuid.UUID] = field(default_factory=list)
    # Worth trying again later (quota, the push service unavailable or failing inside).
    temporary: list[uuid.UUID] = field(default_factory=list)
    # Refused for another reason (our credentials, a malformed message): logged.
    failed: list[uuid.UUID] = field(default_factory=list)
    # The longest Retry-After a push service asked for, in seconds.
    retry_after: float | None = None

    def merge(self, other: SendReport) -> None:
        self.sent += other.sent
        self.unregistered += other.unregistered
        self.temporary += other.temporary
        self.failed += other.failed
        if other.retry_after is not None:
            self.retry_after = max(self.retry_after or 0, other.retry_after)


def retry_after_seconds(raw: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) in seconds from now."""
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:  # an HTTP date
        return max(0.0, (parsedate_to_datetime(raw) - timezone.now()).total_seconds())
    except (TypeError, ValueError):
        return None
