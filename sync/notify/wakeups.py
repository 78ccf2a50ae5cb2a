"""Waking devices when something in their scope changed (push-to-pull).

Every synced write records a `PushOutbox` row in its own transaction
(`wakeup_record`) and, after commit, hands its id to a Celery task. The task
(`wakeups_send`) finds the members of the changed channels and their devices
with an active push token, minus the device that made the change, coalesces,
and sends through the push backend (`devices.push`).

Coalescing: at most one message per device per window (PUSH_COALESCE_SECONDS),
kept in the cache (Redis in production). The first change for a device opens
its window with an atomic SET NX EX and schedules a flush at the window's end;
every change in the window only updates the device's pending mark. The flush
sends one message carrying the newest change, so a burst of writes becomes one
message per device, and the last write of the burst is always covered.

Nothing here may fail a sync request: enqueueing happens after commit, and if
the broker is down the outbox row stays for the periodic sweep.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from devices.models import Device, PushOutbox
from devices.push import SendReport, Target, backend
from sync.channels import members_filter
from syncbase.conf import sync_settings
from syncbase.tasks import run_task

logger = logging.getLogger(__name__)

# How long a task owns an outbox row before the sweep hands it to another.
CLAIM = dt.timedelta(minutes=2)
# Rows younger than this are left to their own after-commit task by the sweep.
SWEEP_GRACE = dt.timedelta(seconds=30)
# Retry backoff of temporary FCM failures: BASE * 2**attempt, capped, with jitter.
RETRY_BASE_SECONDS = 2.0
RETRY_CAP_SECONDS = 300.0

SYNC = "sync"
CONFLICT_RESOLVED = "conflict_resolved"

# The tasks of sync.tasks, run by name (syncbase.tasks) rather than imported:
# they call this module.
FANOUT_TASK = "devices.tasks.push_fanout"
FLUSH_TASK = "devices.tasks.push_flush"
RETRY_TASK = "devices.tasks.push_retry"


class Outcome:
    SENT = "sent"
    UNREGISTERED = "unregistered"
    RETRYING = "retrying"
    FAILED = "failed"
    COALESCED = "coalesced"


# --- the write path's side: record, and enqueue after commit ------------------------------


def wakeup_record(
    *,
    channels: Iterable[str],
    origin_device_id: uuid.UUID | None,
    seq: int,
    conflict_id: uuid.UUID | None = None,
    conflict_device_id: uuid.UUID | None = None,
) -> None:
    """Record devices to wake, in the caller's transaction; send after it commits."""
    row = PushOutbox.objects.create(
        channels=sorted(set(channels)),
        origin_device_id=origin_device_id,
        seq=seq,
        conflict_id=conflict_id,
        conflict_device_id=conflict_device_id,
    )
    # Ids only, and only once committed: a rolled-back write wakes nobody.
    transaction.on_commit(lambda: enqueue(row.pk))


# While the broker looks down, this process stops trying to enqueue (each try
# costs a connection timeout inside a sync request); the sweep catches up.
BROKER_BACKOFF_SECONDS = 15.0
_broker_down_until = 0.0


def enqueue(outbox_id: int) -> bool:
    """Hand an outbox row to the fan-out task; False if it is left to the sweep."""
    global _broker_down_until
    if time.monotonic() < _broker_down_until:
        return False
    # The write has committed and the sync request must succeed whatever
    # happens here: on any failure the outbox row stays for the sweep.
    try:
        run_task(FANOUT_TASK, [outbox_id])
    except (OperationalError, OSError):
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
        logger.warning("Broker unreachable; wake-up #%s left to the sweep", outbox_id)
        return False
    except Exception:
        # Eager mode (the embedded default) runs the task right here.
        logger.exception("Wake-up #%s failed; left to the sweep", outbox_id)
        return False
    return True


def enqueue_captured() -> int:
    """Hand the wake-ups the database recorded for captured writes
    (sync.engine.capture) to the fan-out task; returns how many."""
    ids = list(
        PushOutbox.objects.filter(captured=True, claimed_until__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)[:1000]
    )
    return sum(enqueue(outbox_id) for outbox_id in ids)


# --- the worker's side ------------------------------------------------------------------------


@dataclass
class FanoutStats:
    devices: int = 0  # woken by this write
    scheduled: int = 0  # of which opened a window (the others were in one already)


