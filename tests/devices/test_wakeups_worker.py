"""Wake-ups end to end: a real Celery worker on the real Redis broker, the real
firebase-admin sender against a local fake FCM server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from config.celery import app
from devices.models import PushOutbox
from sync.engine.write import mutations_apply
from sync.models import Change
from sync.notify.wakeups import outbox_sweep
from tests.factories import customer, team_of, update
from tests.helpers import psql

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CUSTOMER = "fieldwork.customer"


def with_token(actor) -> str:
    token = f"tok-{uuid.uuid4()}"
    response = actor.client.patch(
        f"/api/v1/devices/{actor.device_id}/", {"push_token": token}, format="json"
    )
    assert response.status_code == 200, response.content
    return token


def wait_for(check: Callable[[], bool], seconds: float = 20, what: str = "it") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def worker():
    assert not app.conf.task_always_eager and app.conf.broker_url.startswith("redis://")
    app.control.purge()  # tasks queued by earlier tests that had no worker
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as w:
        yield w


def test_a_push_wakes_each_other_device_in_scope_once(fcm, make_actor, worker, settings):
    settings.PUSH_COALESCE_SECONDS = 1
    phone = make_actor()
    tablet = make_actor(user=phone.user)
    bob, carol = make_actor(), make_actor()
    team = team_of(phone.user, bob.user)
    tokens = {
        n: with_token(a)
        for n, a in (("phone", phone), ("tablet", tablet), ("bob", bob), ("carol", carol))
    }
    wait_for(lambda: not PushOutbox.objects.exists(), what="the grants' wake-ups")
    time.sleep(1.5)  # their windows close
    fcm.messages.clear()

    phone.push(customer("Shared", team=str(team.pk)))
    wait_for(lambda: len(fcm.messages) >= 2, what="the fan-out")
    time.sleep(1.5)  # anything extra would arrive now
    seq = Change.objects.order_by("-seq").values_list("seq", flat=True).first()
    for name in ("tablet", "bob"):
        assert [m["data"] for m in fcm.sent_to(tokens[name])] == [
            {"type": "sync", "cursor": str(seq)}
        ]
    assert fcm.sent_to(tokens["phone"]) == []
    assert fcm.sent_to(tokens["carol"]) == []


def test_an_isolated_write_wakes_at_once_not_at_the_windows_end(fcm, make_actor, worker, settings):
    window = 8
    settings.PUSH_COALESCE_SECONDS = window
    phone = make_actor()
    tablet = make_actor(user=phone.user)
    token = with_token(tablet)
    wait_for(lambda: not PushOutbox.objects.exists(), what="the registration's wake-ups")
    time.sleep(0.5)
    fcm.messages.clear()
    # Quiet since the registration: the device's window is closed.
    from django.core.cache import cache

    cache.delete(f"push:window:{tablet.device_id}")

    started = time.monotonic()
    phone.push(customer("Now"))
    wait_for(lambda: fcm.sent_to(token), seconds=window, what="the wake-up")
    took = time.monotonic() - started
    # Sent by the fan-out itself, not by a flush at the window's end.
    assert took < window / 2, f"the wake-up took {took:.1f} s"
    seq = Change.objects.order_by("-seq").values_list("seq", flat=True).first()
    assert [m["data"] for m in fcm.sent_to(token)] == [{"type": "sync", "cursor": str(seq)}]


def test_a_burst_costs_two_pushes_per_device_and_the_last_write_is_covered(
    fcm, make_actor, worker, settings
):
    window = 6
    settings.PUSH_COALESCE_SECONDS = window
    phone = make_actor()
    tablet = make_actor(user=phone.user)
    token = with_token(tablet)
    c = customer("Busy")
    wait_for(lambda: not PushOutbox.objects.exists(), what="the registration's wake-ups")
    time.sleep(window + 0.5)  # the registration's window, if any, closes
    fcm.messages.clear()

    started = time.monotonic()
    mutations_apply(user=phone.user, mutations=[c], device_id=phone.device_id)
    first_seq = Change.objects.order_by("-seq").values_list("seq", flat=True).first()
    for version in range(1, 100):  # 100 writes in all, each its own transaction
        mutations_apply(
            user=phone.user,
            mutations=[update(CUSTOMER, c["id"], version, name=f"n{version}")],
            device_id=phone.device_id,
        )
    burst = time.monotonic() - started
    last_seq = Change.objects.order_by("-seq").values_list("seq", flat=True).first()
    assert burst < window, f"the burst took {burst:.1f} s, longer than the window"

    wait_for(lambda: len(fcm.sent_to(token)) >= 2, seconds=window + 10, what="the trailing one")
    time.sleep(1)
    # The first write at once, the rest of the burst in one message at the
    # window's end, carrying the last change.
    assert [m["data"]["cursor"] for m in fcm.sent_to(token)] == [str(first_seq), str(last_seq)]

    # The trailing message opened the next window: a write in it waits for its end.
    phone.push(update(CUSTOMER, c["id"], 100, name="later"))
    wait_for(lambda: len(fcm.sent_to(token)) == 3, seconds=window + 10, what="the next one")


def test_broker_down_the_write_succeeds_and_the_sweep_sends_it_later(fcm, make_actor, settings):
    settings.PUSH_COALESCE_SECONDS = 1
    phone = make_actor()
    tablet = make_actor(user=phone.user)
    token = with_token(tablet)
    PushOutbox.objects.all().delete()
    real = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens there
    app._pool = None
    try:
        result = phone.push_one(customer("Offline broker"))
    finally:
        app.conf.broker_url = real
        app._pool = None
    assert result["status"] == "applied"
    row = PushOutbox.objects.get()
    assert row.claimed_until is None
    assert fcm.messages == []

    # The broker is back; the periodic sweep finds the row once it is old enough.
    PushOutbox.objects.filter(pk=row.pk).update(
        created_at=timezone.now() - timezone.timedelta(minutes=1)
    )
    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert outbox_sweep() == 1
        wait_for(lambda: len(fcm.sent_to(token)) == 1, what="the swept wake-up")
        wait_for(lambda: not PushOutbox.objects.exists(), what="the outbox row to go")
    assert outbox_sweep() == 0


def test_raw_sql_by_another_process_wakes_devices_without_waiting_for_the_sweep(
    fcm, make_actor, tmp_path
):
    """A captured write (psql, another process) records its wake-up in the
    database; `celery worker` hears it commit (NOTIFY sync_captured) and sends
    it at once. The sweep, which used to send these, does not run here."""

    from django.conf import settings
    from django.db import connection

    from tests.faults.conftest import CeleryWorker

    phone = make_actor()
    tablet = make_actor(user=phone.user)
    token = with_token(tablet)
    made = customer("Edited in psql")
    phone.push(made)
    PushOutbox.objects.all().delete()  # earlier writes' wake-ups: not this test's
    app.control.purge()
    worker = CeleryWorker(
        tmp_path / "worker.log",
        {
            "PUSH_BACKEND": "fcm",
            "FCM_CREDENTIALS": settings.FCM_CREDENTIALS,
            "FCM_ENDPOINT": fcm.url,
            "PUSH_COALESCE_SECONDS": "1",
        },
    ).start()
    try:

        def listening() -> bool:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN sync_captured'"
                )
                return cursor.fetchone()[0] > 0

        wait_for(listening, what="the worker to listen")
        # A UUID the test made: nothing to escape.
        psql(f"UPDATE fieldwork_customer SET name = 'By psql' WHERE id = '{made['id']}'")  # noqa: S608
        wait_for(lambda: fcm.sent_to(token), seconds=10, what="the wake-up of the psql write")
    finally:
        worker.stop()
    seq = Change.objects.order_by("-seq").values_list("seq", flat=True).first()
    assert [m["data"] for m in fcm.sent_to(token)] == [{"type": "sync", "cursor": str(seq)}]
