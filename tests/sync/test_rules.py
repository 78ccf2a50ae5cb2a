"""Rules of push that a one-line slip in the service would break silently.

Each test pins one documented rule (docs/protocol.md) through the HTTP API and
the rows it documents, with expected values written out by hand.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model

from devices.models import Device
from fieldwork.models import Customer, Note, WorkOrder
from fieldwork.services import team_member_add
from sync import registry
from sync.choices import OnStale
from sync.engine.write import mutations_apply, object_write
from sync.models import Change, Conflict, MutationRecord
from sync.registry import Resolution
from tests.factories import (
    TeamFactory,
    customer,
    delete,
    mutation,
    team_of,
    update,
    work_order,
)
from tests.helpers import push_as_one_batch, wire_datetime

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"
ORDER = "fieldwork.workorder"
NOTE = "fieldwork.note"


@pytest.fixture
def policy(monkeypatch):
    def set_policy(label: str, name: str) -> None:
        monkeypatch.setattr(registry.get(label), "policy", name)

    return set_policy


def customer_wire(owner_id: int, created, updated, **fields) -> dict:
    """A customer's full wire form: the defaults of a customer created with only a name."""
    return {
        "name": "Acme",
        "email": "",
        "phone": "",
        "address": "",
        "team": None,
        "owner": owner_id,
        "created_at": wire_datetime(created),
        "updated_at": wire_datetime(updated),
        **fields,
    }


# --- delete-vs-update and update-vs-delete settled by the policy ------------------


def test_client_wins_delete_of_changed_object_deletes_it(alice):
    # fieldwork.note is registered with client_wins.
    c = customer("Acme")
    o = work_order(c["id"])
    n = mutation(NOTE, data={"work_order": o["id"], "body": "first"})
    alice.push(c, o, n)
    alice.push_one(update(NOTE, n["id"], 1, body="edited elsewhere"))  # server now at 2

    result = alice.push_one(delete(NOTE, n["id"], 1))

    assert result["status"] == "merged"
    assert result["data"] is None
    assert result["version"] == 3
    assert result["conflict_id"] is None and result["errors"] is None
    note = Note.objects.get(pk=n["id"])
    assert note.deleted_at is not None
    assert note.version == 3
    assert list(note.history.order_by("history_id").values_list("version", "history_type")) == [
        (1, "+"),
        (2, "~"),
        (3, "-"),
    ]
    assert not Conflict.objects.exists()
    changes, _ = alice.pull_all()
    assert n["id"] not in [ch["id"] for ch in changes]  # an initial sync skips it


def test_server_wins_update_of_deleted_object_keeps_it_deleted(alice, policy):
    policy(CUSTOMER, "server_wins")
    c = customer("Acme")
    alice.push_one(c)
    alice.push_one(delete(CUSTOMER, c["id"], 1))  # server now at 2, deleted

    result = alice.push_one(update(CUSTOMER, c["id"], 1, phone="555"))

    assert result["status"] == "merged"
    assert result["data"] is None
    assert result["version"] == 2
    assert result["conflict_id"] is None and result["errors"] is None
    obj = Customer.objects.get(pk=c["id"])
    assert obj.deleted_at is not None
    assert (obj.version, obj.phone) == (2, "")
    assert obj.history.count() == 2
    assert not Conflict.objects.exists()


# --- a custom resolver's output is validated like a push ---------------------------


@pytest.fixture
def order_in_clash(alice):
    """A work order moved to `done` (version 2) while another device, at version 1,
    has it `scheduled`: pushing that update makes `status` the overlapping field."""
    c = customer("Acme")
    o = work_order(c["id"], status="open")
    alice.push(c, o)
    alice.push_one(update(ORDER, o["id"], 1, status="done"))
    return o


def _resolver_returning(values: dict):
    def resolve(base, server, client, fields):
        return Resolution(values=values)

    return resolve


