from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fieldwork.models import Customer, WorkOrder
from sync import registry
from sync.models import Change, Conflict, MutationRecord
from tests.factories import TeamFactory, customer, delete, mutation, team_of, update, work_order

pytestmark = pytest.mark.django_db(transaction=False)

CUSTOMER = "fieldwork.customer"
ORDER = "fieldwork.workorder"


def test_create_is_applied_with_version_1_history_and_feed(alice):
    m = customer("Acme", email="ops@acme.test")
    result = alice.push_one(m)
    assert result["status"] == "applied"
    assert result["version"] == 1
    assert result["mutation_id"] == m["mutation_id"]
    assert result["data"]["name"] == "Acme"
    assert result["data"]["owner"] == alice.user.pk
    assert result["errors"] is None and result["conflict_id"] is None
    obj = Customer.objects.get(pk=m["id"])
    assert obj.version == 1 and obj.owner == alice.user
    assert list(obj.history.values_list("history_type", "version")) == [("+", 1)]
    assert obj.history.get().history_user == alice.user
    assert list(Change.objects.filter(object_id=obj.pk).values_list("channel", "version")) == [
        (f"user:{alice.user.pk}", 1)
    ]


def test_update_at_current_version_is_applied(alice):
    m = customer("Acme")
    alice.push_one(m)
    result = alice.push_one(update(CUSTOMER, m["id"], 1, phone="555-0101"))
    assert result["status"] == "applied"
    assert result["version"] == 2
    assert result["data"]["phone"] == "555-0101"
    assert Customer.objects.get(pk=m["id"]).phone == "555-0101"


def test_update_that_changes_nothing_makes_no_new_version(alice):
    m = customer("Acme")
    alice.push_one(m)
    result = alice.push_one(update(CUSTOMER, m["id"], 1, name="Acme"))
    assert result["status"] == "applied" and result["version"] == 1
    assert Customer.history.filter(id=m["id"]).count() == 1


def test_delete_is_soft_and_idempotent(alice):
    m = customer("Acme")
    alice.push_one(m)
    result = alice.push_one(delete(CUSTOMER, m["id"], 1))
    assert result["status"] == "applied"
    assert result["version"] == 2 and result["data"] is None
    obj = Customer.objects.get(pk=m["id"])
    assert obj.deleted_at is not None
    assert obj.history.order_by("history_id").last().history_type == "-"
    again = alice.push_one(delete(CUSTOMER, m["id"], 2))
    assert again["status"] == "applied" and again["version"] == 2


def test_disjoint_concurrent_changes_merge(alice):
    m = customer("Acme", phone="1")
    alice.push_one(m)
    alice.push_one(update(CUSTOMER, m["id"], 1, phone="2"))  # another device, first
    result = alice.push_one(update(CUSTOMER, m["id"], 1, email="new@acme.test"))
    assert result["status"] == "merged"
    assert result["version"] == 3
    assert result["data"]["phone"] == "2"
    assert result["data"]["email"] == "new@acme.test"


def test_same_change_on_both_sides_merges_without_conflict(alice):
    m = customer("Acme")
    alice.push_one(m)
    alice.push_one(update(CUSTOMER, m["id"], 1, phone="2"))
    result = alice.push_one(update(CUSTOMER, m["id"], 1, phone="2"))
    assert result["status"] == "merged" and result["version"] == 2
    assert not Conflict.objects.exists()


def test_overlapping_change_is_a_conflict_on_those_fields_and_the_rest_is_applied(alice):
    """The device's edits to fields nobody else changed are never lost: written
    at once, and only the clashing fields wait in the conflict."""
    m = customer("Acme", phone="1")
    alice.push_one(m)
    alice.push_one(update(CUSTOMER, m["id"], 1, phone="2"))
    clash = update(CUSTOMER, m["id"], 1, phone="3", email="x@acme.test")
    result = alice.push_one(clash)
    assert result["status"] == "conflict"
    assert result["version"] == 3
    assert result["data"]["phone"] == "2" and result["data"]["email"] == "x@acme.test"
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    assert conflict.status == "open"
    assert conflict.kind == "update_update"
    assert conflict.fields == ["phone"]
    assert conflict.base_data["phone"] == "1"
    assert conflict.server_data["phone"] == "2" and conflict.server_version == 3
    assert conflict.client_data == {"phone": "3"}
    assert conflict.user == alice.user and conflict.device_id == alice.device_id
    assert str(conflict.mutation_id) == clash["mutation_id"]
    assert conflict.policy == "merge"
    stored = Customer.objects.get(pk=m["id"])
    assert (stored.version, stored.phone, stored.email) == (3, "2", "x@acme.test")


