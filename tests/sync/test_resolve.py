"""Settling conflicts: every resolution path, from the app and by staff.

A resolution is written like a push (new version, history row by the resolver
naming the conflict, feed rows), so after each one a device pull returns the
resolved version.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model

from fieldwork.models import Customer, Note
from sync import registry
from sync.choices import ResolvedBy
from sync.engine.conflicts import conflict_dismiss, conflict_resolve
from sync.models import Change, Conflict
from syncbase.errors import SyncError
from tests.factories import customer, delete, mutation, team_of, update, work_order
from tests.helpers import assert_error, push_as_one_batch

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"
ORDER = "fieldwork.workorder"


def resolve_url(conflict_id: str) -> str:
    return f"/api/v1/sync/conflicts/{conflict_id}/resolve/"


@pytest.fixture
def staff_user():
    return get_user_model().objects.create_superuser("staff", password="staff-pass-1234")


def update_conflict(actor, **server) -> tuple[dict, dict]:
    """A customer whose phone both sides changed: returns (creation, conflict
    result). The client's edits of other fields would be written at once
    (tests/sync/test_push.py); this one edits only the phone, so the conflict
    is the object's one open question, at version 2."""
    c = customer("Acme", phone="1", email="a@acme.test")
    actor.push_one(c)
    actor.push_one(update(CUSTOMER, c["id"], 1, phone="2", **server))
    result = actor.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    assert result["status"] == "conflict" and result["version"] == 2
    return c, result


def resolve(actor, conflict_id: str, expect: int = 200, **body) -> dict:
    response = actor.client.post(resolve_url(conflict_id), body, format="json")
    assert response.status_code == expect, response.content
    return response.json()


def pulled(actor, object_id: str) -> dict:
    changes, _ = actor.pull_all()
    return next(c for c in changes if c["id"] == object_id)


# --- the app resolves its own conflict ------------------------------------------------


def test_keep_server_writes_a_new_version_with_the_servers_values(alice):
    c, result = update_conflict(alice)
    body = resolve(alice, result["conflict_id"], choice="server", expected_version=2)
    assert body["object"]["version"] == 3
    assert body["object"]["data"]["phone"] == "2" and body["object"]["data"]["address"] == ""
    conflict = body["conflict"]
    assert conflict["status"] == "resolved"
    assert conflict["resolution"] == {"choice": "server", "values": {}}
    assert conflict["resolved_version"] == 3
    assert conflict["resolved_by"] == alice.user.username
    assert conflict["resolved_at"] is not None
    row = Conflict.objects.get(pk=result["conflict_id"])
    assert row.resolved_by == alice.user and row.resolved_version == 3
    change = pulled(alice, c["id"])
    assert change["version"] == 3 and change["data"]["phone"] == "2"


def test_take_client_applies_the_clients_values_of_the_fields_at_stake(alice):
    c, result = update_conflict(alice)
    body = resolve(alice, result["conflict_id"], choice="client", expected_version=2)
    assert body["object"]["data"]["phone"] == "3"
    obj = Customer.objects.get(pk=c["id"])
    assert (obj.phone, obj.version) == ("3", 3)
    assert pulled(alice, c["id"])["data"]["phone"] == "3"


def test_the_clients_other_edits_were_written_before_and_every_resolution_keeps_them(alice):
    for choice, phone in (("server", "2"), ("client", "3"), ("fields", "typed")):
        c = customer("Acme", phone="1")
        alice.push_one(c)
        alice.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
        result = alice.push_one(update(CUSTOMER, c["id"], 1, phone="3", address="Client St"))
        assert result["status"] == "conflict" and result["version"] == 3
        assert result["data"]["address"] == "Client St"  # written at once
        values = {"values": {"phone": "typed"}} if choice == "fields" else {}
        body = resolve(alice, result["conflict_id"], choice=choice, expected_version=3, **values)
        assert body["object"]["data"]["phone"] == phone
        assert body["object"]["data"]["address"] == "Client St"


