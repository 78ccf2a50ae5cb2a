"""Every Celery task of the package: thin, idempotent, `acks_late` (a task
killed mid-way is delivered again and finds its work where it left it).

Names are explicit and never change: messages queued by an older release are
still understood after a deploy (they were named for the modules that first
defined them). Celery's `autodiscover_tasks()` finds this module; the app's
`ready()` imports it too, so that a process without autodiscovery can send.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready

from sync.accounts.services import tokens_purge
from sync.engine import blobs
from sync.engine.compaction import feed_compact as _feed_compact
from sync.notify import wakeups


@shared_task(name="sync.tasks.feed_compact", acks_late=True)
def feed_compact() -> dict[str, int]:
    """Periodic: drop superseded feed rows and expired tombstones."""
    return _feed_compact()


@shared_task(name="accounts.tasks.purge_expired_tokens", acks_late=True, ignore_result=True)
def purge_expired_tokens() -> int:
    """Periodic: delete tokens that expired a while ago."""
    return tokens_purge()


@shared_task(name=wakeups.FANOUT_TASK, acks_late=True, ignore_result=True)
def push_fanout(outbox_id: int) -> dict[str, Any] | None:
    """Wake the devices of one committed write (a `PushOutbox` row)."""
    stats = wakeups.wakeups_send(outbox_id)
    return None if stats is None else vars(stats)


@shared_task(name=wakeups.FLUSH_TASK, acks_late=True, ignore_result=True)
def push_flush(device_ids: list[str]) -> int:
    """At the end of a coalescing window: wake the devices changes left pending."""
    return len(wakeups.wakeups_flush(device_ids).sent)


@shared_task(name=wakeups.RETRY_TASK, acks_late=True, ignore_result=True)
def push_retry(device_ids: list[str], data: dict[str, str], attempt: int) -> int:
    """Try again the devices FCM failed for a temporary reason."""
    return len(wakeups.wakeups_retry(device_ids, data, attempt).sent)


@shared_task(name="devices.tasks.push_outbox_sweep", acks_late=True, ignore_result=True)
def push_outbox_sweep() -> int:
    """Periodic: send what a down broker or a dead worker left in the outbox."""
    return wakeups.outbox_sweep()


@shared_task(name="sync.tasks.blob_thumbnail", acks_late=True, ignore_result=True)
def blob_thumbnail(sha256: str) -> str | None:
    """A thumbnail of an image just uploaded (a blob of its own)."""
    return blobs.thumbnail_make(sha256)


@shared_task(name="sync.tasks.blobs_collect", acks_late=True)
def blobs_collect() -> dict[str, int]:
    """Periodic: delete files nothing refers to any more, abort stale uploads."""
    return vars(blobs.blobs_collect())


@worker_ready.connect
def _listen_for_captured(**_: Any) -> None:
    """A worker sends captured writes' wake-ups as they commit (PostgreSQL)."""
    wakeups.listen_for_captured()