@pytest.mark.parametrize(
    "values_for",
    [
        pytest.param(lambda other: {"status": "finished"}, id="not-a-choice"),
        pytest.param(lambda other: {"status": 5}, id="wrong-json-type"),
        pytest.param(lambda other: {"estimated_hours": "two"}, id="not-a-number"),
        pytest.param(lambda other: {"colour": "red"}, id="unknown-field"),
        pytest.param(lambda other: {"created_at": "2001-01-01T00:00:00Z"}, id="read-only-field"),
        pytest.param(lambda other: {"owner": other.pk}, id="read-only-owner"),
    ],
)
def test_invalid_resolver_output_is_not_written_and_queues_a_conflict(
    alice, bob, order_in_clash, monkeypatch, values_for
):
    values = values_for(bob.user)
    monkeypatch.setattr(registry.get(ORDER), "resolver", _resolver_returning(values))
    o = order_in_clash

    result = alice.push_one(update(ORDER, o["id"], 1, status="scheduled"))

    assert result["status"] == "conflict"
    assert result["version"] == 2
    assert result["data"]["status"] == "done"
    assert result["data"]["owner"] == alice.user.pk
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    assert (conflict.kind, conflict.policy, conflict.fields) == (
        "update_update",
        "custom",
        ["status"],
    )
    obj = WorkOrder.objects.get(pk=o["id"])
    assert (obj.version, obj.status, obj.estimated_hours, obj.owner_id) == (
        2,
        "done",
        None,
        alice.user.pk,
    )
    assert obj.created_at.year != 2001
    assert obj.history.count() == 2


def test_valid_resolver_output_is_written(alice, order_in_clash, monkeypatch):
    monkeypatch.setattr(
        registry.get(ORDER),
        "resolver",
        _resolver_returning({"status": "cancelled", "priority": "urgent"}),
    )
    o = order_in_clash

    result = alice.push_one(update(ORDER, o["id"], 1, status="scheduled"))

    assert result["status"] == "merged"
    assert result["version"] == 3
    assert (result["data"]["status"], result["data"]["priority"]) == ("cancelled", "urgent")
    obj = WorkOrder.objects.get(pk=o["id"])
    assert (obj.version, obj.status, obj.priority) == (3, "cancelled", "urgent")
    assert not Conflict.objects.exists()


# --- the Conflict row, field by field, for each kind -------------------------------


def test_update_update_conflict_row(alice):
    c = customer("Acme", phone="1")
    alice.push_one(c)
    alice.push_one(update(CUSTOMER, c["id"], 1, phone="2", name="Acme Ltd"))  # server at 2
    clash = update(CUSTOMER, c["id"], 1, phone="3", name="Acme Inc", email="x@acme.test")

    result = alice.push_one(clash)

    assert result["status"] == "conflict"
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    obj = Customer.objects.get(pk=c["id"])
    v1 = obj.history.get(version=1)
    assert conflict.kind == "update_update"
    assert conflict.client_op == "update"
    assert conflict.fields == ["name", "phone"]  # the overlap, sorted; email was disjoint
    assert conflict.base_version == 1
    # The disjoint email was written at once (version 3); the conflict is about
    # the object as it is after that, and holds only the clashing fields.
    assert conflict.server_version == 3 and obj.version == 3 and obj.email == "x@acme.test"
    assert conflict.base_data == customer_wire(
        alice.user.pk, obj.created_at, v1.updated_at, phone="1"
    )
    assert conflict.server_data == customer_wire(
        alice.user.pk,
        obj.created_at,
        obj.updated_at,
        name="Acme Ltd",
        phone="2",
        email="x@acme.test",
    )
    assert conflict.client_data == {"phone": "3", "name": "Acme Inc"}
    assert (conflict.status, conflict.policy) == ("open", "merge")
    assert (conflict.user_id, conflict.device_id) == (alice.user.pk, alice.device_id)
    assert conflict.mutation_id == uuid.UUID(clash["mutation_id"])
    assert obj.phone == "2" and obj.name == "Acme Ltd"  # the clashing fields wait for a person


