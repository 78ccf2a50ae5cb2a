"""Running a Celery task by name, with or without a Celery app.

A project that set up Celery (Celery's Django guide: an app made from the
Django settings, a worker) gets its tasks queued. One that has not would
otherwise hand them to Celery's fallback app, which sends to a broker on
localhost that no worker reads: the task is lost. Without a configured app a
task runs here and now instead (as eager mode does), so a new project's
wake-ups work before it has a worker; `manage.py check` says so (sync.W103).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def celery_configured() -> bool:
    """Whether the current Celery app is one the project made."""
    from celery import current_app

    return current_app.main != "default" or bool(current_app.conf.broker_url)


def run_task(name: str, args: Sequence[Any] = (), *, countdown: float | None = None) -> Any:
    """Queue the task `name` (registered with the current app), or run it now
    when there is no Celery app to queue it with. Errors of the broker reach
    the caller; errors of a task run here are the task's result's."""
    from celery import current_app

    task = current_app.tasks[name]
    if not celery_configured():
        return task.apply(args=list(args))
    return task.apply_async(args=list(args), countdown=countdown)
