"""The reference client against the server in this process.

httpx's WSGI transport hands each request to Django's WSGI application inside
the test's transaction: the client's whole HTTP path (headers, JSON, status
codes, error bodies) runs, without a socket. tests/e2e runs the same client
against gunicorn on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections

from tests.client_harness import Device, FaultyNetwork
from tests.factories import UserFactory

BASE_URL = "https://testserver"  # production settings redirect plain HTTP


@pytest.fixture
def wsgi(db: None) -> Iterator[httpx.WSGITransport]:
    # What Django's own test client does around each request: the end of a
    # request would otherwise close the connection that holds the test's
    # transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield httpx.WSGITransport(app=get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def make_device(wsgi: httpx.WSGITransport, tmp_path: Path) -> Iterator[Callable[..., Device]]:
    made: list[Device] = []

    def make(user: Any = None, **options: Any) -> Device:
        device = Device(
            tmp_path / f"device{len(made)}",
            user or UserFactory(),
            FaultyNetwork(wsgi),
            BASE_URL,
            **options,
        )
        made.append(device)
        return device

    yield make
    for device in made:
        device.client.close()
