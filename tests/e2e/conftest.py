"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live import gunicorn


@pytest.fixture(scope="module")
def live_gunicorn(django_db_setup: None) -> Iterator[str]:
    """One server for a module's tests (it only needs the database's name).
    Quiet: the logs of requests the tests make on purpose are noise."""
    with gunicorn(LOG_LEVEL="WARNING", THROTTLE_USER="100000/min") as base:
        yield base