def test_fields_writes_the_given_value_of_each_field_at_stake(alice):
    c, result = update_conflict(alice)
    body = resolve(
        alice,
        result["conflict_id"],
        choice="fields",
        values={"phone": "typed 555"},
        expected_version=2,
        note="called the customer",
    )
    assert body["object"]["data"]["phone"] == "typed 555"
    assert body["conflict"]["note"] == "called the customer"
    assert body["conflict"]["resolution"] == {"choice": "fields", "values": {"phone": "typed 555"}}
    assert pulled(alice, c["id"])["data"]["phone"] == "typed 555"


def test_fields_may_only_settle_the_fields_at_stake(alice):
    c, result = update_conflict(alice)
    refused = resolve(
        alice,
        result["conflict_id"],
        expect=400,
        choice="fields",
        values={"phone": "2", "address": "Typed St"},
        expected_version=2,
    )
    assert refused["errors"] == {"address": ["Not part of this conflict."]}
    assert Customer.objects.get(pk=c["id"]).address == ""


def test_resolution_history_row_names_the_conflict_and_the_resolver(alice):
    c, result = update_conflict(alice)
    resolve(alice, result["conflict_id"], choice="client", expected_version=2)
    last = Customer.history.filter(id=c["id"]).order_by("history_id").last()
    assert last.version == 3 and last.history_type == "~"
    assert last.history_user == alice.user
    assert last.history_change_reason == f"conflict {result['conflict_id']} resolved (client)"
    assert Change.objects.filter(object_id=c["id"], version=3).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"choice": "fields", "values": {}}, "phone"),  # a field at stake left out
        ({"choice": "fields", "values": {"phone": "1", "name": "X"}}, "name"),  # not at stake
        ({"choice": "fields", "values": {"phone": 12}}, "phone"),  # wrong type
        ({"choice": "fields"}, "values"),
        ({"choice": "both"}, "choice"),
        ({"choice": "server"}, "expected_version"),
    ],
)
def test_bad_resolutions_are_400_and_write_nothing(alice, body, field):
    c, result = update_conflict(alice)
    response = alice.client.post(
        resolve_url(result["conflict_id"]),
        {"expected_version": 2, **body} if field != "expected_version" else body,
        format="json",
    )
    error = assert_error(response, 400, "invalid")
    assert field in error["errors"], error
    assert Customer.objects.get(pk=c["id"]).version == 2
    assert Conflict.objects.get(pk=result["conflict_id"]).status == "open"


def test_stale_resolution_is_412_with_the_current_state_and_writes_nothing(alice):
    c, result = update_conflict(alice)
    alice.push_one(update(CUSTOMER, c["id"], 2, name="Moved on"))
    body = alice.client.post(
        resolve_url(result["conflict_id"]),
        {"choice": "client", "expected_version": 2},
        format="json",
    )
    error = assert_error(body, 412, "stale")
    assert error["object"]["version"] == 3
    assert error["object"]["data"]["name"] == "Moved on"
    obj = Customer.objects.get(pk=c["id"])
    assert (obj.version, obj.phone) == (3, "2")
    assert Conflict.objects.get(pk=result["conflict_id"]).status == "open"
    # Resolving against what they now see works.
    resolve(alice, result["conflict_id"], choice="client", expected_version=3)
    assert Customer.objects.get(pk=c["id"]).name == "Moved on"


def test_second_resolution_is_409_and_applies_nothing(alice):
    c, result = update_conflict(alice)
    resolve(alice, result["conflict_id"], choice="client", expected_version=2)
    error = assert_error(
        alice.client.post(
            resolve_url(result["conflict_id"]),
            {"choice": "server", "expected_version": 3},
            format="json",
        ),
        409,
        "conflict_settled",
    )
    assert error["status"] == "resolved"
    obj = Customer.objects.get(pk=c["id"])
    assert (obj.version, obj.phone) == (3, "3")


