"""FCM failing for a while (500, 429 with Retry-After, quota exhausted): each
device's wake-up is retried until it gets through, once, and retries stop at
PUSH_MAX_ATTEMPTS. A real Celery worker on Redis, firebase-admin's real HTTP
code against the fake FCM server answering from a script."""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker

from config.celery import app
from devices.models import Device, PushOutbox
from sync.models import Change
from sync.notify import wakeups
from tests.devices.fake_fcm import QUOTA, fcm_error, quota
from tests.factories import customer, team_of, update
from tests.faults.conftest import wait_for, with_token
from tests.helpers import sync_check_passes

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CUSTOMER = "fieldwork.customer"
INTERNAL = (500, fcm_error(500, "INTERNAL", "INTERNAL"), {})


def test_fcm_failing_for_a_while_each_device_is_still_woken_and_given_up_on_in_time(
    fcm, make_actor, settings, monkeypatch
):
    # Longer than the first send takes (firebase-admin's own retries of the
    # tablet's 500 and 429 wait about 1.5 s): the burst's other writes fall in
    # the window its first one opened.
    settings.PUSH_COALESCE_SECONDS = 5
    settings.PUSH_MAX_ATTEMPTS = 3
    monkeypatch.setattr(wakeups, "RETRY_BASE_SECONDS", 0.1)  # backoff in tenths
    phone = make_actor()
    tablet = make_actor(user=phone.user)
    bob, carol = make_actor(), make_actor()
    team = team_of(phone.user, bob.user, carol.user)
    tokens = {n: with_token(a) for n, a in (("tablet", tablet), ("bob", bob), ("carol", carol))}
    PushOutbox.objects.all().delete()  # the grants' wake-ups: not this test's
    app.control.purge()

    # Failing inside one send: firebase-admin (urllib3) retries a 500 and a 429
    # with Retry-After itself, honouring it. Failing twice with a bare 429: our
    # retry task tries again with backoff. Failing four times: the first
    # message is given up after PUSH_MAX_ATTEMPTS, the next one goes through.
    fcm.answer(tokens["tablet"], INTERNAL, quota("1"))
    fcm.answer(tokens["bob"], QUOTA, QUOTA)
    fcm.answer(tokens["carol"], QUOTA, QUOTA, QUOTA, QUOTA)

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        c = customer("Busy", team=str(team.pk))
        phone.push(c)
        first = Change.objects.order_by("-seq").values_list("seq", flat=True).first()
        phone.push(update(CUSTOMER, c["id"], 1, phone="1"))
        phone.push(update(CUSTOMER, c["id"], 2, phone="2"))  # a burst: one window
        last = Change.objects.order_by("-seq").values_list("seq", flat=True).first()
        wait_for(
            lambda: len(fcm.sent_to(tokens["carol"])) == 5,
            30,
            "the retries and the window's trailing message",
        )
        time.sleep(2)  # anything extra would come now

    leading = {"type": "sync", "cursor": str(first)}
    trailing = {"type": "sync", "cursor": str(last)}
    # The first write at once (the leading edge), the two others in one
    # message at the window's end: the tablet's first send took three
    # attempts inside firebase-admin, bob's and carol's failed and were
    # retried by our task, carol's up to PUSH_MAX_ATTEMPTS and given up;
    # carol's trailing message failed once and was retried.
    assert {n: len(fcm.sent_to(t)) for n, t in tokens.items()} == {
        "tablet": 4,
        "bob": 4,
        "carol": 5,
    }
    assert {n: [m["data"] for m in fcm.delivered_to(t)] for n, t in tokens.items()} == {
        "tablet": [leading, trailing],
        "bob": [leading, trailing],
        "carol": [trailing],
    }
    assert len(fcm.messages) == 13  # the phone, which wrote, was never woken
    outcomes = dict(Device.objects.values_list("id", "last_push_outcome"))
    assert outcomes[tablet.device_id] == outcomes[bob.device_id] == "sent"
    assert outcomes[carol.device_id] == "sent"
    # 3 writes x 3 devices: one sent at once, two held for the flush.
    assert wakeups.counters() == {
        "sent": 5,
        "unregistered": 0,
        "retrying": 5,
        "failed": 1,
        "coalesced": 6,
    }
    assert not PushOutbox.objects.exists()
    sync_check_passes()