def test_resolving_the_conflict_either_way_keeps_the_other_edits(alice):
    """The issue's case: title clashes, priority does not; whatever the
    resolution of title, priority stays as the device set it."""
    c = customer()
    w = work_order(c["id"], "Fix boiler")
    alice.push(c, w)
    alice.push_one(update(ORDER, w["id"], 1, title="Server title"))
    stale = update(ORDER, w["id"], 1, title="Phone title", priority="urgent")
    for choice, title in (("server", "Server title"), ("client", "Phone title")):
        result = alice.push_one({**stale, "mutation_id": str(uuid.uuid4())})
        assert result["status"] == "conflict", result
        resolved = alice.client.post(
            f"/api/v1/sync/conflicts/{result['conflict_id']}/resolve/",
            {"choice": choice, "expected_version": result["version"]},
            format="json",
        )
        assert resolved.status_code == 200, resolved.content
        job = WorkOrder.objects.get(pk=w["id"])
        assert (job.title, job.priority) == (title, "urgent")
        alice.push_one(update(ORDER, w["id"], job.version, title="Server title"))
        WorkOrder.objects.filter(pk=w["id"]).update(priority="normal")


@pytest.fixture
def policy(monkeypatch):
    def set_policy(label: str, name: str) -> None:
        monkeypatch.setattr(registry.get(label), "policy", name)

    return set_policy


def test_server_wins_keeps_server_fields_and_applies_the_rest(alice, policy):
    policy(CUSTOMER, "server_wins")
    m = customer("Acme", phone="1")
    alice.push_one(m)
    alice.push_one(update(CUSTOMER, m["id"], 1, phone="2"))
    result = alice.push_one(update(CUSTOMER, m["id"], 1, phone="3", email="e@acme.test"))
    assert result["status"] == "merged"
    assert result["data"]["phone"] == "2" and result["data"]["email"] == "e@acme.test"


def test_client_wins_takes_client_fields(alice, policy):
    policy(CUSTOMER, "client_wins")
    m = customer("Acme", phone="1")
    alice.push_one(m)
    alice.push_one(update(CUSTOMER, m["id"], 1, phone="2"))
    result = alice.push_one(update(CUSTOMER, m["id"], 1, phone="3"))
    assert result["status"] == "merged" and result["data"]["phone"] == "3"
    assert Customer.objects.get(pk=m["id"]).phone == "3"


def test_manual_policy_queues_even_disjoint_changes(alice, policy):
    policy(CUSTOMER, "manual")
    m = customer("Acme", phone="1")
    alice.push_one(m)
    alice.push_one(update(CUSTOMER, m["id"], 1, phone="2"))
    result = alice.push_one(update(CUSTOMER, m["id"], 1, email="e@acme.test"))
    assert result["status"] == "conflict"
    assert Conflict.objects.get(pk=result["conflict_id"]).fields == ["email"]


def test_custom_resolver_settles_status_and_queues_other_overlaps(alice):
    c = customer("Acme")
    o = work_order(c["id"], status="open")
    alice.push(c, o)
    alice.push_one(update(ORDER, o["id"], 1, status="done"))
    result = alice.push_one(update(ORDER, o["id"], 1, status="scheduled"))
    assert result["status"] == "merged"
    assert result["data"]["status"] == "done"  # further along wins
    alice.push_one(update(ORDER, o["id"], 2, title="A"))
    result = alice.push_one(update(ORDER, o["id"], 2, title="B"))
    assert result["status"] == "conflict"
    assert Conflict.objects.get(pk=result["conflict_id"]).policy == "custom"


