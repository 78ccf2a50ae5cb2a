"""/metrics: Prometheus' text format, for those allowed to read it.

The counters are the engine's (sync.engine.metrics, which says what each
counts) and django-prometheus'; push outcomes are read from the cache, where
every Celery worker counts them (sync.notify.wakeups.counters).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, Metric

from sync.notify.wakeups import counters as push_counters
from syncbase.conf import sync_settings


class PushOutcomeCollector:
    """The push sender's cluster-wide outcome counts (`sync.notify.wakeups.counters`)."""

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
    token = sync_settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if (
        token
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), token.encode())
    ):
        return True
    allowed = sync_settings.METRICS_ALLOWED_IPS
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
