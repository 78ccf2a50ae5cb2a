from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from rest_framework.test import APIClient

from devices import versions
from sync.accounts.services import token_issue
from sync.engine import pull as selectors
from sync.notify import wakeups
from sync.notify.live import hub
from tests.factories import UserFactory

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
# Debian's Chromium, driven by Playwright (whose own browser downloads cannot work here).
CHROMIUM = "/usr/bin/chromium"


def _missing_service(marker: str) -> str | None:
    # The vendor, not the ENGINE: that is django-prometheus' wrapper of the backend.
    if marker == "postgres" and connections["default"].vendor != "postgresql":
        return "needs PostgreSQL: set DATABASE_URL=postgres://..."
    if marker == "redis" and not settings.REDIS_URL:
        return "needs Redis: set REDIS_URL=redis://..."
    if marker == "browser":
        if importlib.util.find_spec("playwright") is None:
            return "needs Playwright: pip install -e '.[dev]'"
        if not os.access(CHROMIUM, os.X_OK):
            return f"needs Chromium at {CHROMIUM}: apt-get install chromium"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in ("postgres", "redis", "browser"):
        if item.get_closest_marker(marker) is None:
            continue
        reason = _missing_service(marker)
        if reason is None:
            continue
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 but this test {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # PBKDF2's deliberate slowness (~0.25 s a login here) is not under test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # Throttle counters live in the cache; each test starts with none.
    cache.clear()
    # Nor does a test start with the channels an earlier one's user (maybe
    # with the same id) had at its last pull (the pull's guess).
    selectors._CHANNELS_SEEN.clear()
    # Nor with the app version policies an earlier one made (each process
    # reads them at most every few seconds).
    versions._forget()


@pytest.fixture(autouse=True)
def _live_listener_stopped() -> Iterator[None]:
    # A live pull that waits starts this process's LISTEN connection
    # (PostgreSQL, sync.notify.live), which would otherwise outlive the test
    # and keep the test database from being dropped at the end.
    yield
    if hub._listener is not None or hub.closing:
        hub.close(join=5)
        hub.reopen()
    # A Celery worker started in the test process listens too (wake-ups of
    # captured writes).
    captured, wakeups._captured_listener = wakeups._captured_listener, None
    if captured is not None:
        captured.stop()
        captured.join(5)


@dataclass
class Actor:
    """A user with a token, a registered device and a client that sends both."""

    user: Any
    device_id: uuid.UUID
    client: APIClient

    def pull(self, expect: int = 200, **params: Any) -> dict[str, Any]:
        response = self.client.get("/api/v1/sync/pull/", params)
        assert response.status_code == expect, response.content
        return response.json()

    def pull_all(self, cursor: str | None = None, **params: Any) -> tuple[list[dict], str]:
        """Pull until has_more is false; returns every change and the last cursor."""
        changes: list[dict] = []
        for _ in range(1000):
            page = self.pull(**({"cursor": cursor} if cursor else {}), **params)
            changes += page["changes"]
            cursor = page["cursor"]
            if not page["has_more"]:
                assert page["remaining"] == 0
                return changes, cursor
        raise AssertionError("pull never finished")

    def push(self, *mutations: dict[str, Any], expect: int = 200, **extra: Any) -> dict:
        response = self.client.post(
            "/api/v1/sync/push/", {"mutations": list(mutations), **extra}, format="json"
        )
        assert response.status_code == expect, response.content
        return response.json()

    def push_one(self, mutation: dict[str, Any]) -> dict[str, Any]:
        return self.push(mutation)["results"][0]


def make_client(user: Any, device_id: uuid.UUID | None = None) -> APIClient:
    _, secret = token_issue(user=user, name="test")
    # Production settings redirect plain HTTP to HTTPS; clients speak HTTPS.
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"Token {secret}", "HTTP_X_FORWARDED_PROTO": "https"}
    if device_id is not None:
        headers["HTTP_X_DEVICE_ID"] = str(device_id)
    client.credentials(**headers)
    return client


@pytest.fixture
def make_actor(db: None) -> Callable[..., Actor]:
    def make(user: Any = None, platform: str = "android") -> Actor:
        user = user or UserFactory()
        device_id = uuid.uuid4()
        response = make_client(user).post(
            "/api/v1/devices/", {"id": str(device_id), "platform": platform}, format="json"
        )
        assert response.status_code == 201, response.content
        return Actor(user=user, device_id=device_id, client=make_client(user, device_id))

    return make


@pytest.fixture
def alice(make_actor: Callable[..., Actor]) -> Actor:
    return make_actor()


@pytest.fixture
def bob(make_actor: Callable[..., Actor]) -> Actor:
    return make_actor()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """A real S3 API server on this machine (moto's, over HTTP), for the
    file tests: one for the session (tests/sync/blob_helpers.py)."""
    from tests.sync.blob_helpers import S3Server

    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def local_blobs(settings: Any, tmp_path: Any) -> Iterator[Any]:
    """Files on the file system, in a folder of the test's own (its path)."""
    from sync.engine import blobstore
    from tests.sync.blob_helpers import use_local_storage

    yield use_local_storage(settings, tmp_path / "blobs")
    blobstore._store.cache_clear()
