"""Waking devices when something in their scope changed (push-to-pull).

Every synced write records a `PushOutbox` row in its own transaction
(`wakeup_record`) and, after commit, hands its id to a Celery task. The task
(`wakeups_send`) finds the members of the changed channels and their devices
with an active push token, minus the device that made the change, coalesces,
and sends through the push backend (`devices.push`).

Coalescing, leading and trailing edge, per device (PUSH_COALESCE_SECONDS, kept
in the cache: Redis in production). The first change for a device in a quiet
spell is sent at once and opens a window; changes within the window only raise
the device's pending mark, and the first of them schedules a flush at the
window's end. The flush sends one message carrying the newest pending change
and opens the next window, so a steady stream of writes costs one message per
window. An isolated write wakes devices as soon as the worker has it; a burst
costs at most two messages per device and window, and its last write is always
covered.

Nothing here may fail a sync request: enqueueing happens after commit, and if
the broker is down the outbox row stays for the periodic sweep.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from devices.models import Device, PushOutbox
from devices.push import SendReport, Target, backend
from sync.channels import members_filter
from sync.notify import live
from syncbase.conf import sync_settings
from syncbase.listen import Listener
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
    transaction.on_commit(lambda: committed(row))


def committed(row: PushOutbox) -> None:
    live.published(row.channels)  # live pulls waiting in this process
    enqueue(row.pk)


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
    live.published(None)  # channels unknown here: every live pull looks
    ids = list(
        PushOutbox.objects.filter(captured=True, claimed_until__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)[:1000]
    )
    return sum(enqueue(outbox_id) for outbox_id in ids)


CAPTURED_CHANNEL = "sync_captured"  # NOTIFYed with the id of a captured write's wake-up
_captured_listener: Listener | None = None


def listen_for_captured() -> Listener | None:
    """In a Celery worker on PostgreSQL: hand the wake-ups the database records
    for captured writes (raw SQL, other processes) to the fan-out as they
    commit, rather than at the next outbox sweep. Once per process; several
    workers may each hear one: the fan-out's claim lets only one send it."""
    global _captured_listener
    if _captured_listener is None and connection.vendor == "postgresql":
        _captured_listener = Listener(
            {CAPTURED_CHANNEL: lambda payload: enqueue(int(payload))},
            on_connect=enqueue_captured,  # what committed while nobody listened
            using=sync_settings.LISTEN_DATABASE,
        )
        _captured_listener.start()
    return _captured_listener


# --- the worker's side ------------------------------------------------------------------------


@dataclass
class FanoutStats:
    devices: int = 0  # to wake for this write
    sent: int = 0  # of which at once (the leading edge: their window was closed)
    scheduled: int = 0  # held for a flush this write scheduled (the first held in its window)


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
    now_, later = _coalesce([t.device_id for t in targets], cursor=row.seq)
    for cursor, devices in _grouped(now_).items():
        chosen = set(devices)
        _send([t for t in targets if t.device_id in chosen], _sync_message(cursor))
    for delay, devices in _flushes(later).items():
        run_task(FLUSH_TASK, [[str(d) for d in devices]], countdown=delay)
    if (
        row.conflict_id
        and row.conflict_device_id
        and row.conflict_device_id != row.origin_device_id
    ):
        _conflict_resolved(row.conflict_id, row.conflict_device_id)
    PushOutbox.objects.filter(pk=outbox_id).delete()
    _count(Outcome.COALESCED, len(targets) - len(now_))
    return FanoutStats(devices=len(targets), sent=len(now_), scheduled=len(later))


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
    """At a window's end: one message to each device with changes pending,
    which opens its next window (changes from here on are held for that one)."""
    pending = _marks.flush([uuid.UUID(d) for d in device_ids], window=_window())
    if not pending:
        return SendReport()
    report = SendReport()
    for cursor, devices in _grouped(pending).items():
        report.merge(_send(_pushable(pk__in=devices), _sync_message(cursor)))
    return report


def _sync_message(cursor: int) -> dict[str, str]:
    return {"type": SYNC, "cursor": str(cursor)}


def _grouped(cursors: dict[uuid.UUID, int]) -> dict[int, list[uuid.UUID]]:
    """Devices by the cursor their message carries: one send per cursor."""
    groups: dict[int, list[uuid.UUID]] = {}
    for device, cursor in cursors.items():
        groups.setdefault(cursor, []).append(device)
    return groups


# Flushes due within this much of each other are one task.
FLUSH_GRAIN_SECONDS = 0.1


def _flushes(due: dict[uuid.UUID, float]) -> dict[float, list[uuid.UUID]]:
    """Devices by when their window ends (seconds from now, rounded up to the
    grain): a fan-out to a team whose windows opened together is one task."""
    groups: dict[float, list[uuid.UUID]] = {}
    for device, seconds in due.items():
        slot = math.ceil(max(seconds, 0.0) / FLUSH_GRAIN_SECONDS) * FLUSH_GRAIN_SECONDS
        groups.setdefault(round(slot, 3), []).append(device)
    return groups


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