def test_update_delete_conflict_row(alice):
    c = customer("Acme", phone="1")
    alice.push_one(c)
    alice.push_one(update(CUSTOMER, c["id"], 1, address="1 Road"))  # server at 2
    alice.push_one(delete(CUSTOMER, c["id"], 2))  # server at 3, deleted
    clash = update(CUSTOMER, c["id"], 1, phone="9", email="e@acme.test")

    result = alice.push_one(clash)

    assert result["status"] == "conflict"
    assert result["data"] is None and result["version"] == 3
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    obj = Customer.objects.get(pk=c["id"])
    v1 = obj.history.get(version=1)
    assert conflict.kind == "update_delete"
    assert conflict.client_op == "update"
    assert conflict.fields == ["email", "phone"]  # the fields sent, sorted
    assert conflict.base_version == 1
    assert conflict.server_version == 3
    assert conflict.base_data == customer_wire(
        alice.user.pk, obj.created_at, v1.updated_at, phone="1"
    )
    assert conflict.server_data is None
    assert conflict.client_data == {"phone": "9", "email": "e@acme.test"}
    assert (conflict.status, conflict.policy) == ("open", "merge")
    assert conflict.mutation_id == uuid.UUID(clash["mutation_id"])
    assert obj.deleted_at is not None and obj.version == 3 and obj.phone == "1"


def test_delete_update_conflict_row(alice):
    c = customer("Acme")
    alice.push_one(c)
    alice.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    alice.push_one(update(CUSTOMER, c["id"], 2, email="e@acme.test"))  # server at 3
    clash = delete(CUSTOMER, c["id"], 1)

    result = alice.push_one(clash)

    assert result["status"] == "conflict"
    assert result["version"] == 3
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    obj = Customer.objects.get(pk=c["id"])
    v1 = obj.history.get(version=1)
    assert conflict.kind == "delete_update"
    assert conflict.client_op == "delete"
    assert conflict.fields == []
    assert conflict.base_version == 1
    assert conflict.server_version == 3
    assert conflict.base_data == customer_wire(alice.user.pk, obj.created_at, v1.updated_at)
    assert conflict.server_data == customer_wire(
        alice.user.pk, obj.created_at, obj.updated_at, phone="2", email="e@acme.test"
    )
    assert conflict.client_data is None
    assert (conflict.status, conflict.policy) == ("open", "merge")
    assert conflict.mutation_id == uuid.UUID(clash["mutation_id"])
    assert obj.deleted_at is None and obj.version == 3


# --- malformed mutations are recorded for replay ------------------------------------


@pytest.mark.parametrize(
    ("envelope", "error_key"),
    [
        pytest.param({"model": "nope.nope", "op": "create"}, "model", id="unknown-model"),
        pytest.param({"model": CUSTOMER, "op": "upsert"}, "op", id="bad-op"),
        pytest.param(
            {"model": CUSTOMER, "op": "update", "base_version": -1}, "base_version", id="bad-base"
        ),
    ],
)
def test_malformed_mutation_is_recorded_and_replayed(alice, envelope, error_key):
    mutation_id, object_id = str(uuid.uuid4()), str(uuid.uuid4())
    bad = {"mutation_id": mutation_id, "id": object_id, "data": {"name": "x"}, **envelope}

    first = alice.push_one(bad)

    assert first["status"] == "rejected"
    assert (first["mutation_id"], first["id"]) == (mutation_id, object_id)
    assert list(first["errors"]) == [error_key]
    record = MutationRecord.objects.get(user=alice.user, mutation_id=mutation_id)
    assert record.status == "rejected"
    assert record.device_id == alice.device_id
    assert record.result == first
    assert alice.push_one(bad) == first
    # The match is on mutation_id alone: a corrected mutation under the used id
    # still gets the stored rejection, and nothing is written.
    fixed = {**customer("x"), "mutation_id": mutation_id, "id": object_id}
    assert alice.push_one(fixed) == first
    assert not Customer.objects.filter(pk=object_id).exists()
    assert MutationRecord.objects.filter(user=alice.user).count() == 1


# --- the device's last cursor -------------------------------------------------------


def test_push_without_cursor_starts_from_the_devices_last_pull(alice):
    alice.push(customer("one"), customer("two"))
    device = Device.objects.get(pk=alice.device_id)
    assert device.last_cursor == ""

    page = alice.pull(limit=1)
    assert page["has_more"] is True
    device.refresh_from_db()
    assert device.last_cursor == ""  # only a finished pull is kept

    _, cursor = alice.pull_all(page["cursor"])
    device.refresh_from_db()
    assert device.last_cursor == cursor

    mine = customer("mine")
    body = alice.push(mine)  # no cursor in the body

    after = alice.pull(cursor=body["cursor"])
    assert after["changes"] == []  # its own write is not sent back
    assert after["has_more"] is False


