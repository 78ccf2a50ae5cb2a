"""A delete through the write service follows each reference's on_delete (the
probe: a deleted customer's work orders still pulled with `customer` set)."""

from __future__ import annotations

import pytest

from fieldwork.models import Customer, Note, WorkOrder
from sync.models import Change, Conflict
from tests.data_helpers import data_url, service_client
from tests.factories import customer, delete, mutation, team_of, update, work_order
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

CUSTOMER, ORDER, NOTE = "fieldwork.customer", "fieldwork.workorder", "fieldwork.note"


def note(order_id: str, body: str = "n", **data) -> dict:
    return mutation(NOTE, data={"work_order": order_id, "body": body, **data})


def test_protect_refuses_and_names_the_dependants(alice):
    c = customer("Acme")
    o1, o2 = work_order(c["id"], "One"), work_order(c["id"], "Two")
    alice.push(c, o1, o2)
    result = alice.push_one(delete(CUSTOMER, c["id"], 1))
    assert result["status"] == "rejected"
    [message] = result["errors"]["id"]
    assert message.startswith("Cannot be deleted while these refer to it: 2 fieldwork.workorder (")
    assert o1["id"] in message and o2["id"] in message
    assert Customer.objects.get(pk=c["id"]).deleted_at is None
    # Once the work orders are gone, the customer can go.
    alice.push(delete(ORDER, o1["id"], 1), delete(ORDER, o2["id"], 1))
    assert alice.push_one(delete(CUSTOMER, c["id"], 1))["status"] == "applied"


def test_cascade_deletes_the_dependants_with_history_and_feed(alice):
    c = customer("Acme")
    o = work_order(c["id"])
    n1, n2 = note(o["id"], "a"), note(o["id"], "b")
    alice.push(c, o, n1, n2)
    _, cursor = alice.pull_all()
    result = alice.push_one(delete(ORDER, o["id"], 1))
    assert result["status"] == "applied"
    for n in (n1, n2):
        row = Note.objects.get(pk=n["id"])
        assert row.deleted_at is not None and row.version == 2
        history = Note.history.filter(id=n["id"]).order_by("history_id").last()
        assert history.history_type == "-" and history.history_user == alice.user
        assert Change.objects.filter(object_id=n["id"], version=2, op=Change.Op.DELETE).exists()
    page = alice.pull(cursor=cursor)
    assert sorted((c["id"], c["op"]) for c in page["changes"]) == sorted(
        [(o["id"], "delete"), (n1["id"], "delete"), (n2["id"], "delete")]
    )


def test_set_null_clears_the_reference_with_a_new_version(alice):
    c = customer("Acme")
    first = work_order(c["id"], "First visit")
    follow = work_order(c["id"], "Follow-up", follow_up_of=first["id"])
    alice.push(c, first, follow)
    _, cursor = alice.pull_all()
    assert alice.push_one(delete(ORDER, first["id"], 1))["status"] == "applied"
    after = WorkOrder.objects.get(pk=follow["id"])
    assert after.follow_up_of_id is None and after.version == 2 and after.deleted_at is None
    page = alice.pull(cursor=cursor)
    changed = next(ch for ch in page["changes"] if ch["id"] == follow["id"])
    assert changed["op"] == "upsert" and changed["data"]["follow_up_of"] is None


def test_dependants_created_earlier_in_the_same_batch_count(alice):
    c = customer("Acme")
    o = work_order(c["id"])
    alice.push(c)
    results = alice.push(o, delete(CUSTOMER, c["id"], 1))["results"]
    assert [r["status"] for r in results] == ["applied", "rejected"]
    o2 = work_order(c["id"])
    n = note(o2["id"])
    alice.push(o2)
    results = alice.push(n, delete(ORDER, o2["id"], 1))["results"]
    assert [r["status"] for r in results] == ["applied", "applied"]
    assert Note.objects.get(pk=n["id"]).deleted_at is not None