def wakeups_send(outbox_id: int) -> FanoutStats | None:
    """Schedule one outbox row's wake-ups; None when another task owns it or it is done."""
    now = timezone.now()
    claimed = (
        PushOutbox.objects.filter(pk=outbox_id)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + CLAIM)
    )
    if not claimed:
        return None  # a re-delivered or duplicate task: the first one has it
    row = PushOutbox.objects.get(pk=outbox_id)
    targets = _targets(row)
    opened = _coalesce([t.device_id for t in targets], cursor=row.seq)
    if opened:
        run_task(FLUSH_TASK, [[str(d) for d in opened]], countdown=_window())
    if (
        row.conflict_id
        and row.conflict_device_id
        and row.conflict_device_id != row.origin_device_id
    ):
        _conflict_resolved(row.conflict_id, row.conflict_device_id)
    PushOutbox.objects.filter(pk=outbox_id).delete()
    _count(Outcome.COALESCED, len(targets) - len(opened))
    return FanoutStats(devices=len(targets), scheduled=len(opened))


def _pushable(**where: Any) -> list[Target]:
    """Devices a message can reach (an active push token), among those asked
    for: the one home of that rule, one query."""
    devices = Device.objects.filter(push_active=True, **where).exclude(push_token="")
    return [
        Target(device_id, token, platform)
        for device_id, token, platform in devices.values_list("id", "push_token", "platform")
    ]


def _targets(row: PushOutbox) -> list[Target]:
    """The devices to wake: one query, whatever the number of members."""
    members = Device.objects.filter(members_filter(row.channels), user__is_active=True)
    if row.origin_device_id is not None:
        members = members.exclude(pk=row.origin_device_id)
    return _pushable(id__in=members.values("pk"))


def wakeups_flush(device_ids: Sequence[str]) -> SendReport:
    """At a window's end: one message to each device with changes pending."""
    ids = [uuid.UUID(d) for d in device_ids]
    # Close the windows first: a change landing from here on opens a new one
    # and schedules its own flush, so none is left pending without one.
    _marks.delete([f"push:window:{d}" for d in ids])
    pending = _marks.take({f"push:pending:{d}": d for d in ids})
    if not pending:
        return SendReport()
    targets = _pushable(pk__in=pending)
    return _send(targets, {"type": SYNC, "cursor": str(max(pending.values()))})


def wakeups_retry(device_ids: Sequence[str], data: dict[str, str], attempt: int) -> SendReport:
    """Send again to devices whose last try failed for a temporary reason."""
    targets = _pushable(pk__in=[uuid.UUID(d) for d in device_ids])
    return _send(targets, data, attempt=attempt)


def outbox_sweep() -> int:
    """Hand rows that no task took (broker down at commit) or whose task died to
    the fan-out task again; returns how many."""
    global _broker_down_until
    _broker_down_until = 0.0  # the sweep itself came through the broker: it is back
    now = timezone.now()
    stale = PushOutbox.objects.filter(
        Q(claimed_until__isnull=True, created_at__lt=now - SWEEP_GRACE)
        | Q(claimed_until__isnull=True, captured=True)
        | Q(claimed_until__lt=now)
    ).values_list("pk", flat=True)[:1000]
    ids = list(stale)
    if ids:
        PushOutbox.objects.filter(pk__in=ids).update(attempts=F("attempts") + 1)
    return sum(enqueue(outbox_id) for outbox_id in ids)


def _conflict_resolved(conflict_id: uuid.UUID, device_id: uuid.UUID) -> None:
    _send(_pushable(pk=device_id), {"type": CONFLICT_RESOLVED, "conflict_id": str(conflict_id)})


# --- coalescing ---------------------------------------------------------------------------


def _window() -> int:
    return max(1, int(sync_settings.PUSH_COALESCE_SECONDS))


def _coalesce(device_ids: Sequence[uuid.UUID], *, cursor: int) -> list[uuid.UUID]:
    """Mark the devices pending at `cursor`; returns those whose window this
    opened (their flush is to be scheduled)."""
    window = _window()
    # Pending first, then the window: a flush that closes the window in between
    # has either taken this mark or leaves it to the flush this opens.
    _marks.set_max({f"push:pending:{d}": cursor for d in device_ids}, window * 3)
    opened = _marks.set_nx([f"push:window:{d}" for d in device_ids], window)
    return [d for d, ok in zip(device_ids, opened, strict=True) if ok]


class _CacheMarks:
    """Coalescing marks in Django's cache (local memory in the embedded default)."""

    def set_nx(self, keys: Sequence[str], timeout: int) -> list[bool]:
        return [cache.add(key, 1, timeout) for key in keys]

    def set_max(self, values: dict[str, int], timeout: int) -> None:
        """Set each key to the larger of its value and the given one."""
        found = cache.get_many(list(values))
        cache.set_many(
            {k: max(v, int(found.get(k, v))) for k, v in values.items()}, timeout=timeout
        )

    def take(self, keys: dict[str, uuid.UUID]) -> dict[uuid.UUID, int]:
        found = cache.get_many(list(keys))
        cache.delete_many(list(found))
        return {keys[k]: int(v) for k, v in found.items()}

    def delete(self, keys: Sequence[str]) -> None:
        cache.delete_many(list(keys))


