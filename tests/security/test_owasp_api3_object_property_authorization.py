"""OWASP API3:2023 Broken Object Property Level Authorization.

Mass assignment: server-owned fields (owner, version, created_at, updated_at,
the id on an update, the soft-delete mark, the writing device) cannot be set
through push, the data API or device registration; each is refused or ignored
as docs/protocol.md says. Excessive exposure: responses carry the registered
fields and nothing else (no `deleted_at`, `last_device_id`, history, or a
device's cursor).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from devices.models import Device
from fieldwork.models import Customer
from sync.models import Change
from tests.conftest import make_client
from tests.data_helpers import data_url, service_client
from tests.factories import customer, delete, mutation, team_of, update
from tests.helpers import assert_error
from tests.security.conftest import CUSTOMER, raise_conflict

pytestmark = pytest.mark.django_db

READ_ONLY = ["This field is read-only."]
UNKNOWN = ["Unknown field."]
# Model attributes that are not registered fields: never accepted, never shown.
INTERNAL = ["id", "version", "deleted_at", "last_device_id", "history", "pk", "owner_id"]
NOT_SHOWN = {"deleted_at", "last_device_id", "history", "history_id", "_state", "owner_id"}


def registered_fields(actor: Any, label: str = CUSTOMER) -> set[str]:
    described = {m["model"]: m for m in actor.client.get("/api/v1/sync/models/").json()}
    return set(described[label]["fields"])


# --- push -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("owner", "bob", READ_ONLY),
        ("created_at", "2001-01-01T00:00:00Z", READ_ONLY),
        ("updated_at", "2001-01-01T00:00:00Z", READ_ONLY),
        *[(name, "x", UNKNOWN) for name in INTERNAL],
    ],
)
def test_a_push_cannot_set_server_owned_fields(alice, bob, field, value, error):
    value = bob.user.pk if value == "bob" else value
    existing = customer("Existing", phone="1")
    alice.push(existing)
    created = customer("New", **{field: value})
    changed = update(CUSTOMER, existing["id"], 1, phone="2", **{field: value})
    for result in alice.push(created, changed)["results"]:
        assert result["status"] == "rejected", result
        assert result["errors"] == {field: error}
        assert result["data"] is None
    assert not Customer.objects.filter(pk=created["id"]).exists()
    row = Customer.objects.get(pk=existing["id"])
    assert (row.version, row.phone, row.owner_id, row.deleted_at) == (1, "1", alice.user.pk, None)


def test_the_envelope_cannot_choose_the_resulting_version(alice):
    c = customer("Acme")
    alice.push(c)
    ahead = alice.push_one(update(CUSTOMER, c["id"], 99, phone="2"))
    assert ahead["status"] == "rejected" and "base_version" in ahead["errors"]
    applied = alice.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    assert applied["version"] == 2  # the server's count, whatever was sent


# --- the data API --------------------------------------------------------------------------


def test_only_an_unrestricted_account_chooses_the_owner(alice, bob):
    team = team_of(alice.user)
    _, restricted = service_client("crm", channels={f"team:{team.pk}"})
    alice.user.user_permissions.set(
        Permission.objects.filter(codename__in=["add_customer", "view_customer"])
    )
    device_user = make_client(alice.user)
    for client in (restricted, device_user):
        body = {"name": "Owned by bob?", "owner": bob.user.pk, "team": team.pk}
        refused = client.post(data_url(CUSTOMER), body, format="json")
        assert assert_error(refused, 400, "invalid")["errors"] == {"owner": READ_ONLY}
    assert not Customer.objects.exists()
    # As documented, an account that sees everything may (an import on someone's behalf).
    _, erp = service_client("erp")
    made = erp.post(data_url(CUSTOMER), {"name": "Imported", "owner": bob.user.pk}, format="json")
    assert made.status_code == 201 and made.json()["owner"] == bob.user.pk


@pytest.mark.parametrize("field", ["created_at", "updated_at"])
def test_the_data_api_refuses_timestamps(alice, field):
    c = customer("Acme")
    alice.push(c)
    _, erp = service_client()
    stamp = "2001-01-01T00:00:00Z"
    created = erp.post(data_url(CUSTOMER), {"name": "New", field: stamp}, format="json")
    assert assert_error(created, 400, "invalid")["errors"] == {field: READ_ONLY}
    patched = erp.patch(data_url(CUSTOMER, c["id"]), {field: stamp}, format="json")
    assert assert_error(patched, 400, "invalid")["errors"] == {field: READ_ONLY}
    assert Customer.objects.count() == 1
    assert Customer.objects.get().version == 1


@pytest.mark.parametrize("field", ["deleted_at", "last_device_id", "history"])
def test_the_data_api_refuses_internal_attributes(alice, field):
    c = customer("Acme")
    alice.push(c)
    _, erp = service_client()
    patched = erp.patch(data_url(CUSTOMER, c["id"]), {field: None}, format="json")
    assert assert_error(patched, 400, "invalid")["errors"] == {field: UNKNOWN}
    row = Customer.objects.get(pk=c["id"])
    assert row.version == 1 and row.deleted_at is None


def test_the_data_api_ignores_a_version_and_an_id_in_the_body(alice, bob):
    """Both come back from a read and may be sent back: the version is the
    server's to count (a stale write says so with If-Match), and an update
    never moves an object to another id, least of all someone else's."""
    mine, theirs = customer("Mine"), customer("Theirs", phone="1")
    alice.push(mine)
    bob.push(theirs)
    _, erp = service_client()
    url = data_url(CUSTOMER, mine["id"])
    body = {"id": theirs["id"], "version": 99, "phone": "555"}
    patched = erp.patch(url, body, format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["id"] == mine["id"] and patched.json()["version"] == 2
    put = erp.put(url, {**body, "name": "Mine", "id": str(uuid.uuid4())}, format="json")
    assert put.json()["id"] == mine["id"] and put.json()["version"] == 2  # nothing new to write
    created = erp.post(data_url(CUSTOMER), {"name": "New", "version": 42}, format="json")
    assert created.json()["version"] == 1
    row = Customer.objects.get(pk=theirs["id"])
    assert (row.version, row.phone, row.name) == (1, "1", "Theirs")
    assert Customer.objects.count() == 3


# --- devices -------------------------------------------------------------------------------


def test_device_registration_ignores_server_owned_fields(alice, bob):
    device_id = uuid.uuid4()
    past = (dt.datetime(2001, 1, 1, tzinfo=dt.UTC)).isoformat()
    sneaky = {
        "user": bob.user.pk,
        "user_id": bob.user.pk,
        "push_active": True,
        "last_seen": past,
        "created_at": past,
        "updated_at": past,
        "last_cursor": "forged",
        "last_push_outcome": "sent",
    }
    registered = alice.client.post(
        "/api/v1/devices/", {"id": str(device_id), "platform": "ios", **sneaky}, format="json"
    )
    assert registered.status_code == 201, registered.content
    patched = alice.client.patch(f"/api/v1/devices/{device_id}/", sneaky, format="json")
    assert patched.status_code == 200, patched.content
    device = Device.objects.get(pk=device_id)
    assert device.user_id == alice.user.pk
    assert (device.push_active, device.last_seen, device.last_cursor) == (False, None, "")
    assert device.last_push_outcome == "" and device.created_at.year > 2001


# --- what responses show ------------------------------------------------------------------


def test_objects_carry_only_their_registered_fields_everywhere(alice):
    fields = registered_fields(alice)
    assert not fields & NOT_SHOWN
    c = customer("Acme", phone="1")
    pushed = alice.push_one(c)
    assert set(pushed["data"]) == fields
    changes, _ = alice.pull_all()
    assert [set(ch["data"]) for ch in changes] == [fields]
    _, erp = service_client()
    listed = erp.get(data_url(CUSTOMER)).json()["results"]
    assert [set(o) for o in listed] == [fields | {"id", "version"}]
    one = erp.get(data_url(CUSTOMER, c["id"])).json()
    assert set(one) == fields | {"id", "version"}
    since = erp.get(data_url(CUSTOMER), {"since": ""}).json()["changes"]
    assert [set(ch["data"]) for ch in since] == [fields]


def test_conflicts_show_registered_fields_only(alice):
    fields = registered_fields(alice)
    _, raised = raise_conflict(alice)
    conflict = alice.client.get(f"/api/v1/sync/conflicts/{raised['conflict_id']}/").json()
    assert set(conflict["base_data"]) <= fields and set(conflict["server_data"]) <= fields
    assert set(conflict["client_data"]) == {"phone"}
    assert "user" not in conflict  # the username of who raised it is not needed by the app


def test_a_deleted_object_shows_no_data(alice):
    c = customer("Gone", phone="secret")
    alice.push(c)
    _, cursor = alice.pull_all()
    deleted = alice.push_one(delete(CUSTOMER, c["id"], 1))
    assert deleted["data"] is None
    later, _ = alice.pull_all(cursor)
    assert [(ch["op"], ch["data"]) for ch in later] == [("delete", None)]
    assert Change.objects.filter(object_id=c["id"]).count() == 2


def test_a_device_shows_its_documented_fields_only(alice):
    shown = alice.client.get(f"/api/v1/devices/{alice.device_id}/").json()
    assert set(shown) == {
        "id",
        "platform",
        "name",
        "push_token",
        "app_version",
        "push_active",
        "last_seen",
        "created_at",
        "updated_at",
    }


def test_a_rejected_push_echoes_nothing_of_the_stored_object(alice, bob):
    theirs = customer("Bob's", phone="private")
    bob.push(theirs)
    result = alice.push_one(mutation(CUSTOMER, "update", theirs["id"], {"phone": "x"}, 1))
    assert result["data"] is None and "private" not in str(result)