def _coalesce(
    device_ids: Sequence[uuid.UUID], *, cursor: int
) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, float]]:
    """A change at `cursor` for these devices: returns those to wake now (their
    window was closed; this opened it) with the cursor to send, and those whose
    flush is to be scheduled (the first change held in their open window) with
    the seconds until their window ends. The others' flush is scheduled already."""
    return _marks.coalesce(device_ids, cursor=cursor, window=_window())


def _window_key(device: uuid.UUID) -> str:
    return f"push:window:{device}"


def _pending_key(device: uuid.UUID) -> str:
    return f"push:pending:{device}"


# A pending mark outlives its window: the flush that takes it may run late.
PENDING_WINDOWS = 3


class _CacheMarks:
    """Coalescing marks in Django's cache (local memory in the embedded default,
    one process: not atomic across processes, which only Redis needs to be)."""

    def coalesce(
        self, device_ids: Sequence[uuid.UUID], *, cursor: int, window: int
    ) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, float]]:
        now, later = {}, {}
        clock = time.time()
        for device in device_ids:
            # The window's key holds when it ends, for the flush's countdown.
            if cache.add(_window_key(device), clock + window, window):
                left = cache.get(_pending_key(device))  # a flush that never ran
                cache.delete(_pending_key(device))
                now[device] = max(cursor, int(left or 0))
                continue
            held = cache.get(_pending_key(device))
            cache.set(_pending_key(device), max(cursor, int(held or 0)), window * PENDING_WINDOWS)
            if held is None:
                ends = cache.get(_window_key(device))
                later[device] = float(ends) - clock if ends is not None else 0.0
        return now, later

    def flush(self, device_ids: Sequence[uuid.UUID], *, window: int) -> dict[uuid.UUID, int]:
        keys = {_pending_key(d): d for d in device_ids}
        found = cache.get_many(list(keys))
        cache.delete_many(list(found))
        taken = {keys[k]: int(v) for k, v in found.items()}
        ends = time.time() + window
        cache.set_many({_window_key(d): ends for d in taken}, timeout=window)
        return taken


# KEYS: the device's window and pending mark; ARGV: the change's cursor, the
# window and the pending mark's lifetime in milliseconds. Returns {1, cursor}
# to send now, {2, ms left in the window} to schedule the flush, {0, 0} when
# the change joins a flush already scheduled. Atomic: fan-outs run on several
# workers at once.
_COALESCE = """
local cursor = tonumber(ARGV[1])
if redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[2]) then
  local left = tonumber(redis.call('GETDEL', KEYS[2]) or '0')
  if left > cursor then cursor = left end
  return {1, cursor}
end
local held = redis.call('GET', KEYS[2])
if held and tonumber(held) > cursor then cursor = tonumber(held) end
redis.call('SET', KEYS[2], cursor, 'PX', ARGV[3])
if held then return {0, 0} end
return {2, redis.call('PTTL', KEYS[1])}
"""

# KEYS: the device's window and pending mark; ARGV: the window in ms. Takes the
# pending mark (GETDEL: two flushes cannot both send it) and, if there was one,
# opens the next window with the message this flush sends.
_FLUSH = """
local held = redis.call('GETDEL', KEYS[2])
if held then redis.call('SET', KEYS[1], 1, 'PX', ARGV[1]) end
return held
"""


class _RedisMarks:
    """The same on Redis: one script per device, pipelined, one round trip per
    fan-out of thousands of devices."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def coalesce(
        self, device_ids: Sequence[uuid.UUID], *, cursor: int, window: int
    ) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, float]]:
        ms = window * 1000
        pipe = self.client.pipeline(transaction=False)
        for device in device_ids:
            pipe.eval(_COALESCE, 2, *self._keys(device), cursor, ms, ms * PENDING_WINDOWS)
        now, later = {}, {}
        for device, (kind, value) in zip(device_ids, pipe.execute(), strict=True):
            if kind == 1:
                now[device] = int(value)
            elif kind == 2:
                later[device] = max(int(value), 0) / 1000
        return now, later

    def flush(self, device_ids: Sequence[uuid.UUID], *, window: int) -> dict[uuid.UUID, int]:
        pipe = self.client.pipeline(transaction=False)
        for device in device_ids:
            pipe.eval(_FLUSH, 2, *self._keys(device), window * 1000)
        return {
            device: int(held)
            for device, held in zip(device_ids, pipe.execute(), strict=True)
            if held is not None
        }

    @staticmethod
    def _keys(device: uuid.UUID) -> tuple[str, str]:
        return cache.make_key(_window_key(device)), cache.make_key(_pending_key(device))


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
