"""Resolutions racing each other and pushes, on the real PostgreSQL row locks."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from fieldwork.models import Customer
from sync.engine.conflicts import conflict_resolve
from sync.engine.write import mutations_apply
from sync.models import Conflict
from syncbase.errors import SyncError
from tests.factories import customer, update
from tests.sync.test_concurrency import Worker

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CUSTOMER = "fieldwork.customer"


def raise_conflict(actor) -> tuple[dict, dict]:
    c = customer("Acme", phone="1")
    actor.push_one(c)
    actor.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    result = actor.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    assert result["status"] == "conflict"
    return c, result


def test_two_staff_resolving_at_once_apply_exactly_one(alice):
    c, result = raise_conflict(alice)
    users = get_user_model()
    first = users.objects.create_superuser("first", password="first-pass-1234")
    second = users.objects.create_superuser("second", password="second-pass-1234")
    start = threading.Barrier(2)

    def resolver(user, choice):
        def run():
            start.wait()
            try:
                return conflict_resolve(
                    conflict_id=result["conflict_id"],
                    user=user,
                    choice=choice,
                    expected_version=2,
                    as_staff=True,
                ).object["version"]
            except SyncError as exc:
                return exc.status_code

        return Worker(run)

    workers = [resolver(first, "server"), resolver(second, "client")]
    for w in workers:
        w.start()
    outcomes = sorted(w.outcome() for w in workers)
    # One wrote version 3; the other was refused: already settled (409), or,
    # if it locked the object after the first committed, stale (412).
    assert outcomes[0] == 3 and outcomes[1] in (409, 412), outcomes
    obj = Customer.objects.get(pk=c["id"])
    assert obj.version == 3
    assert Customer.history.filter(id=c["id"], version=3).count() == 1
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    assert conflict.status == "resolved" and conflict.resolved_version == 3


def test_resolution_waits_for_a_push_holding_the_object_and_is_then_refused_as_stale(alice):
    """A push holding the object's row lock commits first; the resolution, which
    saw version 2, must not land over it."""
    c, result = raise_conflict(alice)
    staff = get_user_model().objects.create_superuser("staff", password="staff-pass-1234")
    pushed, release = threading.Event(), threading.Event()

    def push():
        with transaction.atomic():
            outcome = mutations_apply(
                user=alice.user, mutations=[update(CUSTOMER, c["id"], 2, name="Pushed")]
            )
            pushed.set()
            release.wait(10)
        return outcome.results[0].status

    def resolve():
        pushed.wait(10)
        try:
            conflict_resolve(
                conflict_id=result["conflict_id"],
                user=staff,
                choice="client",
                expected_version=2,
                as_staff=True,
            )
        except SyncError as exc:
            return exc.status_code
        return 200

    pusher, resolver = Worker(push), Worker(resolve)
    pusher.start()
    resolver.start()
    pushed.wait(10)
    resolver.join(0.5)
    assert resolver.is_alive(), "the resolution should wait for the push's row lock"
    release.set()
    assert pusher.outcome() == "applied"
    assert resolver.outcome() == 412
    obj = Customer.objects.get(pk=c["id"])
    assert (obj.version, obj.name, obj.phone) == (3, "Pushed", "2")
    assert Conflict.objects.get(pk=result["conflict_id"]).status == "open"
