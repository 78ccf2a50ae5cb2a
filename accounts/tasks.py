from __future__ import annotations

from celery import shared_task

from .services import tokens_purge


@shared_task(acks_late=True, ignore_result=True)
def purge_expired_tokens() -> int:
    """Periodic: delete tokens that expired a while ago (idempotent)."""
    return tokens_purge()
