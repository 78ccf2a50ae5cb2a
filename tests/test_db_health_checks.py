"""Health checks of kept database connections (syncbase/postgresql/base.py): at
most once per CONN_HEALTH_CHECK_SECONDS, and still before the first request
after a connection sat idle longer than that."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from django.db import close_old_connections, connection
from rest_framework.settings import api_settings

from tests.conftest import make_client
from tests.factories import UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

MODELS = "/api/v1/sync/models/"


@pytest.fixture
def checks(monkeypatch: Any) -> list[bool]:
    """Every health check the connection makes, with its outcome."""
    made: list[bool] = []
    is_usable = connection.is_usable

    def counted() -> bool:
        usable = is_usable()
        made.append(usable)
        return usable

    monkeypatch.setattr(connection, "is_usable", counted)
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECK_SECONDS", 0.5)
    monkeypatch.setitem(api_settings.DEFAULT_THROTTLE_RATES, "user", "100000/min")
    connection.close()  # the next request opens one with these settings
    return made


def get(client: Any) -> int:
    """A request as a server handles it: Django's test client skips the
    connection upkeep that runs when a request starts and ends."""
    close_old_connections()
    status = client.get(MODELS).status_code
    close_old_connections()
    return status


def terminate(pid: int) -> None:
    params = connection.get_connection_params()
    with psycopg.connect(
        **{k: params[k] for k in ("host", "port", "user", "dbname") if k in params},
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_busy_connection_is_checked_at_most_once_per_period(checks):
    client = make_client(UserFactory())
    started = time.monotonic()
    served = 0
    while time.monotonic() - started < 1.2:
        assert get(client) == 200
        served += 1
    assert served > 10
    # A check before every request would be `served` checks; one per 0.5 s
    # period of 1.2 s is at most three (the connection itself was new).
    assert 1 <= len(checks) <= 3
    assert all(checks)


def test_connection_dropped_while_idle_is_replaced_before_the_next_request(checks):
    client = make_client(UserFactory())
    assert get(client) == 200
    dropped = connection.connection.info.backend_pid
    terminate(dropped)
    time.sleep(0.6)  # idle for longer than the period
    assert get(client) == 200
    assert checks == [False]
    assert connection.connection.info.backend_pid != dropped


def test_every_request_is_checked_with_a_period_of_zero(checks, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECK_SECONDS", 0)
    client = make_client(UserFactory())
    for _ in range(5):
        assert get(client) == 200
    assert checks == [True] * 5  # the connection was opened before, to make the token
