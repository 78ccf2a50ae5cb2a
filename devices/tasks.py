"""Celery tasks of push notifications: thin, idempotent, acks_late (a task
killed mid-way is delivered again and its outbox row still says what to do)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from . import wakeups


@shared_task(acks_late=True, ignore_result=True)
def push_fanout(outbox_id: int) -> dict[str, Any] | None:
    """Wake the devices of one committed write (a `PushOutbox` row)."""
    stats = wakeups.wakeups_send(outbox_id)
    return None if stats is None else vars(stats)


@shared_task(acks_late=True, ignore_result=True)
def push_flush(device_ids: list[str]) -> int:
    """At the end of a coalescing window: wake the devices changes left pending."""
    return len(wakeups.wakeups_flush(device_ids).sent)


@shared_task(acks_late=True, ignore_result=True)
def push_retry(device_ids: list[str], data: dict[str, str], attempt: int) -> int:
    """Try again the devices FCM failed for a temporary reason."""
    return len(wakeups.wakeups_retry(device_ids, data, attempt).sent)


@shared_task(acks_late=True, ignore_result=True)
def push_outbox_sweep() -> int:
    """Periodic: send what a down broker or a dead worker left in the outbox."""
    return wakeups.outbox_sweep()
