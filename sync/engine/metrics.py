"""The sync engine's Prometheus counters (served at /metrics by sync.api.metrics).

- Requests and database queries: django-prometheus (its middleware and its
  wrapper of the database backend, see `config/settings.py`).
- The sync engine's own counters below, incremented where the thing happens:
  pull pages and the changes they carry (`sync.api.views.PullView`), pushed
  mutations by result status (`sync.engine.push.push_apply`), conflicts opened,
  resolved, superseded and dismissed (`sync.engine.batch`, `sync.engine.write`), once
  their transaction has committed.
- Push notification outcomes: counted by `sync.notify.wakeups` where each send
  ends, in the cache (Redis), and exposed here as counters. They happen in
  Celery workers, which are other processes and often other hosts than the
  web server that is scraped; the cache is the one place every worker and
  every web process shares, so the counts are the cluster's whatever the
  deployment, with nothing to scrape on the workers. They start again from
  zero if the cache is flushed, which Prometheus' `rate()` and `increase()`
  treat as a counter reset.

Several gunicorn workers: each process counts in its own memory, and a
scrape reaches one of them. With `PROMETHEUS_MULTIPROC_DIR` set (an empty
directory, in the environment before the server starts) prometheus_client
keeps each process's counters in files there and a scrape adds them all up;
`config/gunicorn.conf.py` empties it at start-up. See the README.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from django.db import transaction
from prometheus_client import Counter, Gauge

from sync.choices import Status


class ConflictEvent:
    OPENED = "opened"
    RESOLVED = "resolved"
    SUPERSEDED = "superseded"
    DISMISSED = "dismissed"

    ALL = (OPENED, RESOLVED, SUPERSEDED, DISMISSED)


PULL_PAGES = Counter("sync_pull_pages", "Pull pages served to devices.")
PULL_CHANGES = Counter("sync_pull_changes", "Changes sent to devices in pull pages.")
PUSH_MUTATIONS = Counter(
    "sync_push_mutations", "Mutations pushed by devices, by result status.", ["status"]
)
CONFLICTS = Counter(
    "sync_conflicts", "Conflicts opened, resolved, superseded and dismissed.", ["event"]
)
# Live pulls waiting for a change now (sync.api.live): in several processes,
# the sum over the live ones.
LIVE_WAITING = Gauge(
    "sync_live_pulls_waiting", "Live pulls waiting for a change.", multiprocess_mode="livesum"
)
# Every label value from the start, so a rate is 0 rather than absent.
for _status in Status.values:
    PUSH_MUTATIONS.labels(_status)
for _event in ConflictEvent.ALL:
    CONFLICTS.labels(_event)


def pull_counted(*, changes: int) -> None:
    PULL_PAGES.inc()
    PULL_CHANGES.inc(changes)


def push_counted(statuses: Iterable[str]) -> None:
    for status, n in Tally(statuses).items():
        PUSH_MUTATIONS.labels(status).inc(n)


def conflicts_counted(event: str, n: int = 1) -> None:
    """Count `n` conflict events once the current transaction commits (a
    rolled-back batch, e.g. one replayed mutation by mutation, counts nothing)."""
    if n > 0:
        transaction.on_commit(lambda: CONFLICTS.labels(event).inc(n))