def test_update_of_deleted_object_is_a_conflict_under_merge(alice):
    m = customer("Acme")
    alice.push_one(m)
    alice.push_one(delete(CUSTOMER, m["id"], 1))
    result = alice.push_one(update(CUSTOMER, m["id"], 1, phone="9"))
    assert result["status"] == "conflict"
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    assert conflict.kind == "update_delete" and conflict.server_data is None
    assert result["data"] is None


def test_update_of_deleted_object_resurrects_under_client_wins(alice, policy):
    policy(CUSTOMER, "client_wins")
    m = customer("Acme")
    alice.push_one(m)
    alice.push_one(delete(CUSTOMER, m["id"], 1))
    result = alice.push_one(update(CUSTOMER, m["id"], 1, phone="9"))
    assert result["status"] == "merged" and result["data"]["phone"] == "9"
    assert Customer.objects.get(pk=m["id"]).deleted_at is None


def test_delete_of_changed_object_is_a_conflict_under_merge(alice):
    m = customer("Acme")
    alice.push_one(m)
    alice.push_one(update(CUSTOMER, m["id"], 1, phone="2"))
    result = alice.push_one(delete(CUSTOMER, m["id"], 1))
    assert result["status"] == "conflict"
    assert Conflict.objects.get(pk=result["conflict_id"]).kind == "delete_update"
    assert Customer.objects.get(pk=m["id"]).deleted_at is None


def test_delete_of_changed_object_keeps_it_under_server_wins(alice, policy):
    policy(CUSTOMER, "server_wins")
    m = customer("Acme")
    alice.push_one(m)
    alice.push_one(update(CUSTOMER, m["id"], 1, phone="2"))
    result = alice.push_one(delete(CUSTOMER, m["id"], 1))
    assert result["status"] == "merged" and result["data"]["phone"] == "2"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": ""}, "name", "blank"),
        ({"name": "x" * 201}, "name", "at most 200"),
        ({"name": 5}, "name", "type string"),
        ({"name": "A", "email": "nope"}, "email", "valid email"),
        ({"name": "A", "owner": 1}, "owner", "read-only"),
        ({"name": "A", "version": 9}, "version", "Unknown field"),
        ({"name": "A", "colour": "red"}, "colour", "Unknown field"),
        ({"email": "a@b.test"}, "name", "required"),
        ({"name": None}, "name", "null"),
    ],
)
def test_invalid_data_is_rejected_with_field_errors(alice, data, field, message):
    m = mutation(CUSTOMER, data=data)
    result = alice.push_one(m)
    assert result["status"] == "rejected"
    assert message in " ".join(result["errors"][field])
    assert not Customer.objects.filter(pk=m["id"]).exists()


def test_invalid_choice_and_date_are_rejected(alice):
    c = customer("Acme")
    alice.push_one(c)
    result = alice.push_one(work_order(c["id"], status="bogus", scheduled_for="31/12/2026"))
    assert result["status"] == "rejected"
    assert "not a valid choice" in result["errors"]["status"][0]
    assert "scheduled_for" in result["errors"]


def test_envelope_errors_are_rejected(alice):
    results = alice.push(
        {
            "mutation_id": str(uuid.uuid4()),
            "model": "nope.nope",
            "op": "create",
            "id": str(uuid.uuid4()),
        },
        {
            "mutation_id": "not-a-uuid",
            "model": CUSTOMER,
            "op": "create",
            "id": str(uuid.uuid4()),
            "data": {"name": "x"},
        },
        {
            "mutation_id": str(uuid.uuid4()),
            "model": CUSTOMER,
            "op": "upsert",
            "id": str(uuid.uuid4()),
        },
        "garbage",
    )["results"]
    assert [r["status"] for r in results] == ["rejected"] * 4
    assert "model" in results[0]["errors"]
    assert "mutation_id" in results[1]["errors"]
    assert "op" in results[2]["errors"]
    assert "mutation" in results[3]["errors"]