# --- history --------------------------------------------------------------------------


def test_history_names_the_pushing_user_and_device(alice, bob, make_actor):
    tablet = make_actor(user=alice.user)
    team = TeamFactory()
    team_member_add(team=team, user=alice.user)
    team_member_add(team=team, user=bob.user)
    c = customer("Acme", team=str(team.pk))
    alice.push_one(c)
    tablet.push_one(update(CUSTOMER, c["id"], 1, phone="1"))
    bob.push_one(update(CUSTOMER, c["id"], 2, email="b@acme.test"))
    tablet.push_one(delete(CUSTOMER, c["id"], 3))

    rows = list(
        Customer.history.filter(id=c["id"])
        .order_by("history_id")
        .values_list("version", "history_type", "history_user_id", "history_change_reason")
    )
    assert rows == [
        (1, "+", alice.user.pk, f"push from device {alice.device_id}"),
        (2, "~", alice.user.pk, f"push from device {tablet.device_id}"),
        (3, "~", bob.user.pk, f"push from device {bob.device_id}"),
        (4, "-", alice.user.pk, f"push from device {tablet.device_id}"),
    ]


def test_history_change_reason_is_cut_to_100_characters(alice):
    c = customer("Acme")
    mutations_apply(user=alice.user, mutations=[c], reason="r" * 150)
    row = Customer.history.get(id=c["id"])
    assert row.history_change_reason == "r" * 100


def test_each_version_remembers_the_device_that_wrote_it(alice, make_actor):
    tablet = make_actor(user=alice.user)
    c = customer("Acme")
    alice.push_one(c)
    tablet.push_one(update(CUSTOMER, c["id"], 1, phone="1"))
    assert Customer.objects.get(pk=c["id"]).last_device_id == tablet.device_id
    rows = Customer.history.filter(id=c["id"]).order_by("history_id")
    assert list(rows.values_list("version", "last_device_id")) == [
        (1, alice.device_id),
        (2, tablet.device_id),
    ]


def test_history_has_every_version_written_in_one_batch_with_its_values(alice, make_actor):
    once, thrice = customer("Once"), customer("Thrice")
    alice.push(
        once,
        thrice,
        update(CUSTOMER, thrice["id"], 1, phone="1"),
        update(CUSTOMER, thrice["id"], 2, phone="2"),
    )
    alice.push(update(CUSTOMER, once["id"], 1, name="Once more"), delete(CUSTOMER, thrice["id"], 3))
    rows = Customer.history.order_by("history_id").values_list(
        "id", "version", "history_type", "name", "phone", "deleted_at"
    )
    by_object = {
        key: [r[1:5] + (r[5] is not None,) for r in rows if str(r[0]) == key]
        for key in (once["id"], thrice["id"])
    }
    assert by_object[once["id"]] == [(1, "+", "Once", "", False), (2, "~", "Once more", "", False)]
    assert by_object[thrice["id"]] == [
        (1, "+", "Thrice", "", False),
        (2, "~", "Thrice", "1", False),
        (3, "~", "Thrice", "2", False),
        (4, "-", "Thrice", "2", True),
    ]


# --- the documented rejection messages, word for word (docs/protocol.md) -----------


def test_documented_rejection_messages(alice):
    c = customer("Acme")
    alice.push_one(c)
    cases = [
        (
            update(CUSTOMER, c["id"], 5, phone="1"),
            {"base_version": ["Ahead of the server, which is at version 1."]},
        ),
        (
            mutation(CUSTOMER, "update", c["id"], {"phone": "1"}, None),
            {"base_version": ["Required for update and delete."]},
        ),
        (
            mutation(CUSTOMER, "create", c["id"], {"name": "Dup"}),
            {"id": ["An object with this id already exists."]},
        ),
        (
            update(CUSTOMER, str(uuid.uuid4()), 1, phone="1"),
            {"id": ["No fieldwork.customer with this id in your scope."]},
        ),
        (
            mutation(CUSTOMER, "create", None, {"name": "New"}, 1),
            {"base_version": ["Must be null for a create."]},
        ),
        (mutation(CUSTOMER, data={"email": "a@acme.test"}), {"name": ["This field is required."]}),
    ]
    for m, errors in cases:
        result = alice.push_one(m)
        assert (result["status"], result["errors"]) == ("rejected", errors), m
    assert Customer.objects.get(pk=c["id"]).version == 1


