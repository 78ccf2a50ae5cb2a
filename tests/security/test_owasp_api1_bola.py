"""OWASP API1:2023 Broken Object Level Authorization.

Every endpoint that takes an object id or returns objects, tried with another
user's ids: pull (and its cursors), push, references, conflicts, devices and
the back-office data API. Another user's object must look exactly like one
that does not exist, and nothing of it may be read or written.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.core import signing

from devices.models import Device
from fieldwork.models import Customer
from sync.models import Change, Conflict
from tests.conftest import make_client
from tests.data_helpers import data_url, service_client
from tests.factories import customer, delete, team_of, update, work_order
from tests.helpers import assert_error
from tests.security.conftest import CUSTOMER, raise_conflict

pytestmark = pytest.mark.django_db

PULL = "/api/v1/sync/pull/"
PUSH = "/api/v1/sync/push/"
CONFLICTS = "/api/v1/sync/conflicts/"
DEVICES = "/api/v1/devices/"


def unchanged(c: dict, version: int = 1, **values: str) -> None:
    """The customer is as its owner left it: same version, values, no later feed rows."""
    row = Customer.objects.get(pk=c["id"])
    assert row.version == version and row.deleted_at is None
    for name, value in values.items():
        assert getattr(row, name) == value
    assert not Change.objects.filter(object_id=c["id"], version__gt=version).exists()


# --- pull --------------------------------------------------------------------------


def test_pull_never_shows_another_users_objects(alice, bob):
    mine, theirs = customer("Alice's"), customer("Bob's")
    alice.push(mine)
    bob.push(theirs, work_order(theirs["id"]))
    changes, cursor = alice.pull_all()
    assert {c["id"] for c in changes} == {mine["id"]}
    bob.push_one(update(CUSTOMER, theirs["id"], 1, name="Bob's, renamed"))
    bob.push_one(delete("fieldwork.workorder", bob.pull_all()[0][1]["id"], 1))
    later, _ = alice.pull_all(cursor)
    assert later == []  # neither the change nor the delete of bob's objects


def test_another_users_cursor_is_refused(alice, bob):
    bob.push(*[customer(f"Bob's {i}") for i in range(3)])
    mid_sync = bob.pull(limit=1)
    assert mid_sync["has_more"]
    _, finished = bob.pull_all()
    for cursor in (mid_sync["cursor"], finished):
        response = alice.client.get(PULL, {"cursor": cursor})
        body = assert_error(response, 400, "bad_cursor")
        assert "another account" in body["detail"]
        assert "Bob's" not in response.content.decode()


def _forged(payload: dict, key: str) -> str:
    return signing.dumps(payload, key=key, salt="sync.engine.cursor.v1", compress=True)


def test_forged_and_tampered_cursors_are_refused(alice, bob, settings):
    bob.push(customer("Bob's"))
    _, bobs = bob.pull_all()
    payload = signing.loads(bobs, salt="sync.engine.cursor.v1")  # readable: signed, not secret
    claims = {**payload, "u": alice.user.pk, "s": 0, "i": None, "a": True}
    head, _, signature = bobs.rpartition(":")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    forgeries = [
        _forged(claims, key="not-the-server-key"),  # alice's id, "everything", wrong key
        _forged(claims, key=settings.SECRET_KEY + "x"),
        f"{head}:{flipped}",  # bob's cursor, signature altered
        head,  # signature stripped
        bobs.replace(bobs[1], "A" if bobs[1] != "A" else "B", 1),  # payload altered
    ]
    for forged in forgeries:
        response = alice.client.get(PULL, {"cursor": forged})
        assert_error(response, 400, "bad_cursor")
        assert "Bob's" not in response.content.decode()


def test_a_foreign_cursor_sent_with_a_push_is_not_adopted(alice, bob):
    bob.push(customer("Bob's"))
    _, bobs = bob.pull_all()
    mine = customer("Alice's")
    answer = alice.push(mine, cursor=bobs)
    # The response cursor is alice's own: it pulls her scope, and is refused to bob.
    changes, _ = alice.pull_all(answer["cursor"])
    assert {c["id"] for c in changes} <= {mine["id"]}
    assert_error(bob.client.get(PULL, {"cursor": answer["cursor"]}), 400, "bad_cursor")


# --- push -------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["update", "delete"])
def test_writing_another_users_object_is_rejected_like_an_unknown_id(alice, bob, op):
    theirs = customer("Bob's", phone="1")
    bob.push(theirs)

    def attempt(object_id: str) -> dict:
        if op == "update":
            return alice.push_one(update(CUSTOMER, object_id, 1, phone="hijacked"))
        return alice.push_one(delete(CUSTOMER, object_id, 1))

    foreign, unknown = attempt(theirs["id"]), attempt(str(uuid.uuid4()))
    assert foreign["status"] == unknown["status"] == "rejected"
    assert (
        foreign["errors"]
        == unknown["errors"]
        == {"id": ["No fieldwork.customer with this id in your scope."]}
    )
    assert foreign["data"] is None and foreign["version"] is None
    unchanged(theirs, phone="1")


def test_referencing_another_users_object_is_rejected_like_an_unknown_id(alice, bob):
    theirs = customer("Bob's")
    bob.push(theirs)
    foreign = alice.push_one(work_order(theirs["id"], "Planted"))
    unknown = alice.push_one(work_order(str(uuid.uuid4()), "Planted"))
    assert foreign["status"] == unknown["status"] == "rejected"
    assert foreign["errors"] == unknown["errors"]
    assert theirs["id"] not in {c["id"] for c in alice.pull_all()[0]}
    assert not Change.objects.filter(model="fieldwork.workorder").exists()


def test_an_object_cannot_be_placed_in_a_team_one_is_not_in(alice, bob):
    team = team_of(bob.user)
    planted = customer("Planted", team=str(team.pk))
    result = alice.push_one(planted)
    assert result["status"] == "rejected"
    assert result["errors"] == {"team": ["You may only place objects in scopes you belong to."]}
    assert bob.pull_all()[0] == []
    assert not Customer.objects.filter(pk=planted["id"]).exists()


# --- conflicts ----------------------------------------------------------------------


def test_a_teammates_conflicts_are_invisible_and_unresolvable(alice, bob):
    """Alice sees the team's customer, but the conflict is bob's own."""
    team = team_of(alice.user, bob.user)
    c = customer("Shared", phone="1", team=str(team.pk))
    bob.push(c)
    bob.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    raised = bob.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    assert raised["status"] == "conflict"
    assert c["id"] in {ch["id"] for ch in alice.pull_all()[0]}

    assert alice.client.get(CONFLICTS).json() == []
    assert alice.client.get(CONFLICTS, {"status": "open"}).json() == []
    mine = assert_error(alice.client.get(f"{CONFLICTS}{raised['conflict_id']}/"), 404, "not_found")
    nobody = assert_error(alice.client.get(f"{CONFLICTS}{uuid.uuid4()}/"), 404, "not_found")
    assert mine == nobody
    for choice in ("client", "server"):
        resolved = alice.client.post(
            f"{CONFLICTS}{raised['conflict_id']}/resolve/",
            {"choice": choice, "expected_version": 2},
            format="json",
        )
        assert_error(resolved, 404, "not_found")
    conflict = Conflict.objects.get(pk=raised["conflict_id"])
    assert conflict.status == "open" and conflict.resolved_by is None
    unchanged(c, version=2, phone="2")


def test_resolving_with_another_users_device_header_is_403(alice, bob):
    c, raised = raise_conflict(alice)
    client = make_client(alice.user, bob.device_id)
    response = client.post(
        f"{CONFLICTS}{raised['conflict_id']}/resolve/",
        {"choice": "client", "expected_version": 2},
        format="json",
    )
    assert_error(response, 403, "device_forbidden")
    assert Conflict.objects.get(pk=raised["conflict_id"]).status == "open"
    unchanged(c, version=2, phone="2")


# --- devices ------------------------------------------------------------------------


def test_another_users_device_is_not_found(alice, bob):
    url = f"{DEVICES}{bob.device_id}/"
    for response in (
        alice.client.get(url),
        alice.client.patch(url, {"name": "mine now", "push_token": "attacker"}, format="json"),
        alice.client.delete(url),
    ):
        assert_error(response, 404, "not_found")
    assert str(bob.device_id) not in {d["id"] for d in alice.client.get(DEVICES).json()}
    device = Device.objects.get(pk=bob.device_id)
    assert device.user_id == bob.user.pk and device.name == "" and device.push_token == ""


def test_registering_another_users_device_id_is_409(alice, bob):
    response = alice.client.post(
        DEVICES,
        {"id": str(bob.device_id), "platform": "ios", "push_token": "attacker"},
        format="json",
    )
    assert_error(response, 409, "device_taken")
    device = Device.objects.get(pk=bob.device_id)
    assert device.user_id == bob.user.pk
    assert (device.platform, device.push_token, device.push_active) == ("android", "", False)


def test_pull_and_push_with_another_users_device_are_403(alice, bob):
    client = make_client(alice.user, bob.device_id)
    assert_error(client.get(PULL), 403, "device_forbidden")
    c = customer("Sneaked")
    assert_error(client.post(PUSH, {"mutations": [c]}, format="json"), 403, "device_forbidden")
    assert not Customer.objects.filter(pk=c["id"]).exists()
    assert Device.objects.get(pk=bob.device_id).last_seen is None


# --- the back-office data API --------------------------------------------------------


def test_a_restricted_service_account_stays_within_its_channels(alice, bob):
    team, elsewhere = team_of(alice.user), team_of(bob.user)
    inside = customer("Team's", team=str(team.pk))
    outside = customer("Bob's", phone="1")
    alice.push(inside)
    bob.push(outside)
    _, erp = service_client(channels={f"team:{team.pk}"})
    url = data_url(CUSTOMER, outside["id"])

    assert [c["id"] for c in erp.get(data_url(CUSTOMER)).json()["results"]] == [inside["id"]]
    since = erp.get(data_url(CUSTOMER), {"since": ""}).json()["changes"]
    assert [c["id"] for c in since] == [inside["id"]]
    assert_error(erp.get(url), 404, "not_found")
    assert_error(erp.get(url, HTTP_IF_NONE_MATCH='"1"'), 404, "not_found")
    assert_error(erp.patch(url, {"phone": "hijacked"}, format="json"), 404, "not_found")
    assert_error(erp.put(url, {"name": "hijacked"}, format="json"), 404, "not_found")
    assert_error(erp.delete(url), 404, "not_found")
    bulk = erp.post(
        data_url(CUSTOMER, suffix="bulk/"),
        {
            "mutations": [
                {"op": "update", "id": outside["id"], "data": {"phone": "hijacked"}},
                {"op": "delete", "id": outside["id"]},
            ]
        },
        format="json",
    )
    assert [r["status"] for r in bulk.json()["results"]] == ["rejected", "rejected"]
    planted = erp.post(data_url(CUSTOMER), {"name": "Planted", "team": elsewhere.pk}, format="json")
    assert assert_error(planted, 400, "invalid")["errors"]["team"]
    unchanged(outside, phone="1")
    assert Customer.objects.count() == 2


def test_a_device_user_with_view_permission_still_sees_only_their_scope(alice, bob):
    mine, theirs = customer("Alice's"), customer("Bob's")
    alice.push(mine)
    bob.push(theirs)
    alice.user.user_permissions.add(Permission.objects.get(codename="view_customer"))
    client = make_client(alice.user)
    assert [c["id"] for c in client.get(data_url(CUSTOMER)).json()["results"]] == [mine["id"]]
    since = client.get(data_url(CUSTOMER), {"since": ""}).json()
    assert [c["id"] for c in since["changes"]] == [mine["id"]]
    assert_error(client.get(data_url(CUSTOMER, theirs["id"])), 404, "not_found")
    # Bob's data-API cursor is his, like his pull cursor.
    bob.user.user_permissions.add(Permission.objects.get(codename="view_customer"))
    bobs = make_client(bob.user).get(data_url(CUSTOMER), {"since": ""}).json()["cursor"]
    assert_error(client.get(data_url(CUSTOMER), {"since": bobs}), 400, "bad_cursor")


def test_a_device_user_without_model_permissions_cannot_read_the_data_api(alice):
    mine = customer("Alice's")
    alice.push(mine)
    client = make_client(alice.user)
    for response in (
        client.get(data_url(CUSTOMER)),
        client.get(data_url(CUSTOMER), {"since": ""}),
        client.get(data_url(CUSTOMER, mine["id"])),
    ):
        body = assert_error(response, 403, "permission_denied")
        assert "Alice's" not in str(body)