@pytest.mark.parametrize("op", [{}, [], None, 1, ["create"]])
def test_an_op_that_is_not_a_string_is_rejected(alice, op):
    # Found by the fuzzer: a dict or list op (unhashable) was a 500.
    result = alice.push_one(
        mutation(CUSTOMER, "create", str(uuid.uuid4()), {"name": "x"}) | {"op": op}
    )
    assert result["status"] == "rejected"
    assert result["errors"]["op"] == ["Must be one of create, update, delete."]


def test_base_version_rules(alice):
    m = customer("Acme")
    alice.push_one(m)
    ahead = alice.push_one(update(CUSTOMER, m["id"], 5, phone="1"))
    missing = alice.push_one(mutation(CUSTOMER, "update", m["id"], {"phone": "1"}, None))
    assert ahead["status"] == missing["status"] == "rejected"
    assert "base_version" in ahead["errors"] and "base_version" in missing["errors"]
    again = alice.push_one(mutation(CUSTOMER, "create", m["id"], {"name": "Dup"}))
    assert again["status"] == "rejected" and "already exists" in again["errors"]["id"][0]


def test_unknown_object_is_rejected(alice):
    result = alice.push_one(update(CUSTOMER, str(uuid.uuid4()), 1, phone="1"))
    assert result["status"] == "rejected" and "id" in result["errors"]


def test_other_users_object_is_rejected_like_an_unknown_one(alice, bob):
    m = customer("Alice's")
    alice.push_one(m)
    for attempt in (update(CUSTOMER, m["id"], 1, name="Bob's now"), delete(CUSTOMER, m["id"], 1)):
        result = bob.push_one(attempt)
        assert result["status"] == "rejected"
        assert result["errors"] == {"id": ["No fieldwork.customer with this id in your scope."]}
    obj = Customer.objects.get(pk=m["id"])
    assert obj.name == "Alice's" and obj.deleted_at is None and obj.version == 1


def test_create_in_a_team_the_author_is_not_in_is_rejected(alice):
    team = TeamFactory()
    m = customer("Acme", team=str(team.pk))
    result = alice.push_one(m)
    assert result["status"] == "rejected"
    assert result["errors"] == {"team": ["You may only place objects in scopes you belong to."]}
    assert not Customer.objects.filter(pk=m["id"]).exists()


def test_teammate_may_not_move_an_object_out_of_their_shared_team(make_actor):
    owner, mate = make_actor(), make_actor()
    team = team_of(owner.user, mate.user)
    m = customer("Shared", team=str(team.pk))
    owner.push_one(m)
    result = mate.push_one(update(CUSTOMER, m["id"], 1, team=None))
    assert result["status"] == "rejected"
    outside = ["The object would be outside your scope."]
    assert result["errors"] == {"owner": outside, "team": outside}
    obj = Customer.objects.get(pk=m["id"])
    assert (obj.version, obj.team_id) == (1, team.pk)


def test_reference_to_other_users_object_is_rejected(alice, bob):
    c = customer("Alice's")
    alice.push_one(c)
    result = bob.push_one(work_order(c["id"]))
    assert result["status"] == "rejected"
    assert "in your scope" in result["errors"]["customer"][0]


def test_reference_to_object_created_earlier_in_the_batch(alice):
    c = customer("Acme")
    o = work_order(c["id"])
    note = mutation("fieldwork.note", data={"work_order": o["id"], "body": "hi"})
    results = alice.push(c, o, note)["results"]
    assert [r["status"] for r in results] == ["applied"] * 3
    assert WorkOrder.objects.get(pk=o["id"]).customer_id == uuid.UUID(c["id"])


def test_create_then_updates_of_same_object_in_one_batch(alice):
    c = customer("Acme")
    results = alice.push(
        c, update(CUSTOMER, c["id"], 1, phone="1"), update(CUSTOMER, c["id"], 2, phone="2")
    )["results"]
    assert [(r["status"], r["version"]) for r in results] == [
        ("applied", 1),
        ("applied", 2),
        ("applied", 3),
    ]
    obj = Customer.objects.get(pk=c["id"])
    assert obj.version == 3 and obj.phone == "2"
    assert list(obj.history.order_by("history_id").values_list("version", "phone")) == [
        (1, ""),
        (2, "1"),
        (3, "2"),
    ]


