"""The database connection lost in the middle of a push: every mutation is
applied whole (object, history, feed, stored result, wake-up) or not at all,
and the device's retry of the same batch converges.

The push is held at its last step, its insert of feed rows after all its other
writes, by a test connection holding a SHARE lock on the feed table (which an
insert's ROW EXCLUSIVE lock waits for); its backend is then terminated
(`pg_terminate_backend`), as a database restart or a failover would. The
service then applies the batch one mutation per transaction on a new
connection; the test lets the first of those commit
and terminates the second, so the device gets an error with part of its batch
applied, and retries.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection

from devices.models import PushOutbox
from fieldwork.models import Customer, WorkOrder
from sync.models import Change, MutationRecord
from tests.factories import customer, update, work_order
from tests.faults.conftest import raw_connection, wait_for
from tests.helpers import sync_check_passes

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CUSTOMER = "fieldwork.customer"
# How sync.engine.feed.append writes on PostgreSQL: INSERT for a few rows, COPY for more.
FEED_INSERTS = ('INSERT INTO "sync_change"', 'COPY "sync_change"')
HOLD = "LOCK TABLE sync_change IN SHARE MODE"


class Call(threading.Thread):
    """A device's push in a thread, on its own database connection."""

    def __init__(self, actor, batch) -> None:
        super().__init__(daemon=True)
        self.actor, self.batch = actor, batch
        self.response = None

    def run(self) -> None:
        try:
            self.response = self.actor.client.post(
                "/api/v1/sync/push/", {"mutations": self.batch}, format="json"
            )
        finally:
            connection.close()


def waiting_for_the_feed_lock(but: set[int] = frozenset()) -> list[int]:
    """Backends whose feed insert waits for the test's lock on the feed table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = 'relation' "
            "AND (query LIKE %s OR query LIKE %s)",
            [f"%{statement}%" for statement in FEED_INSERTS],
        )
        return [pid for (pid,) in cursor.fetchall() if pid not in but]


def is_waiting(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'", [pid]
        )
        return cursor.fetchone() is not None


def tables_written_by(pid: int) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relation::regclass::text FROM pg_locks "
            "WHERE pid = %s AND mode = 'RowExclusiveLock' AND relation IS NOT NULL",
            [pid],
        )
        return {name for (name,) in cursor.fetchall()}


def terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert cursor.fetchone() == (True,)
    wait_for(lambda: pid not in _backends(), 10, f"backend {pid} to end")


def _backends() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return {pid for (pid,) in cursor.fetchall()}


def written(object_id: str, model=Customer) -> dict[str, object]:
    """What exists of one object: its version and how many history and feed rows."""
    obj = model.objects.filter(pk=object_id).first()
    return {
        "version": obj.version if obj else None,
        "history": model.history.filter(id=object_id).count(),
        "feed": Change.objects.filter(object_id=object_id).count(),
    }


def test_a_push_cut_off_from_the_database_is_whole_or_absent_and_its_retry_converges(alice):
    existing = customer("Existing")
    alice.push(existing)
    new = customer("New")
    batch = [
        new,
        update(CUSTOMER, existing["id"], 1, phone="555"),
        work_order(new["id"], "Order on the new customer"),
        work_order(existing["id"], "Order on the existing one"),
    ]
    mids = [uuid.UUID(m["mutation_id"]) for m in batch]
    outbox_before = PushOutbox.objects.count()

    first, second = raw_connection(), raw_connection()
    first.execute("BEGIN")
    first.execute(HOLD)
    call = Call(alice, batch)
    call.start()
    try:
        # 1. The whole batch, written and waiting for the feed lock: cut off.
        wait_for(waiting_for_the_feed_lock, 20, "the batch to reach the feed")
        (whole,) = waiting_for_the_feed_lock()
        assert {
            "fieldwork_customer",
            "fieldwork_historicalcustomer",
            "fieldwork_workorder",
            "fieldwork_historicalworkorder",
            "sync_mutationrecord",
        } <= tables_written_by(whole)
        terminate(whole)

        # 2. The service falls back to one mutation per transaction, on a new
        # connection. Queue a second holder behind the first mutation, so that
        # it commits and the second one then waits.
        wait_for(lambda: waiting_for_the_feed_lock(but={whole}), 20, "the first single write")
        (alone,) = waiting_for_the_feed_lock(but={whole})
        second.execute("BEGIN")
        # Behind the waiting insert in the lock queue, though SHARE and SHARE
        # would not conflict: PostgreSQL queues it after a conflicting waiter.
        queued = threading.Thread(target=second.execute, args=(HOLD,))
        queued.start()
        wait_for(lambda: is_waiting(second.info.backend_pid), 20, "the second holder to queue")
        first.execute("COMMIT")
        queued.join(20)
        assert not queued.is_alive()
        # The fallback goes on over the same connection: once the first
        # mutation has committed, the same backend waits again, for the second.
        wait_for(lambda: MutationRecord.objects.filter(mutation_id=mids[0]).exists(), 20, "m1")
        wait_for(lambda: waiting_for_the_feed_lock(but={whole}) == [alone], 20, "the second one")
        next_one = alone
        terminate(next_one)
        call.join(30)
        assert not call.is_alive()
    finally:
        first.close()  # their locks go with their connections
        second.close()

    # The device got an error, not a success it could trust.
    assert call.response.status_code == 500, call.response.content
    assert call.response.json()["code"] == "server_error"
    # The first mutation alone committed, whole; nothing of the others.
    assert written(new["id"]) == {"version": 1, "history": 1, "feed": 1}
    assert written(existing["id"]) == {"version": 1, "history": 1, "feed": 1}
    assert not WorkOrder.objects.exists() and not WorkOrder.history.exists()
    stored = set(MutationRecord.objects.filter(mutation_id__in=mids).values_list("mutation_id"))
    assert stored == {(mids[0],)}
    assert PushOutbox.objects.count() == outbox_before + 1
    sync_check_passes()

    # The device retries the same batch: the first is replayed, the rest applied.
    retry = alice.push(*batch)["results"]
    assert [r["status"] for r in retry] == ["applied"] * 4
    assert [r["version"] for r in retry] == [1, 2, 1, 1]
    assert written(new["id"]) == {"version": 1, "history": 1, "feed": 1}
    assert written(existing["id"]) == {"version": 2, "history": 2, "feed": 2}
    for m in batch[2:]:
        assert written(m["id"], WorkOrder) == {"version": 1, "history": 1, "feed": 1}
    assert MutationRecord.objects.filter(mutation_id__in=mids).count() == 4
    # And again: nothing applies twice.
    assert alice.push(*batch)["results"] == retry
    assert Customer.objects.get(pk=existing["id"]).version == 2
    sync_check_passes()
