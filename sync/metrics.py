"""Prometheus metrics, served at /metrics.

- Requests and database queries: django-prometheus (its middleware and its
  wrapper of the database backend, see `config/settings.py`).
- The sync engine's own counters below, incremented where the thing happens:
  pull pages and the changes they carry (`sync.views.PullView`), pushed
  mutations by result status (`sync.services.push_apply`), conflicts opened,
  resolved, superseded and dismissed (`sync.batch`, `sync.services`), once
  their transaction has committed.
- Push notification outcomes: counted by `devices.wakeups` where each send
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

import hmac
import ipaddress
import os
from collections import Counter as Tally
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, Metric

from devices.wakeups import counters as push_counters

from .choices import Status


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


class PushOutcomeCollector:
    """The push sender's cluster-wide outcome counts (`devices.wakeups.counters`)."""

    NAME = "sync_push_notifications"
    HELP = "Push notifications by outcome (sent, unregistered, retrying, failed, coalesced)."

    def describe(self) -> Iterator[Metric]:
        # Without this, registering would call collect() (a cache read) at import.
        yield CounterMetricFamily(self.NAME, self.HELP, labels=["outcome"])

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.NAME, self.HELP, labels=["outcome"])
        for outcome, n in push_counters().items():
            family.add_metric([outcome], n)
        yield family


_push_registry = CollectorRegistry(auto_describe=False)
_push_registry.register(PushOutcomeCollector())


def _process_registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every process's files added up (counters and histograms are summed).
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_allowed(request: HttpRequest) -> bool:
    """Who may read /metrics: a bearer of METRICS_TOKEN, an address in
    METRICS_ALLOWED_IPS, or anybody in DEBUG. Closed when none is configured.

    The address is the connection's (REMOTE_ADDR), never X-Forwarded-For: a
    scraper talks to the server directly, and a client may write that header.
    """
    if settings.DEBUG:
        return True
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if (
        token
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), token.encode())
    ):
        return True
    allowed = settings.METRICS_ALLOWED_IPS
    if allowed:
        try:
            address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(address in network for network in allowed)
    return False


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return JsonResponse(
            {
                "code": "permission_denied",
                "detail": "Metrics need the METRICS_TOKEN bearer token or an allowed address.",
            },
            status=403,
        )
    body = generate_latest(_process_registry()) + generate_latest(_push_registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


__all__ = [
    "ConflictEvent",
    "conflicts_counted",
    "metrics_allowed",
    "metrics_view",
    "pull_counted",
    "push_counted",
]
