"""A push whose bulk write hits a database error is replayed one mutation at a time."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from fieldwork.models import Customer
from sync.engine.write import mutations_apply
from sync.models import MutationRecord
from tests.factories import customer
from tests.sync.test_concurrency import Worker

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _wait_for_a_lock_wait(timeout: float = 20) -> None:
    """Until some session of this test database waits on a row or key lock."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the push never waited on the held transaction")


def test_unique_clash_in_the_bulk_write_sinks_only_that_mutation(alice, bob):
    x = customer("X by bob")
    x_again = {**customer("X by alice"), "id": x["id"]}
    y = customer("Y by alice")
    b_written, release_b = threading.Event(), threading.Event()

    def other_writer() -> None:
        with transaction.atomic():
            outcome = mutations_apply(user=bob.user, mutations=[x])
            assert outcome.results[0].status == "applied"
            b_written.set()
            assert release_b.wait(20)

    b = Worker(other_writer)
    b.start()
    assert b_written.wait(20)
    # X is not visible to alice's push yet, so its validation passes and its bulk
    # insert waits on B's uncommitted key; when B commits, that insert fails.
    a = Worker(lambda: alice.push(x_again, y))
    a.start()
    try:
        _wait_for_a_lock_wait()
    finally:
        release_b.set()
    b.outcome()
    body = a.outcome()

    x_result, y_result = body["results"]
    assert x_result["status"] == "rejected"
    assert x_result["errors"] == {"id": ["An object with this id already exists."]}
    assert y_result["status"] == "applied"
    assert y_result["version"] == 1
    assert Customer.objects.get(pk=x["id"]).name == "X by bob"
    assert Customer.objects.get(pk=y["id"]).name == "Y by alice"
    # Each outcome is stored, so a retry of the push replays it.
    statuses = dict(
        MutationRecord.objects.filter(user=alice.user).values_list("mutation_id", "status")
    )
    assert {str(k): v for k, v in statuses.items()} == {
        x_again["mutation_id"]: "rejected",
        y["mutation_id"]: "applied",
    }
