"""Concurrent writers and readers on the real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from fieldwork.models import Customer
from sync.engine.write import mutations_apply
from tests.factories import customer, update

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CUSTOMER = "fieldwork.customer"


class Worker(threading.Thread):
    """Runs `fn` on its own database connection and keeps its result or error."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.error = exc
        finally:
            connection.close()

    def outcome(self, timeout: float = 20) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "worker did not finish"
        if self.error:
            raise self.error
        return self.result


def test_change_held_in_an_open_transaction_is_not_skipped(alice, make_actor):
    """Writer A takes its feed position first but commits last; a pull in between
    must not move the cursor past A's change."""
    tablet = make_actor(user=alice.user)
    alice.push(customer("seed"))
    _, cursor = alice.pull_all()

    held = customer("held open")
    a_written, release_a = threading.Event(), threading.Event()

    def writer_a() -> None:
        with transaction.atomic():
            outcome = mutations_apply(user=alice.user, mutations=[held])
            assert outcome.results[0].status == "applied"
            a_written.set()
            assert release_a.wait(20)

    a = Worker(writer_a)
    a.start()
    assert a_written.wait(20)

    later = customer("committed later")
    b = Worker(lambda: tablet.push(later))
    b.start()
    b.join(1.0)  # B either commits now or waits for A; either way, pull now.

    page = alice.pull(cursor=cursor)
    seen = [c["id"] for c in page["changes"]]
    assert held["id"] not in seen  # not committed yet
    release_a.set()
    a.outcome()
    b.outcome()

    changes, _ = alice.pull_all(page["cursor"])
    seen += [c["id"] for c in changes]
    assert held["id"] in seen, "the change committed last was skipped"
    assert later["id"] in seen


def test_concurrent_updates_of_one_object_lose_nothing(alice, make_actor):
    c = customer("start", phone="0")
    alice.push(c)
    devices = [make_actor(user=alice.user) for _ in range(4)]
    barrier = threading.Barrier(len(devices))
    fields = ["phone", "email", "address", "name"]
    values = ["555", "x@y.test", "1 Road", "renamed"]

    def push(actor, field, value) -> dict:
        barrier.wait(10)
        return actor.push_one(update(CUSTOMER, c["id"], 1, **{field: value}))

    workers = [
        Worker(lambda a=a, f=f, v=v: push(a, f, v))
        for a, f, v in zip(devices, fields, values, strict=True)
    ]
    for w in workers:
        w.start()
    results = [w.outcome() for w in workers]
    assert sorted(r["status"] for r in results) == ["applied", "merged", "merged", "merged"]
    obj = Customer.objects.get(pk=c["id"])
    assert obj.version == 5
    assert [getattr(obj, f) for f in fields] == values  # disjoint fields all merged
    assert obj.history.count() == 5


def test_same_mutation_sent_twice_at_once_applies_once(alice, make_actor):
    c = customer("start")
    alice.push(c)
    u = update(CUSTOMER, c["id"], 1, phone="1")
    retry = make_actor(user=alice.user)  # the same mutation through another connection
    barrier = threading.Barrier(2)

    def push(actor) -> dict:
        barrier.wait(10)
        return actor.push_one(u)

    workers = [Worker(lambda a=a: push(a)) for a in (alice, retry)]
    for w in workers:
        w.start()
    first, second = (w.outcome() for w in workers)
    assert first == second
    assert first["status"] == "applied"
    assert Customer.objects.get(pk=c["id"]).version == 2


def test_concurrent_creates_of_one_id_create_it_once(alice, make_actor):
    c = customer("twice")
    other = make_actor(user=alice.user)
    a = {**c, "mutation_id": c["mutation_id"]}
    b = {**c, "mutation_id": "00000000-0000-4000-8000-000000000001"}
    barrier = threading.Barrier(2)

    def push(actor, m) -> dict:
        barrier.wait(10)
        return actor.push_one(m)

    workers = [Worker(lambda: push(alice, a)), Worker(lambda: push(other, b))]
    for w in workers:
        w.start()
    statuses = sorted(w.outcome()["status"] for w in workers)
    assert statuses == ["applied", "rejected"]
    assert Customer.objects.filter(pk=c["id"]).count() == 1


def test_pushes_of_one_device_are_applied_one_after_the_other(alice, make_actor):
    """Two tabs of one browser (one device) replaying one outbox: the second
    push waits for the first to commit, so they never interleave; another
    device's push is not held up."""
    other = make_actor(user=alice.user)
    first_in, release = threading.Event(), threading.Event()

    def first_tab() -> str:
        with transaction.atomic():
            outcome = mutations_apply(
                user=alice.user, mutations=[customer("first tab")], device_id=alice.device_id
            )
            first_in.set()
            assert release.wait(20)
        return outcome.results[0].status

    first = Worker(first_tab)
    first.start()
    assert first_in.wait(10)
    second = Worker(lambda: alice.push_one(customer("second tab")))
    elsewhere = Worker(lambda: other.push_one(customer("another device")))
    second.start()
    elsewhere.start()
    assert elsewhere.outcome()["status"] == "applied"
    second.join(1.0)
    assert second.is_alive(), "the same device's second push ran beside the first"
    release.set()
    assert first.outcome() == "applied"
    assert second.outcome()["status"] == "applied"
