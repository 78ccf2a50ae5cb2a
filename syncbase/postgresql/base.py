"""django-prometheus' PostgreSQL backend (query counts and durations on
/metrics), with connection health checks at most once per
`CONN_HEALTH_CHECK_SECONDS`.

Django's CONN_HEALTH_CHECKS sends `SELECT 1` before the first query of every
request that finds a connection kept from an earlier one. That catches what
happens to idle connections (PostgreSQL restarted overnight, an idle timeout
of a proxy or firewall), but under load it is one more round trip on every
request: 0.3-0.4 ms of a worker's CPU on an incremental pull that takes 2 ms
in all. Here a connection that was checked (or opened) less than
CONN_HEALTH_CHECK_SECONDS ago is not checked again, so a busy worker checks
about once a period and an idle one still checks before its next request. A
connection that breaks within a period of its last check fails one request,
as with health checks off, and Django then closes it at the request's end
(it does that for any connection on which an error occurred). 0 checks
before every request, as Django does.
"""

from __future__ import annotations

import time

from django_prometheus.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    checked_at = float("-inf")
    health_check_done: bool  # set by Django's wrapper

    def connect(self) -> None:
        super().connect()
        self.checked_at = time.monotonic()  # new connections are healthy

    def close_if_health_check_failed(self) -> None:
        if self.health_check_enabled and not self.health_check_done and self.connection:
            every = self.settings_dict.get("CONN_HEALTH_CHECK_SECONDS", 0)
            now = time.monotonic()
            if now - self.checked_at < every:
                self.health_check_done = True  # checked recently enough
                return
            self.checked_at = now
        super().close_if_health_check_failed()
