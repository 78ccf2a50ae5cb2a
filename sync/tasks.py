from __future__ import annotations

from celery import shared_task

from .compaction import feed_compact as _feed_compact


@shared_task(acks_late=True)
def feed_compact() -> dict[str, int]:
    """Periodic: drop superseded feed rows and expired tombstones (idempotent)."""
    return _feed_compact()
