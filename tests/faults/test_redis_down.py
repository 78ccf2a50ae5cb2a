"""Redis stopped, then hung, while devices sync: Redis is the Celery broker and
the cache (throttle counters, coalescing marks). Pushes and pulls over the API
must go on working (the cache is optional for them; the broker only gets
wake-ups, which wait in the outbox), and once Redis is back the sweep sends
the wake-ups, one per device.

The test runs its own redis-server, points the cache and the Celery app at it,
kills it (SIGKILL) while devices sync, starts it again and pauses it
(SIGSTOP: connections accepted, never answered).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection
from django.utils import timezone

from config.celery import app
from devices.models import PushOutbox
from sync.models import Change
from sync.notify import wakeups
from sync.notify.wakeups import outbox_sweep
from tests.factories import customer, team_of, update
from tests.faults.conftest import wait_for, with_token
from tests.helpers import sync_check_passes

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CUSTOMER = "fieldwork.customer"


@pytest.fixture
def on_own_redis(own_redis, settings):
    """The cache and the broker of this process on the test's own redis-server."""
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = own_redis.url
    settings.CACHES = caches  # Django drops its cache connections on this change
    real = app.conf.broker_url

    def point(url: str) -> None:
        app.conf.broker_url = url
        app._pool = None
        app.amqp._producer_pool = None

    point(own_redis.url)
    try:
        yield own_redis
    finally:
        point(real)
        wakeups._broker_down_until = 0.0  # this process's broker backoff


def _bounded(call: Callable[[], Any], redis, seconds: float = 8) -> Any:
    """`call()` within `seconds`, or the test fails (after letting it finish)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - raised in the test's thread
            outcome["error"] = exc
        finally:
            connection.close()

    request = threading.Thread(target=run, daemon=True)
    request.start()
    request.join(seconds)
    if request.is_alive():
        redis.resume()
        request.join(30)
        pytest.fail(f"a request waited more than {seconds} s for the unresponsive Redis")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _head() -> int:
    return Change.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def test_devices_sync_while_redis_is_down_and_are_woken_once_it_is_back(
    fcm, make_actor, on_own_redis, settings
):
    settings.PUSH_COALESCE_SECONDS = 2
    phone = make_actor()
    tablet = make_actor(user=phone.user)
    bob = make_actor()
    team = team_of(phone.user, bob.user)
    tokens = {n: with_token(a) for n, a in (("phone", phone), ("tablet", tablet), ("bob", bob))}
    PushOutbox.objects.all().delete()  # the grants' wake-ups: not this test's

    on_own_redis.stop()
    started = time.monotonic()
    c = customer("Written while Redis is down", team=str(team.pk))
    assert phone.push_one(c)["status"] == "applied"
    by_phone = _head()
    changes, _ = tablet.pull_all()
    assert c["id"] in {ch["id"] for ch in changes}
    assert tablet.push_one(update(CUSTOMER, c["id"], 1, phone="1"))["status"] == "applied"
    by_tablet = _head()
    changes, _ = bob.pull_all()
    assert [ch["data"]["phone"] for ch in changes if ch["id"] == c["id"]] == ["1"]
    assert bob.push_one(update(CUSTOMER, c["id"], 2, email="bob@example.com"))["status"] == (
        "applied"
    )
    by_bob = _head()
    changes, _ = phone.pull_all()
    assert [ch["data"]["email"] for ch in changes if ch["id"] == c["id"]] == ["bob@example.com"]
    # No request waited for Redis (connect timeouts, retries) beyond reason.
    assert time.monotonic() - started < 15

    # Nothing was sent; each write's wake-up waits in the outbox.
    assert fcm.messages == []
    assert PushOutbox.objects.filter(claimed_until=None).count() == 3

    # Up again but hung: every wait for it is bounded (cache and broker socket
    # timeouts), and the first failed enqueue stops this process trying for a while.
    on_own_redis.start()
    on_own_redis.pause()
    wakeups._broker_down_until = 0.0  # as if the backoff of the outage had passed
    status = _bounded(
        lambda: tablet.push_one(update(CUSTOMER, c["id"], 3, address="1 Road"))["status"],
        on_own_redis,
    )
    assert status == "applied"
    changes, _ = _bounded(bob.pull_all, on_own_redis)
    assert [ch["data"]["address"] for ch in changes if ch["id"] == c["id"]] == ["1 Road"]
    by_tablet_again = _head()
    assert PushOutbox.objects.count() == 4
    on_own_redis.resume()

    # Back for good (it kept nothing): the sweep, which beat runs every
    # PUSH_SWEEP_EVERY_SECONDS, hands the waiting rows to a worker.
    PushOutbox.objects.update(created_at=timezone.now() - timezone.timedelta(minutes=1))
    assert outbox_sweep() == 4
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        wait_for(lambda: not PushOutbox.objects.exists(), 20, "the outbox to empty")
        wait_for(lambda: all(fcm.delivered_to(t) for t in tokens.values()), 20, "the wake-ups")
        time.sleep(settings.PUSH_COALESCE_SECONDS + 1)  # a duplicate would arrive by now
    # The writes' wake-ups fell in one coalescing window: at most two messages
    # per device (the first at once, the rest at the window's end), the last
    # of which covers the newest change it did not make itself (a flush marks
    # all its devices with its newest change: docs/protocol.md).
    newest = {"phone": by_tablet_again, "tablet": by_bob, "bob": by_tablet_again}
    for name, token in tokens.items():
        messages = [m["data"] for m in fcm.delivered_to(token)]
        assert 1 <= len(messages) <= 2 and {m["type"] for m in messages} == {"sync"}, name
        assert newest[name] <= int(messages[-1]["cursor"]) <= _head(), name
    assert by_phone < by_tablet < by_bob < by_tablet_again
    sync_check_passes()