# Raise a key to ARGV[1] unless it already holds more, with a fresh expiry:
# concurrent fan-outs may finish out of order, and the newest change must win.
_SET_MAX = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local value = tonumber(ARGV[1])
if value > current then current = value end
redis.call('SET', KEYS[1], current, 'EX', ARGV[2])
return current
"""


class _RedisMarks(_CacheMarks):
    """The same on Redis, pipelined: one round trip per fan-out of thousands of
    devices, and atomic GETDEL so two flushes cannot both send."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def set_nx(self, keys: Sequence[str], timeout: int) -> list[bool]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.set(cache.make_key(key), 1, nx=True, ex=timeout)
        return [bool(ok) for ok in pipe.execute()]

    def set_max(self, values: dict[str, int], timeout: int) -> None:
        # A sorted set per device would do too; one Lua call keeps it one key.
        pipe = self.client.pipeline(transaction=False)
        for key, value in values.items():
            pipe.eval(_SET_MAX, 1, cache.make_key(key), value, timeout)
        pipe.execute()

    def take(self, keys: dict[str, uuid.UUID]) -> dict[uuid.UUID, int]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.getdel(cache.make_key(key))
        return {
            device: int(value)
            for device, value in zip(keys.values(), pipe.execute(), strict=True)
            if value is not None
        }

    def delete(self, keys: Sequence[str]) -> None:
        if keys:
            self.client.delete(*[cache.make_key(k) for k in keys])


class _Marks:
    """Picks the Redis implementation when the cache is django-redis."""

    def __getattr__(self, name: str) -> Any:
        get_client = getattr(getattr(cache, "client", None), "get_client", None)
        impl = _RedisMarks(get_client(write=True)) if get_client else _CacheMarks()
        return getattr(impl, name)


_marks = _Marks()


# --- sending and recording ------------------------------------------------------------------


def _send(targets: Sequence[Target], data: dict[str, str], *, attempt: int = 1) -> SendReport:
    if not targets:
        return SendReport()
    report = backend().send(targets, data)
    now = timezone.now()
    if report.sent:
        Device.objects.filter(pk__in=report.sent).update(
            last_push_at=now, last_push_outcome=Outcome.SENT
        )
    if report.unregistered:
        # Gone for good: stop sending to it until the app registers a new token.
        Device.objects.filter(pk__in=report.unregistered).update(
            push_active=False, last_push_at=now, last_push_outcome=Outcome.UNREGISTERED
        )
    retry = report.temporary if attempt < sync_settings.PUSH_MAX_ATTEMPTS else []
    given_up = report.failed + [d for d in report.temporary if d not in retry]
    if retry:
        Device.objects.filter(pk__in=retry).update(
            last_push_at=now, last_push_outcome=Outcome.RETRYING
        )
        run_task(
            RETRY_TASK,
            [[str(d) for d in retry], data, attempt + 1],
            countdown=retry_delay(attempt, report.retry_after),
        )
    if given_up:
        Device.objects.filter(pk__in=given_up).update(
            last_push_at=now, last_push_outcome=Outcome.FAILED
        )
    _count(Outcome.SENT, len(report.sent))
    _count(Outcome.UNREGISTERED, len(report.unregistered))
    _count(Outcome.RETRYING, len(retry))
    _count(Outcome.FAILED, len(given_up))
    logger.info(
        "push %s: sent=%d unregistered=%d retrying=%d failed=%d",
        data.get("type"),
        len(report.sent),
        len(report.unregistered),
        len(retry),
        len(given_up),
    )
    return report


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never sooner than FCM's Retry-After."""
    backoff = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**attempt)
    jittered = random.uniform(backoff / 2, backoff)  # noqa: S311 - not cryptographic
    return max(jittered, retry_after or 0.0)


def _count(outcome: str, n: int) -> None:
    """Count outcomes in the cache, which every worker and web process shares:
    the admin's device list and /metrics (`sync.engine.metrics`) read them there."""
    if n <= 0:
        return
    key = f"push:count:{outcome}"
    cache.add(key, 0, timeout=None)
    try:
        cache.incr(key, n)
    except ValueError:  # evicted between add and incr
        cache.set(key, n, timeout=None)


def counters() -> dict[str, int]:
    """How many messages ended each way since the cache was last emptied."""
    names = [
        Outcome.SENT,
        Outcome.UNREGISTERED,
        Outcome.RETRYING,
        Outcome.FAILED,
        Outcome.COALESCED,
    ]
    found = cache.get_many([f"push:count:{n}" for n in names])
    return {n: int(found.get(f"push:count:{n}", 0)) for n in names}
