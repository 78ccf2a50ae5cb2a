"""`manage.py sync_check`: a database written through the services passes, and
each invariant broken on purpose (rows written directly, past the capture of
writes, which is the point here) is reported."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fieldwork.models import Customer, Note, WorkOrder
from sync.engine.compaction import feed_compact
from sync.engine.integrity import integrity_check
from sync.models import Change, Conflict, MutationRecord
from sync.writers import service_writes as uncaptured
from tests.factories import customer, delete, mutation, team_of, update, work_order

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"
WORK_ORDER = "fieldwork.workorder"


def problems(check: str | None = None) -> list[str]:
    report = integrity_check()
    return [
        f"{p.model} {p.object_id}: {p.detail}"
        for p in report.problems
        if check is None or p.check == check
    ]


@pytest.fixture
def scene(alice, bob):
    """Every kind of write through the services: creates, updates, a move out of
    a team, a delete, a restore by resolving a conflict, an open conflict."""
    team = team_of(alice.user, bob.user)
    c = customer("Acme", team=str(team.pk))
    w = work_order(c["id"], team=str(team.pk))
    n = mutation("fieldwork.note", data={"work_order": w["id"], "body": "hello"})
    gone = customer("Gone")
    assert {r["status"] for r in alice.push(c, w, n, gone)["results"]} == {"applied"}
    alice.push(update(CUSTOMER, c["id"], 1, phone="1"), update(CUSTOMER, c["id"], 2, phone="2"))
    moved = customer("Mover", team=str(team.pk))
    alice.push(moved)
    alice.push(update(CUSTOMER, moved["id"], 1, team=None))  # leaves the team channel
    alice.push(delete(CUSTOMER, gone["id"], 1))
    # bob edits the work order; alice's stale edit of the same field stays open.
    bob.push(update(WORK_ORDER, w["id"], 1, title="bob"))
    assert alice.push_one(update(WORK_ORDER, w["id"], 1, title="alice"))["status"] == "conflict"
    # A customer deleted, edited offline, and brought back by resolving that.
    back = customer("Back")
    alice.push(back)
    alice.push(delete(CUSTOMER, back["id"], 1))
    raised = alice.push_one(update(CUSTOMER, back["id"], 1, phone="9"))
    assert raised["status"] == "conflict"
    response = alice.client.post(
        f"/api/v1/sync/conflicts/{raised['conflict_id']}/resolve/",
        {"choice": "client", "expected_version": 2},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["object"]["data"]["phone"] == "9"
    return {"customer": c, "work_order": w, "note": n, "gone": gone, "moved": moved}


def test_a_database_written_through_the_services_passes(scene):
    report = integrity_check()
    assert report.problems == []
    assert report.counts["objects"] == 6
    assert report.counts["open_conflicts"] == 1
    # work order → customer, work order → the one it follows up, note → work
    # order, equipment → customer
    assert report.counts["references"] == 4


def test_compaction_leaves_it_passing(scene):
    stats = feed_compact()
    assert stats["superseded"] > 0
    assert problems() == []
    # Much later, the tombstone of the deleted customer expires and is purged.
    later = timezone.now() + dt.timedelta(days=400)
    assert feed_compact(now=later)["tombstones"] >= 1
    assert not Change.objects.filter(object_id=scene["gone"]["id"]).exists()
    assert problems() == []


def test_the_command_says_ok_with_counts(scene, capsys):
    call_command("sync_check")
    out = capsys.readouterr().out
    assert out.startswith("sync_check ok: 4 models, 6 objects,")


def test_the_command_lists_each_problem_and_fails(scene, capsys):
    with uncaptured():
        Customer.objects.filter(pk=scene["customer"]["id"]).update(name="behind the service's back")
    Conflict.objects.create(
        model=CUSTOMER,
        object_id=uuid.uuid4(),
        kind="update_update",
        policy="merge",
        server_version=1,
        client_op="update",
    )
    with pytest.raises(CommandError, match=r"found 2 problem\(s\)"):
        call_command("sync_check")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[conflict] fieldwork.customer ")
    assert lines[1] == (
        f"[history] fieldwork.customer {scene['customer']['id']}: current values differ "
        "from history at version 3 (written without history?)"
    )


# --- history ------------------------------------------------------------------------------


def test_a_version_bumped_without_history_or_feed_is_reported(scene):
    c = scene["customer"]["id"]
    with uncaptured():
        Customer.objects.filter(pk=c).update(version=F("version") + 1)
    team = Customer.objects.get(pk=c).team_id
    assert problems(check="history") == [
        f"{CUSTOMER} {c}: history misses versions 4",
        f"{CUSTOMER} {c}: version 4 but newest history is 3",
    ]
    user = Customer.objects.get(pk=c).owner_id
    assert problems(check="feed") == [
        f"{CUSTOMER} {c}: no upsert of version 4 in team:{team} "
        "(its newest is the upsert of version 3)",
        f"{CUSTOMER} {c}: no upsert of version 4 in user:{user} "
        "(its newest is the upsert of version 3)",
    ]


def test_missing_history_rows_are_named(scene):
    c = scene["customer"]["id"]
    Customer.history.filter(id=c, version__in=[1, 2]).delete()
    assert problems() == [f"{CUSTOMER} {c}: history misses versions 1-2"]
    Customer.history.filter(id=c).delete()
    assert problems() == [f"{CUSTOMER} {c}: no history at all (version 3)"]


def test_a_version_recorded_twice_is_reported(scene):
    c = scene["customer"]["id"]
    row = Customer.history.filter(id=c, version=2).get()
    row.pk = None
    row.save()
    assert problems() == [f"{CUSTOMER} {c}: a version has several history rows"]


def test_values_changed_without_history_are_reported(scene):
    w = scene["work_order"]["id"]
    with uncaptured():
        WorkOrder.objects.filter(pk=w).update(title="sneaky")
    assert problems() == [
        f"{WORK_ORDER} {w}: current values differ from history at version 2 "
        "(written without history?)"
    ]


# --- change feed --------------------------------------------------------------------------


def test_a_missing_feed_row_of_the_current_version_is_reported(scene):
    n = scene["note"]["id"]
    note = Note.objects.get(pk=n)
    Change.objects.filter(object_id=n, channel=f"user:{note.owner_id}").delete()
    assert problems() == [
        f"fieldwork.note {n}: no upsert of version 1 in user:{note.owner_id} (it has none)"
    ]


def test_a_tombstone_removed_before_its_time_is_reported(scene):
    gone = scene["gone"]["id"]
    owner = Customer.objects.get(pk=gone).owner_id
    Change.objects.filter(object_id=gone, op=Change.Op.DELETE).delete()
    feed_compact()  # a compaction ran, but the tombstone was not old enough for it
    assert problems() == [
        f"{CUSTOMER} {gone}: no delete of version 2 in user:{owner} "
        "(its newest is the upsert of version 1)"
    ]


def test_an_object_that_left_a_channel_without_a_delete_there_is_reported(scene):
    moved = scene["moved"]["id"]
    team = Customer.history.get(id=moved, version=1).team_id
    Change.objects.filter(object_id=moved, channel=f"team:{team}", version=2).delete()
    assert problems() == [
        f"{CUSTOMER} {moved}: team:{team} still has an upsert of version 1 as its newest row, "
        "but the object is no longer there"
    ]


def test_feed_rows_repeated_or_ahead_of_the_object_are_reported(scene):
    n = scene["note"]["id"]
    channel = f"user:{Note.objects.get(pk=n).owner_id}"
    again = Change.objects.create(
        channel=channel, model="fieldwork.note", object_id=n, version=1, op=1
    )
    assert problems() == [f"fieldwork.note {n}: {channel} has version 1 (#{again.seq}) twice"]
    again.delete()
    ahead = Change.objects.create(
        channel=channel, model="fieldwork.note", object_id=n, version=5, op=1
    )
    assert problems() == [
        f"fieldwork.note {n}: no upsert of version 1 in {channel} "
        "(its newest is the upsert of version 5)",
        f"fieldwork.note {n}: {channel} has version 5 (#{ahead.seq}) but the object is at 1",
    ]


def test_feed_rows_of_missing_objects_and_unknown_models_are_reported(scene):
    ghost = uuid.uuid4()
    Change.objects.create(channel="user:1", model=CUSTOMER, object_id=ghost, version=1, op=1)
    Change.objects.create(channel="user:1", model="nope.gone", object_id=ghost, version=1, op=1)
    assert problems() == [
        f"{CUSTOMER} {ghost}: 1 feed row(s) but no such object",
        "nope.gone : 1 feed row(s) of an unregistered model",
    ]


# --- conflicts, references, push results -------------------------------------------------


def test_open_conflicts_about_missing_objects_or_unregistered_models_are_reported(scene):
    ghost = uuid.uuid4()
    fields = {
        "kind": "update_update",
        "policy": "merge",
        "server_version": 1,
        "client_op": "update",
    }
    missing = Conflict.objects.create(model=CUSTOMER, object_id=ghost, **fields)
    unknown = Conflict.objects.create(model="nope.gone", object_id=ghost, **fields)
    Conflict.objects.create(model=CUSTOMER, object_id=uuid.uuid4(), status="resolved", **fields)
    assert problems() == [
        f"{CUSTOMER} {ghost}: open conflict {missing.pk} is about a missing object",
        f"nope.gone {ghost}: open conflict {unknown.pk} is about an unregistered model",
    ]


def test_a_live_object_referencing_a_deleted_one_is_reported(scene):
    # Today a customer with work orders can be deleted and its orders keep
    # pointing at it; built directly here, whatever deletes do.
    w, gone = scene["work_order"]["id"], scene["gone"]["id"]
    WorkOrder.objects.filter(pk=w).update(customer_id=gone)
    WorkOrder.history.filter(id=w, version=2).update(customer_id=gone)
    assert problems() == [f"{WORK_ORDER} {w}: customer is deleted {CUSTOMER} {gone}"]
    # A deleted object's own references are nobody's concern, but the note on
    # it now points at a deleted work order.
    WorkOrder.objects.filter(pk=w).update(deleted_at=timezone.now())
    WorkOrder.history.filter(id=w, version=2).update(deleted_at=timezone.now())
    assert problems(check="reference") == [
        f"fieldwork.note {scene['note']['id']}: work_order is deleted {WORK_ORDER} {w}"
    ]


@pytest.mark.postgres
def test_a_live_object_referencing_a_missing_one_is_reported(scene):
    w = scene["work_order"]["id"]
    ghost = uuid.uuid4()
    with connection.cursor() as cursor:
        # Foreign keys are triggers; a replica session skips them, as a broken
        # import or a table without db_constraint could.
        cursor.execute("SET session_replication_role = replica")
        try:
            WorkOrder.objects.filter(pk=w).update(customer_id=ghost)
            WorkOrder.history.filter(id=w, version=2).update(customer_id=ghost)
            assert problems(check="reference") == [
                f"{WORK_ORDER} {w}: customer is missing {CUSTOMER} {ghost}"
            ]
            WorkOrder.objects.filter(pk=w).update(customer_id=scene["customer"]["id"])
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")


def test_a_stored_push_result_ahead_of_its_object_is_reported(scene, alice):
    c = scene["customer"]["id"]
    record = MutationRecord.objects.filter(object_id=c).order_by("-id").first()
    record.result = {**record.result, "version": 7}
    record.save()
    ghost = uuid.uuid4()
    MutationRecord.objects.create(
        user=alice.user,
        mutation_id=uuid.uuid4(),
        model=CUSTOMER,
        object_id=ghost,
        status="applied",
        result={"status": "applied", "version": 1},
    )
    assert problems() == sorted(
        [
            f"{CUSTOMER} {c}: stored result applied at version 7, object at 3",
            f"{CUSTOMER} {ghost}: stored result applied but no such object",
        ]
    )


# --- cost -----------------------------------------------------------------------------------


def test_queries_do_not_grow_with_objects_only_with_chunks(alice):
    def customers(n: int) -> None:
        for _ in range(n // 10):
            alice.push(*[customer(f"c{i}") for i in range(10)])

    def queries(**kwargs: int) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert integrity_check(**kwargs).ok
        return len(ctx)

    customers(10)
    ten = queries()
    customers(90)
    assert queries() == ten
    # 100 customers (and their 100 push results) in chunks of 25 rather than one:
    # customers 4 more pages and 3 x 3 more history and feed queries, one more
    # empty page to see the end; push results 4 + 3 more likewise.
    assert queries(chunk_size=25) == ten + (4 + 9) + (4 + 3)