def test_someone_elses_conflict_is_404(alice, bob):
    _, result = update_conflict(alice)
    assert_error(
        bob.client.post(
            resolve_url(result["conflict_id"]),
            {"choice": "client", "expected_version": 2},
            format="json",
        ),
        404,
        "not_found",
    )
    assert Conflict.objects.get(pk=result["conflict_id"]).status == "open"


def test_unknown_conflict_is_404(alice):
    response = alice.client.post(
        resolve_url(str(uuid.uuid4())), {"choice": "client", "expected_version": 1}, format="json"
    )
    assert_error(response, 404, "not_found")


def test_staff_resolved_model_refuses_the_app_but_not_staff(alice, staff_user, monkeypatch):
    monkeypatch.setattr(registry.get(CUSTOMER), "conflict_resolution", ResolvedBy.STAFF)
    c, result = update_conflict(alice)
    assert_error(
        alice.client.post(
            resolve_url(result["conflict_id"]),
            {"choice": "client", "expected_version": 2},
            format="json",
        ),
        403,
        "staff_resolution_only",
    )
    assert Conflict.objects.get(pk=result["conflict_id"]).status == "open"
    resolved = conflict_resolve(
        conflict_id=result["conflict_id"],
        user=staff_user,
        choice="client",
        expected_version=2,
        as_staff=True,
    )
    assert resolved.conflict.resolved_by == staff_user
    assert pulled(alice, c["id"])["data"]["phone"] == "3"


def test_resolve_without_a_device_header_works_and_a_bad_one_is_refused(alice):
    _, result = update_conflict(alice)
    alice.client.credentials(
        HTTP_AUTHORIZATION=alice.client._credentials["HTTP_AUTHORIZATION"],
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_DEVICE_ID=str(uuid.uuid4()),
    )
    response = alice.client.post(
        resolve_url(result["conflict_id"]),
        {"choice": "client", "expected_version": 2},
        format="json",
    )
    assert_error(response, 403, "device_forbidden")
    alice.client.credentials(
        HTTP_AUTHORIZATION=alice.client._credentials["HTTP_AUTHORIZATION"],
        HTTP_X_FORWARDED_PROTO="https",
    )
    resolve(alice, result["conflict_id"], choice="client", expected_version=2)


# --- deleted objects ------------------------------------------------------------------


def update_of_deleted(actor) -> tuple[dict, dict]:
    c = customer("Acme", phone="1")
    actor.push_one(c)
    actor.push_one(delete(CUSTOMER, c["id"], 1))
    result = actor.push_one(update(CUSTOMER, c["id"], 1, phone="9"))
    assert result["status"] == "conflict"
    return c, result


def test_take_client_restores_a_deleted_object_with_the_clients_values(alice):
    c, result = update_of_deleted(alice)
    body = resolve(alice, result["conflict_id"], choice="client", expected_version=2)
    assert body["object"]["version"] == 3 and body["object"]["data"]["phone"] == "9"
    obj = Customer.objects.get(pk=c["id"])
    assert obj.deleted_at is None and obj.phone == "9"
    change = pulled(alice, c["id"])
    assert change["op"] == "upsert" and change["version"] == 3


def test_fields_restores_a_deleted_object_with_the_given_values(alice):
    c, result = update_of_deleted(alice)
    resolve(
        alice, result["conflict_id"], choice="fields", values={"phone": "7"}, expected_version=2
    )
    obj = Customer.objects.get(pk=c["id"])
    assert obj.deleted_at is None and obj.phone == "7"


