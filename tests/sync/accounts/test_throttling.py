"""The configured rate limits count exactly, also for parallel requests, and
open a new window when the old one ends (sync/api/throttling.py)."""

from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.cache import cache

from sync.api.base import SyncAPIView
from sync.api.throttling import TokenRateThrottle


def configured(scope: str) -> Any:
    """The throttle class the API uses for this scope."""
    return next(c for c in SyncAPIView.throttle_classes if getattr(c, "scope", None) == scope)


def caller() -> SimpleNamespace:
    """A request of a fresh authenticated user, as a throttle sees it."""
    user = SimpleNamespace(pk=uuid.uuid4().hex, is_authenticated=True)
    return SimpleNamespace(user=user, META={"REMOTE_ADDR": "192.0.2.1"})


def limited(monkeypatch: Any, rate: str) -> Any:
    throttle = configured("user")
    monkeypatch.setitem(throttle.THROTTLE_RATES, "user", rate)
    return throttle


@pytest.mark.redis
def test_parallel_requests_of_one_user_get_exactly_its_rate(monkeypatch):
    # Counted with a read and a later write of the request history, requests
    # that overlapped in the cache were lost and more than the rate got in.
    throttle = limited(monkeypatch, "60/min")
    request = caller()
    start = threading.Barrier(8)
    allowed: list[bool] = []

    def device() -> None:
        start.wait()
        for _ in range(20):
            allowed.append(throttle().allow_request(request, None))

    threads = [threading.Thread(target=device) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 160
    assert allowed.count(True) == 60


def test_a_new_window_opens_when_the_old_one_ends(monkeypatch):
    throttle = limited(monkeypatch, "2/s")
    request = caller()
    assert [throttle().allow_request(request, None) for _ in range(3)] == [True, True, False]
    refused = throttle()
    assert refused.allow_request(request, None) is False
    assert 0 < refused.wait() <= 1
    time.sleep(1.1)
    assert throttle().allow_request(request, None) is True
    # Another caller was never limited by the first one's window.
    assert throttle().allow_request(caller(), None) is True


@pytest.mark.redis
def test_retry_after_is_what_is_left_of_the_window(monkeypatch):
    throttle = limited(monkeypatch, "1/min")
    request = caller()
    assert throttle().allow_request(request, None) is True
    time.sleep(1.1)
    refused = throttle()
    assert refused.allow_request(request, None) is False
    assert 57 <= refused.wait() <= 59


def test_no_rate_for_the_scope_means_no_limit(monkeypatch):
    throttle = limited(monkeypatch, None)
    request = caller()
    assert all(throttle().allow_request(request, None) for _ in range(5))


def test_a_token_throttle_counts_a_caller_without_a_token_per_user(monkeypatch):
    # Staff on the data API with a session: one budget per account.
    monkeypatch.setitem(TokenRateThrottle.THROTTLE_RATES, "token", "2/min")
    request = caller()
    request.auth = None
    assert [TokenRateThrottle().allow_request(request, None) for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert TokenRateThrottle().allow_request(caller(), None) is True  # another account
    # Nobody signed in: left to the anonymous throttle.
    anonymous = SimpleNamespace(user=SimpleNamespace(is_authenticated=False), auth=None, META={})
    assert all(TokenRateThrottle().allow_request(anonymous, None) for _ in range(3))


def test_retry_after_is_at_most_the_window(monkeypatch):
    throttle = limited(monkeypatch, "1/min")
    request = caller()
    assert throttle().allow_request(request, None) is True
    refused = throttle()
    assert refused.allow_request(request, None) is False
    assert 58 <= refused.wait() <= 60


def test_a_request_history_left_by_drfs_own_throttle_does_not_break_counting(monkeypatch):
    # During and just after a deploy, the cache still holds the lists of
    # request times that DRF's throttle kept under its own keys.
    throttle = limited(monkeypatch, "3/min")
    request = caller()
    cache.set(f"throttle_user_{request.user.pk}", [time.time()] * 2, 60)
    assert [throttle().allow_request(request, None) for _ in range(4)] == [True] * 3 + [False]