def test_a_create_tolerates_base_version_0(alice):
    m = mutation(CUSTOMER, "create", None, {"name": "Zero"}, 0)
    result = alice.push_one(m)
    assert (result["status"], result["version"]) == ("applied", 1)


def test_every_invalid_field_is_reported_with_its_message(alice):
    # The fields are checked in the order sent; one bad field must not hide the next.
    m = mutation(
        ORDER,
        data={
            "colour": "red",
            "owner": alice.user.pk,
            "customer": str(uuid.uuid4()),
            "status": "bogus",
            "title": "Fix",
        },
    )
    result = alice.push_one(m)
    assert result["status"] == "rejected"
    assert result["errors"] == {
        "colour": ["Unknown field."],
        "owner": ["This field is read-only."],
        "customer": ["No fieldwork.customer with this id in your scope."],
        "status": ["Value 'bogus' is not a valid choice."],
    }


def test_an_update_at_the_version_of_a_delete_is_rejected(alice):
    c = customer("Acme")
    alice.push_one(c)
    alice.push_one(delete(CUSTOMER, c["id"], 1))
    result = alice.push_one(update(CUSTOMER, c["id"], 2, phone="1"))
    assert (result["status"], result["errors"]) == (
        "rejected",
        {"id": ["This object has been deleted."]},
    )
    obj = Customer.objects.get(pk=c["id"])
    assert (obj.version, obj.phone) == (2, "")


# --- references ------------------------------------------------------------------------


def test_references_to_objects_of_earlier_pushes(alice):
    team = team_of(alice.user)
    kept, gone = customer("Kept"), customer("Gone")
    alice.push(kept, gone)
    # A delete (no data) and a reference to a team come first in the batch: the
    # references of what follows are still checked against the database.
    results = alice.push(
        delete(CUSTOMER, gone["id"], 1),
        customer("In team", team=str(team.pk)),
        work_order(kept["id"]),
    )["results"]
    assert [r["status"] for r in results] == ["applied"] * 3
    late = alice.push_one(work_order(gone["id"]))
    assert (late["status"], late["errors"]) == (
        "rejected",
        {"customer": ["No fieldwork.customer with this id in your scope."]},
    )


def test_an_update_of_one_reference_checks_it(alice):
    team = team_of(alice.user)
    c = customer("Acme")
    o = work_order(c["id"])
    alice.push(c, o)
    result = alice.push_one(update(ORDER, o["id"], 1, team=str(team.pk)))
    assert result["status"] == "applied"
    assert WorkOrder.objects.get(pk=o["id"]).team_id == team.pk
    unknown = alice.push_one(update(ORDER, o["id"], 2, team=str(uuid.uuid4())))
    assert (unknown["status"], unknown["errors"]) == (
        "rejected",
        {"team": ["No fieldwork.team with this id in your scope."]},
    )


def test_a_malformed_reference_is_reported_alone(alice):
    team = team_of(alice.user)
    result = alice.push_one(work_order("not-a-uuid", team=str(team.pk)))
    assert result["status"] == "rejected"
    assert list(result["errors"]) == ["customer"]


# --- staff -----------------------------------------------------------------------------


def test_staff_may_set_the_owner_but_no_other_read_only_field(alice):
    staff = get_user_model().objects.create_superuser("boss", password="boss-pass-1234")
    c = customer("For alice", owner=alice.user.pk)
    result = object_write(user=staff, mutation=c, reason="created for alice")
    assert result.status == "applied"
    assert Customer.objects.get(pk=c["id"]).owner_id == alice.user.pk
    stamped = customer("Backdated", created_at="2001-01-01T00:00:00Z")
    result = object_write(user=staff, mutation=stamped, reason="backdated")
    assert (result.status, result.errors) == (
        "rejected",
        {"created_at": ["This field is read-only."]},
    )


# --- writers that refuse stale writes ----------------------------------------------