def test_keep_server_keeps_a_deleted_object_deleted(alice):
    c, result = update_of_deleted(alice)
    body = resolve(alice, result["conflict_id"], choice="server", expected_version=2)
    assert body["object"] == {"model": CUSTOMER, "id": c["id"], "version": 3, "data": None}
    obj = Customer.objects.get(pk=c["id"])
    assert obj.deleted_at is not None and obj.version == 3
    assert Customer.history.filter(id=c["id"]).order_by("history_id").last().history_type == "-"
    _, cursor = alice.pull_all()
    assert all(change["id"] != c["id"] for change in alice.pull_all()[0])
    assert cursor
    # Still a new version that every device hears of: as a delete.
    assert set(
        Change.objects.filter(object_id=c["id"], version=3).values_list("channel", "op")
    ) == {(f"user:{alice.user.pk}", Change.Op.DELETE)}


def delete_of_changed(actor) -> tuple[dict, dict]:
    c = customer("Acme", phone="1")
    actor.push_one(c)
    actor.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    result = actor.push_one(delete(CUSTOMER, c["id"], 1))
    assert result["status"] == "conflict"
    return c, result


def test_take_client_deletes_what_the_client_deleted(alice):
    c, result = delete_of_changed(alice)
    _, cursor = alice.pull_all()
    body = resolve(alice, result["conflict_id"], choice="client", expected_version=2)
    assert body["object"]["data"] is None and body["object"]["version"] == 3
    assert Customer.objects.get(pk=c["id"]).deleted_at is not None
    page = alice.pull(cursor=cursor)
    assert [(ch["id"], ch["op"], ch["version"]) for ch in page["changes"]] == [
        (c["id"], "delete", 3)
    ]


def test_keep_server_keeps_an_object_the_client_deleted(alice):
    c, result = delete_of_changed(alice)
    body = resolve(alice, result["conflict_id"], choice="server", expected_version=2)
    assert body["object"]["version"] == 3 and body["object"]["data"]["phone"] == "2"
    assert Customer.objects.get(pk=c["id"]).deleted_at is None


def test_fields_is_refused_for_a_client_delete(alice):
    c, result = delete_of_changed(alice)
    response = alice.client.post(
        resolve_url(result["conflict_id"]),
        {"choice": "fields", "values": {}, "expected_version": 2},
        format="json",
    )
    assert "choice" in assert_error(response, 400, "invalid")["errors"]


def test_teammate_restores_a_deleted_object_to_where_it_was(make_actor):
    owner, mate = make_actor(), make_actor()
    team = team_of(owner.user, mate.user)
    c = customer("Shared", team=str(team.pk))
    owner.push_one(c)
    owner.push_one(delete(CUSTOMER, c["id"], 1))
    result = mate.push_one(update(CUSTOMER, c["id"], 1, phone="5"))
    assert result["status"] == "conflict"
    resolve(mate, result["conflict_id"], choice="client", expected_version=2)
    obj = Customer.objects.get(pk=c["id"])
    assert obj.deleted_at is None and obj.owner == owner.user and obj.team_id == team.pk
    assert pulled(owner, c["id"])["data"]["phone"] == "5"


# --- staff: dismiss -------------------------------------------------------------------


def test_dismiss_closes_without_writing(alice, staff_user):
    c, result = update_conflict(alice)
    conflict = conflict_dismiss(conflict_id=result["conflict_id"], user=staff_user, note="dup")
    assert conflict.status == "dismissed" and conflict.resolved_by == staff_user
    assert conflict.note == "dup" and conflict.resolved_at is not None
    assert Customer.objects.get(pk=c["id"]).version == 2
    with pytest.raises(SyncError) as refused:
        conflict_dismiss(conflict_id=result["conflict_id"], user=staff_user)
    assert refused.value.status_code == 409
    assert_error(
        alice.client.post(
            resolve_url(result["conflict_id"]),
            {"choice": "client", "expected_version": 2},
            format="json",
        ),
        409,
        "conflict_settled",
    )


# --- superseded -----------------------------------------------------------------------


