"""Live pulls through Django's test client: the view's contract (parameters,
errors, limits, answers at once or after a commit). The client runs the
async view in the request's thread, as a WSGI server would; the ASGI server
is `test_serve_live.py`'s."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection

from sync.notify.live import hub
from tests.factories import customer
from tests.helpers import assert_error

CUSTOMER = "fieldwork.customer"


def live(actor, **params: Any):
    return actor.client.get("/api/v1/sync/live/", params)


def later(seconds: float, fn) -> threading.Thread:
    """Run `fn` in another thread (its own database connection) after `seconds`."""

    def run() -> None:
        time.sleep(seconds)
        try:
            fn()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db
def test_without_wait_it_is_an_ordinary_pull(alice):
    alice.push(customer("Acme"))
    page = live(alice).json()
    assert [c["data"]["name"] for c in page["changes"]] == ["Acme"]
    assert page == alice.pull() | {"cursor": page["cursor"]}


@pytest.mark.django_db
def test_changes_waiting_are_answered_at_once(alice, bob):
    _, cursor = bob.pull_all()
    bob_customer = customer("Mine")
    bob.push(bob_customer)
    started = time.monotonic()
    page = live(bob, cursor=cursor, wait=30).json()
    assert time.monotonic() - started < 5
    assert [c["id"] for c in page["changes"]] == [bob_customer["id"]]


@pytest.mark.parametrize("wait", ["-1", "1.5", "soon", "²", "9999999"])
@pytest.mark.django_db
def test_a_bad_wait_is_refused(alice, wait):
    body = assert_error(live(alice, wait=wait), 400, "bad_wait")
    assert "wait" in body["errors"]


@pytest.mark.django_db
def test_a_long_wait_is_shortened_to_the_servers_maximum(alice, settings):
    settings.LIVE_PULL_MAX_WAIT = 1
    _, cursor = alice.pull_all()
    started = time.monotonic()
    page = live(alice, cursor=cursor, wait=3600).json()
    waited = time.monotonic() - started
    assert 0.9 < waited < 10
    assert page["changes"] == [] and page["has_more"] is False
    assert alice.pull(cursor=page["cursor"])["changes"] == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_commit_in_scope_ends_the_wait_with_the_change(alice, make_actor):
    tablet = make_actor(user=alice.user)
    _, cursor = tablet.pull_all()
    made = customer("While you wait")
    writer = later(0.5, lambda: alice.push(made))
    started = time.monotonic()
    page = live(tablet, cursor=cursor, wait=20).json()
    waited = time.monotonic() - started
    writer.join()
    assert [c["id"] for c in page["changes"]] == [made["id"]]
    assert waited < 15, "answered by the commit, not the wait's end"
    # The cursor moved past it.
    assert tablet.pull(cursor=page["cursor"])["changes"] == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_commit_out_of_scope_does_not_end_the_wait(alice, bob, settings):
    settings.LIVE_PULL_MAX_WAIT = 2
    _, cursor = bob.pull_all()
    writer = later(0.3, lambda: alice.push(customer("Not Bob's")))
    started = time.monotonic()
    page = live(bob, cursor=cursor, wait=2).json()
    writer.join()
    assert time.monotonic() - started >= 1.9
    assert page["changes"] == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_write_outside_the_service_ends_the_wait_too(alice):
    from fieldwork.models import Customer

    made = customer("Staff made")
    alice.push(made)
    _, cursor = alice.pull_all()
    writer = later(0.5, lambda: Customer.objects.filter(pk=made["id"]).update(name="Renamed"))
    page = live(alice, cursor=cursor, wait=20).json()
    writer.join()
    assert [c["data"]["name"] for c in page["changes"]] == ["Renamed"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_each_user_has_a_limit_of_waiting_live_pulls(alice, make_actor, settings):
    settings.LIVE_PULLS_PER_USER = 2
    settings.LIVE_PULL_MAX_WAIT = 3
    _, cursor = alice.pull_all()
    answers: list[int] = []

    def wait_once() -> None:
        answers.append(live(alice, cursor=cursor, wait=3).status_code)

    waiting = [later(0, wait_once) for _ in range(2)]
    deadline = time.monotonic() + 5
    while hub.waiting(alice.user.pk) < 2:
        assert time.monotonic() < deadline, "the two live pulls never waited"
        time.sleep(0.02)
    body = assert_error(live(alice, cursor=cursor, wait=3), 429, "too_many_live_pulls")
    assert "2" in body["detail"]
    # Another user is not affected, and a pull without waiting still answers.
    other = make_actor()
    assert live(other, wait=0).status_code == 200
    assert live(alice, cursor=cursor).status_code == 200
    for thread in waiting:
        thread.join()
    assert answers == [200, 200]
    assert hub.waiting(alice.user.pk) == 0
    assert live(alice, cursor=cursor, wait=1).status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_closing_server_answers_waiting_pulls_at_once(alice):
    _, cursor = alice.pull_all()
    answers: list[Any] = []
    waiting = later(0, lambda: answers.append(live(alice, cursor=cursor, wait=30)))
    deadline = time.monotonic() + 5
    # Waiting for a change, not still reading its page (then it would
    # answer at once too, but would not be counted as woken).
    while hub.waiters() < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    try:
        assert hub.close() >= 1
        waiting.join(10)
        assert time.monotonic() - started < 5
        [response] = answers
        assert response.status_code == 200
        page = response.json()
        assert page["changes"] == [] and page["cursor"]
        # While closing, a live pull answers at once.
        started = time.monotonic()
        assert live(alice, cursor=page["cursor"], wait=30).status_code == 200
        assert time.monotonic() - started < 5
    finally:
        hub.reopen()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_writer_that_turns_notify_off_is_heard_only_by_the_next_read(alice, settings):
    """`SET LOCAL sync.notify = off` (for bulk jobs: PostgreSQL serialises the
    commits of transactions that NOTIFY) records the wake-up quietly: a
    waiting live pull is not woken by it, and the next read has it."""
    from django.db import transaction

    from fieldwork.models import Customer

    settings.LIVE_PULL_MAX_WAIT = 2
    made = customer("Bulk")
    alice.push(made)
    _, cursor = alice.pull_all()

    def quietly() -> None:
        with transaction.atomic():
            with connection.cursor() as cursor_:
                cursor_.execute("SET LOCAL sync.notify = off")
            Customer.objects.filter(pk=made["id"]).update(name="Bulk, quietly")

    # Listening already: its start wakes every waiter to look once.
    hub.listen()
    assert hub._listener is not None and hub._listener.ready.wait(5)
    time.sleep(0.2)
    writer = later(0.3, quietly)
    started = time.monotonic()
    page = live(alice, cursor=cursor, wait=2).json()
    writer.join()
    assert time.monotonic() - started >= 1.9, "woken by a write that did not NOTIFY"
    assert page["changes"] == []
    again = live(alice, cursor=page["cursor"], wait=2).json()
    assert [c["data"]["name"] for c in again["changes"]] == ["Bulk, quietly"]