def test_one_bad_mutation_does_not_roll_back_the_others(alice):
    good1, good2 = customer("One"), customer("Two")
    bad = mutation(CUSTOMER, data={"name": ""})
    results = alice.push(good1, bad, good2)["results"]
    assert [r["status"] for r in results] == ["applied", "rejected", "applied"]
    assert Customer.objects.filter(pk__in=[good1["id"], good2["id"]]).count() == 2


def test_replay_returns_first_result_and_applies_nothing_twice(alice):
    c = customer("Acme")
    first = alice.push_one(c)
    u = update(CUSTOMER, c["id"], 1, phone="1")
    applied = alice.push_one(u)
    replay = alice.push_one(u)
    assert replay == applied
    replay_create = alice.push_one(c)
    assert replay_create == first
    assert Customer.objects.get(pk=c["id"]).version == 2
    assert Customer.history.filter(id=c["id"]).count() == 2
    assert MutationRecord.objects.filter(user=alice.user).count() == 2


def test_rejected_result_is_replayed_too(alice):
    bad = mutation(CUSTOMER, data={"name": ""})
    assert alice.push_one(bad) == alice.push_one(bad)


def test_duplicate_mutation_id_within_a_batch_applies_once(alice):
    c = customer("Acme")
    u = update(CUSTOMER, c["id"], 1, phone="1")
    results = alice.push(c, u, u)["results"]
    assert results[1] == results[2]
    assert Customer.objects.get(pk=c["id"]).version == 2


def test_mutation_ids_are_per_user(alice, bob):
    shared = uuid.uuid4()
    a = mutation(CUSTOMER, data={"name": "A"}, mutation_id=shared)
    b = mutation(CUSTOMER, data={"name": "B"}, mutation_id=shared)
    assert alice.push_one(a)["status"] == "applied"
    result = bob.push_one(b)
    assert result["status"] == "applied" and result["data"]["name"] == "B"


def test_more_than_500_mutations_is_413(alice):
    body = alice.push(*[customer(f"c{i}") for i in range(501)], expect=413)
    assert body["code"] == "too_many_mutations"
    assert not Customer.objects.exists()