def test_a_later_write_of_the_same_user_on_the_same_fields_supersedes(alice):
    c, result = update_conflict(alice)
    later = alice.push_one(update(CUSTOMER, c["id"], 2, phone="4"))
    assert later["status"] == "applied"
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    assert conflict.status == "superseded"
    assert conflict.resolution == {"superseded_by": f"mutation {later['mutation_id']}"}
    assert conflict.resolved_at is not None
    assert_error(
        alice.client.post(
            resolve_url(result["conflict_id"]),
            {"choice": "client", "expected_version": 3},
            format="json",
        ),
        409,
        "conflict_settled",
    )


def test_a_later_write_agreeing_with_the_server_supersedes_too(alice):
    c, result = update_conflict(alice)
    later = update(CUSTOMER, c["id"], 2, phone="2")  # changes nothing
    alice.push_one(later)
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    assert conflict.status == "superseded"
    assert conflict.resolution == {"superseded_by": f"mutation {later['mutation_id']}"}


def test_a_later_write_on_other_fields_leaves_the_conflict_open(alice):
    c, result = update_conflict(alice)
    alice.push_one(update(CUSTOMER, c["id"], 2, name="Renamed"))
    assert Conflict.objects.get(pk=result["conflict_id"]).status == "open"


def test_another_users_write_leaves_the_conflict_open(make_actor):
    raiser, mate = make_actor(), make_actor()
    team = team_of(raiser.user, mate.user)
    c = customer("Shared", phone="1", team=str(team.pk))
    raiser.push_one(c)
    mate.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    result = raiser.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    mate.push_one(update(CUSTOMER, c["id"], 2, phone="4"))
    assert Conflict.objects.get(pk=result["conflict_id"]).status == "open"


def test_a_later_delete_of_the_same_user_supersedes(alice):
    c, result = update_conflict(alice)
    later = delete(CUSTOMER, c["id"], 2)
    alice.push_one(later)
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    assert conflict.status == "superseded"
    assert conflict.resolution == {"superseded_by": f"mutation {later['mutation_id']}"}


def test_a_newer_conflict_over_the_same_fields_supersedes_the_older(alice):
    c, first = update_conflict(alice)
    second = alice.push_one(update(CUSTOMER, c["id"], 1, phone="5"))
    assert second["status"] == "conflict"
    older = Conflict.objects.get(pk=first["conflict_id"])
    assert older.status == "superseded"
    assert older.resolution == {"superseded_by": f"conflict {second['conflict_id']}"}
    assert Conflict.objects.get(pk=second["conflict_id"]).status == "open"


def test_a_newer_conflict_over_fewer_fields_or_another_op_leaves_the_older_open(alice):
    c = customer("Acme", phone="1", email="a@acme.test")
    alice.push_one(c)
    alice.push_one(update(CUSTOMER, c["id"], 1, phone="2", email="b@acme.test"))  # server at 2
    both = alice.push_one(update(CUSTOMER, c["id"], 1, phone="3", email="c@acme.test"))
    gone = alice.push_one(delete(CUSTOMER, c["id"], 1))
    phone = alice.push_one(update(CUSTOMER, c["id"], 1, phone="4"))
    assert [r["status"] for r in (both, gone, phone)] == ["conflict"] * 3
    statuses = {str(pk): status for pk, status in Conflict.objects.values_list("pk", "status")}
    assert statuses == {
        both["conflict_id"]: "open",  # over phone and email; the newest is over phone only
        gone["conflict_id"]: "open",  # a delete, not superseded by an update's conflict
        phone["conflict_id"]: "open",
    }


def test_supersede_within_one_batch(alice):
    c = customer("Acme", phone="1")
    alice.push_one(c)
    alice.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    later = update(CUSTOMER, c["id"], 2, phone="4")
    clash, fix = push_as_one_batch(alice, update(CUSTOMER, c["id"], 1, phone="3"), later)
    assert (clash["status"], fix["status"]) == ("conflict", "applied")
    conflict = Conflict.objects.get(pk=clash["conflict_id"])
    assert conflict.status == "superseded"
    assert conflict.resolution == {"superseded_by": f"mutation {later['mutation_id']}"}
    assert conflict.resolved_at == conflict.created_at  # one batch, one clock