def test_a_dependant_moved_away_earlier_in_the_batch_does_not_block(alice):
    c1, c2 = customer("One"), customer("Two")
    o = work_order(c1["id"])
    alice.push(c1, c2, o)
    results = alice.push(
        update(ORDER, o["id"], 1, customer=c2["id"]), delete(CUSTOMER, c1["id"], 1)
    )["results"]
    assert [r["status"] for r in results] == ["applied", "applied"]


def test_cascade_reaches_dependants_the_author_cannot_see(make_actor):
    owner, mate = make_actor(), make_actor()
    team = team_of(owner.user, mate.user)
    c = customer("Shared", team=str(team.pk))
    o = work_order(c["id"], team=str(team.pk))
    owner.push(c, o)
    private_note = note(o["id"], "mine only")  # in the mate's own channel only
    mate.push(private_note)
    assert owner.push_one(delete(ORDER, o["id"], 1))["status"] == "applied"
    assert Note.objects.get(pk=private_note["id"]).deleted_at is not None


def test_the_back_office_api_follows_on_delete(alice):
    c = customer("Acme")
    o = work_order(c["id"])
    alice.push(c, o)
    _, erp = service_client()
    response = erp.delete(data_url(CUSTOMER, c["id"]))
    body = assert_error(response, 409, "protected")
    assert "fieldwork.workorder" in body["errors"]["id"][0]
    assert Customer.objects.get(pk=c["id"]).deleted_at is None


def test_a_resolution_that_deletes_follows_on_delete(alice):
    c = customer("Acme")
    o = work_order(c["id"], "v1")
    n = note(o["id"])
    alice.push(c, o, n)
    alice.push_one(update(ORDER, o["id"], 1, title="v2"))
    raised = alice.push_one(delete(ORDER, o["id"], 1))
    assert raised["status"] == "conflict"
    response = alice.client.post(
        f"/api/v1/sync/conflicts/{raised['conflict_id']}/resolve/",
        {"choice": "client", "expected_version": 2},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert Note.objects.get(pk=n["id"]).deleted_at is not None
    assert Conflict.objects.get(pk=raised["conflict_id"]).status == "resolved"


def test_a_protected_resolution_is_refused(alice):
    c = customer("Acme", phone="1")
    o = work_order(c["id"])
    alice.push(c, o)
    alice.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    raised = alice.push_one(delete(CUSTOMER, c["id"], 1))
    response = alice.client.post(
        f"/api/v1/sync/conflicts/{raised['conflict_id']}/resolve/",
        {"choice": "client", "expected_version": 2},
        format="json",
    )
    assert assert_error(response, 409, "protected")["errors"]["id"]
    assert Customer.objects.get(pk=c["id"]).deleted_at is None
    assert Conflict.objects.get(pk=raised["conflict_id"]).status == "open"


@pytest.mark.postgres
@pytest.mark.parametrize("n", [10, 200])
def test_cascading_deletes_keep_a_bounded_query_count(alice, n, django_assert_max_num_queries):
    c = customer("Acme")
    orders = [work_order(c["id"], f"o{i}") for i in range(n)]
    notes = [note(o["id"]) for o in orders]
    alice.push(c, *orders)
    alice.push(*notes)
    with django_assert_max_num_queries(24):
        results = alice.push(*[delete(ORDER, o["id"], 1) for o in orders])["results"]
    assert {r["status"] for r in results} == {"applied"}
    assert Note.objects.filter(deleted_at__isnull=True).count() == 0


def test_a_device_that_deleted_learns_of_the_cascade_through_its_push_cursor(alice):
    """Found by the convergence test: the push cursor skipped the device's own
    writes, but a cascade writes objects the push results do not mention."""
    c = customer("Acme")
    o = work_order(c["id"])
    n = note(o["id"])
    alice.push(c, o, n)
    _, cursor = alice.pull_all()
    body = alice.push(delete(ORDER, o["id"], 1), cursor=cursor)
    page = alice.pull(cursor=body["cursor"])
    assert (n["id"], "delete") in [(ch["id"], ch["op"]) for ch in page["changes"]]