@pytest.mark.parametrize("body", [{}, {"mutations": "x"}, [], {"mutations": None}])
def test_malformed_push_body_is_400(alice, body):
    response = alice.client.post("/api/v1/sync/push/", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_non_json_push_body_is_400(alice):
    response = alice.client.post("/api/v1/sync/push/", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def _batch_queries(alice, django_assert_max_num_queries, n: int, limit: int) -> None:
    customers = [customer(f"c{i}") for i in range(n)]
    with django_assert_max_num_queries(limit):
        results = alice.push(*customers)["results"]
    assert {r["status"] for r in results} == {"applied"}
    updates = [update(CUSTOMER, c["id"], 1, phone="1") for c in customers]
    with django_assert_max_num_queries(limit):
        results = alice.push(*updates)["results"]
    assert {r["status"] for r in results} == {"applied"}
    # Concurrent edits: each update is three-way merged against history.
    merges = [update(CUSTOMER, c["id"], 1, email="m@x.test") for c in customers]
    with django_assert_max_num_queries(limit):
        results = alice.push(*merges)["results"]
    assert {r["status"] for r in results} == {"merged"}


# Query bounds are a property of the production database: Django's SQLite backend
# splits bulk statements at 999 parameters, so there the count grows with size.
@pytest.mark.postgres
@pytest.mark.parametrize("n", [10, 500])
def test_push_queries_do_not_grow_with_batch_size(alice, django_assert_max_num_queries, n):
    _batch_queries(alice, django_assert_max_num_queries, n, limit=20)


@pytest.mark.postgres
@pytest.mark.parametrize("n", [10, 500])
def test_superseding_open_conflicts_takes_no_query_per_conflict(
    alice, django_assert_max_num_queries, n
):
    customers = [customer(f"c{i}", phone="1") for i in range(n)]
    alice.push(*customers)
    alice.push(*[update(CUSTOMER, c["id"], 1, phone="2") for c in customers])
    stale = alice.push(*[update(CUSTOMER, c["id"], 1, phone="3") for c in customers])["results"]
    assert {r["status"] for r in stale} == {"conflict"}
    # A newer write of the same fields by their author makes every one moot.
    with django_assert_max_num_queries(20):
        later = alice.push(*[update(CUSTOMER, c["id"], 2, phone="4") for c in customers])
    assert {r["status"] for r in later["results"]} == {"applied"}
    conflicts = Conflict.objects.filter(pk__in=[r["conflict_id"] for r in stale])
    assert {c.status for c in conflicts} == {"superseded"}
    by = {c.object_id: c.resolution["superseded_by"] for c in conflicts}
    assert by == {
        uuid.UUID(c["id"]): f"mutation {r['mutation_id']}"
        for c, r in zip(customers, later["results"], strict=True)
    }


def test_a_batch_of_creates_asks_nothing_about_what_it_creates(alice, bob):
    """A create's object is not stored yet (the lock found nothing): the batch
    does not ask the database for its open conflicts, nor whether a reference
    to it exists. References to stored objects are still looked up."""
    stored = customer("Stored")
    alice.push(stored)
    theirs = customer("Bob's")
    bob.push(theirs)
    new = customer("New")
    orders = [work_order(new["id"]), work_order(stored["id"]), work_order(theirs["id"])]
    with CaptureQueriesContext(connection) as ctx:
        results = alice.push(new, *orders)["results"]
    assert [r["status"] for r in results] == ["applied", "applied", "applied", "rejected"]
    assert "customer" in results[3]["errors"]
    statements = [q["sql"] for q in ctx.captured_queries]
    assert not [q for q in statements if '"sync_conflict"' in q]
    asked = [q for q in statements if q.startswith('SELECT "fieldwork_customer"."id" AS "pk"')]
    assert len(asked) == 1
    hexes = [uuid.UUID(c["id"]).hex in asked[0] for c in (stored, theirs, new)]
    assert hexes == [True, True, False]


def test_two_updates_from_one_base_in_one_batch_merge_like_two_pushes(alice):
    c = customer("Acme")
    alice.push_one(c)
    results = alice.push(
        update(CUSTOMER, c["id"], 1, phone="1"), update(CUSTOMER, c["id"], 1, email="e@x.test")
    )["results"]
    assert [r["status"] for r in results] == ["applied", "merged"]
    obj = Customer.objects.get(pk=c["id"])
    assert (obj.phone, obj.email, obj.version) == ("1", "e@x.test", 3)


def test_reference_to_object_deleted_earlier_in_the_batch_is_rejected(alice):
    c = customer("Acme")
    alice.push_one(c)
    results = alice.push(delete(CUSTOMER, c["id"], 1), work_order(c["id"]))["results"]
    assert [r["status"] for r in results] == ["applied", "rejected"]
    assert "customer" in results[1]["errors"]


def test_failing_custom_resolver_queues_a_conflict_instead_of_failing(alice, monkeypatch):
    def broken(*args):
        raise RuntimeError("resolver bug")

    monkeypatch.setattr(registry.get(ORDER), "resolver", broken)
    c = customer("Acme")
    o = work_order(c["id"])
    alice.push(c, o)
    alice.push_one(update(ORDER, o["id"], 1, status="done"))
    result = alice.push_one(update(ORDER, o["id"], 1, status="scheduled"))
    assert result["status"] == "conflict"


def test_rolled_back_write_leaves_no_change_history_or_record(alice):
    from django.db import transaction

    from sync.engine.write import mutations_apply

    c = customer("never")

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        outcome = mutations_apply(user=alice.user, mutations=[c])
        assert outcome.results[0].status == "applied"
        raise Abort
    assert not Customer.objects.filter(pk=c["id"]).exists()
    assert not Customer.history.filter(id=c["id"]).exists()
    assert not Change.objects.filter(object_id=c["id"]).exists()
    assert not MutationRecord.objects.filter(mutation_id=c["mutation_id"]).exists()
    assert alice.push_one(c)["status"] == "applied"  # the retry is not mistaken for a replay


def test_every_rejection_names_its_reason(alice, bob):
    """A machine reason per rejection, so that no status (the data API's 404 or
    409) hangs on a message's wording."""
    c = customer()
    w = work_order(c["id"])
    alice.push(c, w)
    assert alice.push_one(mutation(CUSTOMER, "create", c["id"], {"name": "again"}))["reason"] == (
        "exists"
    )
    assert alice.push_one(update(CUSTOMER, str(uuid.uuid4()), 1, name="x"))["reason"] == (
        "not_found"
    )
    assert bob.push_one(update(CUSTOMER, c["id"], 1, name="x"))["reason"] == "not_found"
    assert alice.push_one(update(CUSTOMER, c["id"], 1, email="not an email"))["reason"] == (
        "invalid"
    )
    assert alice.push_one({"model": CUSTOMER})["reason"] == "invalid"
    # A work order refers to the customer (on_delete=PROTECT).
    blocked = alice.push_one(delete(CUSTOMER, c["id"], 1))
    assert blocked["status"] == "rejected" and blocked["reason"] == "protected"
    alice.push(delete("fieldwork.workorder", w["id"], 1))
    gone = alice.push_one(update("fieldwork.workorder", w["id"], 2, title="late"))
    assert gone["status"] == "rejected" and gone["reason"] == "gone"
    applied = alice.push_one(update(CUSTOMER, c["id"], 1, name="fine"))
    assert applied["status"] == "applied" and applied["reason"] is None


def test_a_mutation_id_reused_for_another_change_is_refused(alice):
    c = customer("Acme")
    assert alice.push_one(c)["status"] == "applied"
    # The same change again: a retry, answered with the first result.
    again = alice.push_one(c)
    assert again["status"] == "applied" and again["version"] == 1
    # Another change under the same id: refused, nothing written.
    other = mutation(CUSTOMER, "update", c["id"], {"name": "Lost?"}, 1, c["mutation_id"])
    refused = alice.push_one(other)
    assert refused["status"] == "rejected" and refused["reason"] == "mutation_id_reused"
    assert Customer.objects.get(pk=c["id"]).name == "Acme"
    # The id keeps its first result for its own retries.
    assert alice.push_one(c)["status"] == "applied"
    # In one batch too: the second use of an id for another change is refused.
    first = customer("One")
    second = {**customer("Two"), "mutation_id": first["mutation_id"]}
    results = alice.push(first, second)["results"]
    assert [r["status"] for r in results] == ["applied", "rejected"]
    assert results[1]["reason"] == "mutation_id_reused"


def test_a_push_of_made_up_fields_gets_a_short_answer_and_a_short_record(alice):
    """900,000 made-up field names once got a 22.8 MB answer, stored for 30 days."""
    c = customer()
    alice.push(c)
    many = {f"field{i}": i for i in range(20_000)}
    body = alice.push(update(CUSTOMER, c["id"], 1, **many))
    [result] = body["results"]
    assert result["status"] == "rejected" and result["reason"] == "invalid"
    assert result["errors"] == {"data": ["At most 58 fields; fieldwork.customer has 8."]}
    # A few unknown ones are named, the rest counted.
    some = {f"field{i}": i for i in range(40)}
    [result] = alice.push(update(CUSTOMER, c["id"], 1, **some))["results"]
    assert len(result["errors"]) == 11 and "40 unknown fields in all" in result["errors"]["data"][0]
    # Made-up ids and values are not repeated at length either.
    [result] = alice.push(
        {
            "mutation_id": str(uuid.uuid4()),
            "model": CUSTOMER,
            "op": "update",
            "id": "x" * 100_000,
            "base_version": 1,
            "data": {},
        }
    )["results"]
    assert len(result["id"]) == 100
    [result] = alice.push(work_order(c["id"], status="s" * 100_000))["results"]
    assert result["status"] == "rejected" and len(result["errors"]["status"][0]) <= 300
    records = MutationRecord.objects.filter(user_id=alice.user.pk)
    assert max(len(str(r.result)) for r in records) < 5_000