# --- the conflicts list ---------------------------------------------------------------


def test_conflicts_list_shows_the_outcome(alice):
    _, result = update_conflict(alice)
    resolve(alice, result["conflict_id"], choice="client", expected_version=2, note="mine")
    listed = alice.client.get("/api/v1/sync/conflicts/", {"status": "resolved"}).json()
    assert [c["id"] for c in listed] == [result["conflict_id"]]
    entry = listed[0]
    assert entry["base_data"]["phone"] == "1"
    assert entry["server_data"]["phone"] == "2"
    assert entry["client_data"] == {"phone": "3"}
    assert entry["resolution"]["choice"] == "client"
    assert entry["resolved_by"] == alice.user.username
    assert entry["resolved_version"] == 3 and entry["note"] == "mine"
    one = alice.client.get(f"/api/v1/sync/conflicts/{result['conflict_id']}/")
    assert one.status_code == 200 and one.json() == entry


def test_conflicts_list_queries_do_not_grow(alice, django_assert_max_num_queries):
    c = customer("Acme", phone="1")
    alice.push_one(c)
    alice.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    for i in range(5):
        result = alice.push_one(update(CUSTOMER, c["id"], 1, phone=f"x{i}", name=f"n{i}"))
        resolve(alice, result["conflict_id"], choice="server", expected_version=result["version"])
        alice.push_one(update(CUSTOMER, c["id"], 1, phone="2"))  # reset for the next clash
    with django_assert_max_num_queries(4):
        assert len(alice.client.get("/api/v1/sync/conflicts/").json()) >= 5


def test_someone_elses_conflict_detail_is_404(alice, bob):
    _, result = update_conflict(alice)
    assert_error(
        bob.client.get(f"/api/v1/sync/conflicts/{result['conflict_id']}/"), 404, "not_found"
    )


# --- other models ---------------------------------------------------------------------


def test_custom_policy_conflict_on_a_work_order_resolves(alice):
    c = customer("Acme")
    o = work_order(c["id"])
    alice.push(c, o)
    alice.push_one(update(ORDER, o["id"], 1, title="A"))
    result = alice.push_one(update(ORDER, o["id"], 1, title="B"))
    assert result["status"] == "conflict"
    body = resolve(
        alice,
        result["conflict_id"],
        choice="fields",
        values={"title": "A and B"},
        expected_version=2,
    )
    assert body["object"]["data"]["title"] == "A and B"


def test_resolution_values_are_checked_like_a_push(alice):
    c = customer("Acme")
    o = work_order(c["id"])
    alice.push(c, o)
    alice.push_one(update(ORDER, o["id"], 1, status="cancelled", title="A"))
    result = alice.push_one(update(ORDER, o["id"], 1, title="B"))
    response = alice.client.post(
        resolve_url(result["conflict_id"]),
        {"choice": "fields", "values": {"title": "x" * 201}, "expected_version": 2},
        format="json",
    )
    assert "title" in assert_error(response, 400, "invalid")["errors"]


def test_note_restored_by_a_teammates_stale_update_under_client_wins(make_actor):
    owner, mate = make_actor(), make_actor()
    team = team_of(owner.user, mate.user)
    c = customer("Shared", team=str(team.pk))
    o = work_order(c["id"], team=str(team.pk))
    n = mutation("fieldwork.note", data={"work_order": o["id"], "body": "hi", "team": str(team.pk)})
    owner.push(c, o, n)
    owner.push_one(delete("fieldwork.note", n["id"], 1))
    result = mate.push_one(update("fieldwork.note", n["id"], 1, body="still needed"))
    assert result["status"] == "merged" and result["data"]["body"] == "still needed"
    note = Note.objects.get(pk=n["id"])
    assert note.deleted_at is None and note.owner == owner.user