def test_refuse_answers_a_stale_write_with_the_current_state_and_records_nothing(alice):
    c = customer("Acme", phone="1")
    alice.push_one(c)
    alice.push_one(update(CUSTOMER, c["id"], 1, phone="2"))  # server at 2
    stale = update(CUSTOMER, c["id"], 1, email="e@acme.test")
    gone = delete(CUSTOMER, c["id"], 1)

    outcome = mutations_apply(user=alice.user, mutations=[stale, gone], on_stale=OnStale.REFUSE)

    assert [(r.status, r.version, r.data["phone"]) for r in outcome.results] == [
        ("stale", 2, "2"),
        ("stale", 2, "2"),
    ]
    obj = Customer.objects.get(pk=c["id"])
    assert (obj.version, obj.email, obj.deleted_at) == (2, "", None)
    assert not MutationRecord.objects.filter(
        mutation_id__in=[stale["mutation_id"], gone["mutation_id"]]
    ).exists()
    # Not recorded, so the same mutation may be tried again, and then merges.
    assert alice.push_one(stale)["status"] == "merged"
    current = update(CUSTOMER, c["id"], 3, phone="3")
    outcome = mutations_apply(user=alice.user, mutations=[current], on_stale=OnStale.REFUSE)
    assert (outcome.results[0].status, outcome.results[0].version) == ("applied", 4)


# --- several writes of one object in one batch -----------------------------------------


def test_a_write_based_on_a_version_made_earlier_in_the_batch_merges_against_it(alice):
    c = customer("Acme")
    results = alice.push(
        c, update(CUSTOMER, c["id"], 1, phone="1"), update(CUSTOMER, c["id"], 1, email="e@x.test")
    )["results"]
    assert [(r["status"], r["version"]) for r in results] == [
        ("applied", 1),
        ("applied", 2),
        ("merged", 3),
    ]
    obj = Customer.objects.get(pk=c["id"])
    assert (obj.phone, obj.email) == ("1", "e@x.test")
    assert not Conflict.objects.exists()


def test_replays_and_duplicates_answer_in_place_and_the_batch_goes_on(alice):
    c = customer("Acme")
    first = alice.push_one(c)
    u = update(CUSTOMER, c["id"], 1, phone="1")
    after = customer("After")
    results = push_as_one_batch(alice, c, u, u, after)
    assert results[0] == first  # replayed
    assert results[1]["status"] == "applied" and results[2] == results[1]
    assert (results[3]["status"], results[3]["id"]) == ("applied", after["id"])
    assert Customer.objects.get(pk=c["id"]).version == 2


# --- the change feed rows of a write ------------------------------------------------


def feed_rows(object_id: str, version: int) -> set[tuple[str, int]]:
    return set(
        Change.objects.filter(object_id=object_id, version=version).values_list("channel", "op")
    )


def test_moving_an_object_between_teams_tells_the_team_it_left(alice):
    a, b = team_of(alice.user), team_of(alice.user)
    c = customer("Acme", team=str(a.pk))
    alice.push_one(c)
    alice.push_one(update(CUSTOMER, c["id"], 1, team=str(b.pk)))
    assert feed_rows(c["id"], 2) == {
        (f"user:{alice.user.pk}", Change.Op.UPSERT),
        (f"team:{b.pk}", Change.Op.UPSERT),
        (f"team:{a.pk}", Change.Op.DELETE),
    }
    alice.push_one(delete(CUSTOMER, c["id"], 2))
    assert feed_rows(c["id"], 3) == {
        (f"user:{alice.user.pk}", Change.Op.DELETE),
        (f"team:{b.pk}", Change.Op.DELETE),
    }


# --- custom resolvers alongside disjoint fields -----------------------------------


def test_resolver_output_and_the_clients_disjoint_fields_are_all_written(
    alice, order_in_clash, monkeypatch
):
    monkeypatch.setattr(
        registry.get(ORDER), "resolver", _resolver_returning({"status": "cancelled"})
    )
    o = order_in_clash
    result = alice.push_one(
        update(ORDER, o["id"], 1, title="New title", status="scheduled", description="Why")
    )
    assert result["status"] == "merged"
    obj = WorkOrder.objects.get(pk=o["id"])
    assert (obj.version, obj.title, obj.description, obj.status) == (
        3,
        "New title",
        "Why",
        "cancelled",
    )
