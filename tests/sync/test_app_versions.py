"""Old app versions in the field (docs/protocol.md, "App versions and schema
changes"): the handshake, translation both ways, the minimum version, and
targeted re-syncs; over the API, in process. The reference client's side,
over HTTP, is tests/client/test_app_versions.py."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

import sync
from devices.models import AppVersionPolicy, Device
from fieldwork.models import Equipment
from sync.writers import service_writes
from tests.conftest import Actor, make_client
from tests.factories import customer, mutation, update

EQUIPMENT = "fieldwork.equipment"
V1 = "fieldwork.customer=1, fieldwork.workorder=1, fieldwork.note=1, fieldwork.equipment=1"


def speaking(actor: Actor, **headers: str) -> Actor:
    """The same user on another device whose app sends these headers
    (`app_version="1.2.0"` → X-App-Version: 1.2.0)."""
    names = {
        "app_version": "HTTP_X_APP_VERSION",
        "schema": "HTTP_X_SCHEMA_VERSION",
        "pending": "HTTP_X_OUTBOX_PENDING",
        "oldest": "HTTP_X_OUTBOX_OLDEST_AGE",
    }
    device_id = uuid.uuid4()
    response = make_client(actor.user).post(
        "/api/v1/devices/", {"id": str(device_id), "platform": "android"}, format="json"
    )
    assert response.status_code == 201, response.content
    client = make_client(actor.user, device_id)
    client._credentials.update({names[k]: v for k, v in headers.items()})
    return Actor(user=actor.user, device_id=device_id, client=client)


def equipment(customer_id: str, **data: Any) -> dict[str, Any]:
    return mutation(EQUIPMENT, data={"customer": customer_id, **data})


def current(object_id: str) -> dict[str, Any]:
    item = Equipment.objects.get(pk=object_id)
    return {
        "serial_number": item.serial_number,
        "building": item.building,
        "room": item.room,
        "kind": item.kind,
        "version": item.version,
    }


def upserts(changes: list[dict[str, Any]], model: str = EQUIPMENT) -> dict[str, dict[str, Any]]:
    return {c["id"]: c["data"] for c in changes if c["model"] == model and c["op"] == "upsert"}


@pytest.fixture
def acme(alice: Actor) -> str:
    return alice.push_one(customer("Acme"))["id"]


# --- discovery and the handshake ---------------------------------------------------------


def test_discovery_gives_each_models_version_and_history(alice):
    described = {d["model"]: d for d in alice.client.get("/api/v1/sync/models/").json()}
    assert described["fieldwork.customer"]["version"] == 1
    assert described["fieldwork.customer"]["history"] == []
    assert described[EQUIPMENT]["version"] == 4
    assert [(s["version"], s["kind"]) for s in described[EQUIPMENT]["history"]] == [
        (2, "renamed"),
        (3, "split"),
        (4, "added"),
    ]
    assert described[EQUIPMENT]["fields"]["kind"]["required"] is True


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"app_version": "two"}, "bad_app_version"),
        ({"app_version": "1." * 30}, "bad_app_version"),
        ({"schema": "fieldwork.equipment"}, "bad_schema_version"),
        ({"schema": "fieldwork.equipment=5"}, "bad_schema_version"),
        ({"schema": "fieldwork.equipment=0"}, "bad_schema_version"),
        ({"schema": "fieldwork.equipment=x"}, "bad_schema_version"),
        ({"pending": "-1"}, "bad_header"),
        ({"oldest": "1.5"}, "bad_header"),
    ],
)
def test_a_malformed_handshake_is_a_clear_400_and_pushes_nothing(alice, headers, code):
    old = speaking(alice, **headers)
    for response in (
        old.client.get("/api/v1/sync/pull/"),
        old.client.post("/api/v1/sync/push/", {"mutations": [customer("Kept out")]}, format="json"),
    ):
        assert response.status_code == 400, response.content
        assert response.json()["code"] == code
        assert response.json()["detail"]
    assert not Device.objects.get(pk=old.device_id).app_version


def test_a_model_the_server_no_longer_has_is_ignored(alice, acme):
    old = speaking(alice, schema=V1 + ", fieldwork.retired=3")
    assert old.pull()["changes"]


def test_the_device_record_keeps_what_the_app_reported(alice):
    old = speaking(alice, app_version="1.4.2", schema=V1, pending="3", oldest="5400")
    old.pull()
    device = Device.objects.get(pk=old.device_id)
    assert device.app_version == "1.4.2"
    assert device.schema_versions[EQUIPMENT] == 1
    assert device.outbox_pending == 3
    age = timezone.now() - device.outbox_oldest_at
    assert dt.timedelta(seconds=5390) < age < dt.timedelta(seconds=5500)
    # An app that says nothing of itself changes none of it.
    alice.pull()
    assert Device.objects.get(pk=alice.device_id).app_version == ""


# --- translation -------------------------------------------------------------------------


def test_an_old_apps_create_is_upgraded_and_every_app_reads_its_own_shape(alice, acme):
    old = speaking(alice, schema=V1)
    made = old.push_one(
        equipment(acme, name="Boiler, wall-hung", serial="SN-1", location="North wing, Cellar")
    )
    assert made["status"] == "applied", made
    # The result is in the old app's shape...
    assert made["data"]["serial"] == "SN-1"
    assert made["data"]["location"] == "North wing, Cellar"
    assert "kind" not in made["data"] and "serial_number" not in made["data"]
    # ...the server holds the new one, `kind` derived from the name...
    assert current(made["id"]) == {
        "serial_number": "SN-1",
        "building": "North wing",
        "room": "Cellar",
        "kind": "boiler",
        "version": 1,
    }
    # ...and each app pulls its own.
    new_view = upserts(alice.pull_all()[0])[made["id"]]
    assert (new_view["serial_number"], new_view["building"], new_view["kind"]) == (
        "SN-1",
        "North wing",
        "boiler",
    )
    old_view = upserts(old.pull_all()[0])[made["id"]]
    assert old_view == {k: v for k, v in made["data"].items()}
    assert set(old_view) >= {"serial", "location", "name", "customer"}


@pytest.mark.parametrize(
    ("schema", "has", "lacks"),
    [
        ("fieldwork.equipment=2", {"serial_number", "location"}, {"serial", "building", "kind"}),
        ("fieldwork.equipment=3", {"serial_number", "building", "room"}, {"location", "kind"}),
        ("fieldwork.equipment=4", {"serial_number", "building", "room", "kind"}, {"location"}),
    ],
)
def test_each_version_pulls_its_own_shape(alice, acme, schema, has, lacks):
    alice.push_one(equipment(acme, name="Heat pump", kind="heat_pump", building="B", room="R"))
    others = "fieldwork.customer=1, fieldwork.workorder=1, fieldwork.note=1"
    (data,) = upserts(speaking(alice, schema=f"{others}, {schema}").pull_all()[0]).values()
    assert has <= set(data) and not lacks & set(data)


def test_an_old_apps_update_touches_only_what_it_sent(alice, acme):
    made = alice.push_one(equipment(acme, name="Thing", kind="heat_pump", building="A", room="1"))
    old = speaking(alice, schema=V1)
    result = old.push_one(update(EQUIPMENT, made["id"], 1, serial="SN-9"))
    assert result["status"] == "applied"
    # `kind` is not filled in from the name on an update; the split parts stay.
    assert current(made["id"]) == {
        "serial_number": "SN-9",
        "building": "A",
        "room": "1",
        "kind": "heat_pump",
        "version": 2,
    }


def _concurrent_edits(alice, acme, old_edit, new_edit):
    made = alice.push_one(
        equipment(acme, name="Boiler", kind="boiler", serial_number="1", building="N", room="C")
    )
    old = speaking(alice, schema=V1)
    old.pull_all()
    new_result = alice.push_one(update(EQUIPMENT, made["id"], 1, **new_edit))
    old_result = old.push_one(update(EQUIPMENT, made["id"], 1, **old_edit))
    return made["id"], old, new_result, old_result


def test_rename_an_old_and_a_new_app_edit_the_same_object_and_converge(alice, acme):
    object_id, old, new_result, old_result = _concurrent_edits(
        alice, acme, {"serial": "SN-OLD"}, {"room": "Attic"}
    )
    assert (new_result["status"], old_result["status"]) == ("applied", "merged")
    assert old_result["data"]["serial"] == "SN-OLD"
    assert old_result["data"]["location"] == "N, Attic"
    assert current(object_id)["serial_number"] == "SN-OLD"
    assert current(object_id)["room"] == "Attic"
    _converged(alice, old, object_id)


def test_split_the_old_apps_edit_of_one_part_keeps_the_new_apps_edit_of_the_other(alice, acme):
    # The old app changes the building in its joined `location`; the new app
    # the room. The three-way merge sees the old app's room equal to the base.
    object_id, old, new_result, old_result = _concurrent_edits(
        alice, acme, {"location": "S, C"}, {"room": "Attic"}
    )
    assert (new_result["status"], old_result["status"]) == ("applied", "merged")
    assert (current(object_id)["building"], current(object_id)["room"]) == ("S", "Attic")
    assert old_result["data"]["location"] == "S, Attic"
    _converged(alice, old, object_id)


def test_split_both_apps_changing_the_same_part_is_a_conflict_on_that_part(alice, acme):
    object_id, old, _, old_result = _concurrent_edits(
        alice, acme, {"location": "N, Garage"}, {"room": "Attic"}
    )
    assert old_result["status"] == "conflict"
    assert old_result["data"]["location"] == "N, Attic"  # the server's, in its shape
    _converged(alice, old, object_id)


def test_added_a_field_the_old_app_does_not_know_survives_its_edits(alice, acme):
    object_id, old, _, old_result = _concurrent_edits(
        alice, acme, {"name": "Boiler (replaced)"}, {"kind": "water_heater"}
    )
    assert old_result["status"] == "merged"
    assert current(object_id)["kind"] == "water_heater"
    assert Equipment.objects.get(pk=object_id).name == "Boiler (replaced)"
    assert "kind" not in old_result["data"]
    _converged(alice, old, object_id)


def _converged(new: Actor, old: Actor, object_id: str) -> None:
    """Each app's fresh view of the object is the server's, in its own shape."""
    server = Equipment.objects.get(pk=object_id)
    new_view = upserts(new.pull_all()[0])[object_id]
    old_view = upserts(old.pull_all()[0])[object_id]
    assert new_view["serial_number"] == old_view["serial"] == server.serial_number
    assert new_view["building"] == server.building and new_view["room"] == server.room
    assert old_view["location"] == ", ".join(p for p in (server.building, server.room) if p)
    assert new_view["kind"] == server.kind and "kind" not in old_view
    assert new_view["name"] == old_view["name"] == server.name


def test_a_value_a_step_cannot_translate_rejects_that_mutation_only(alice, acme, monkeypatch):
    from sync import registry

    stype = registry.get(EQUIPMENT)
    steps = list(stype.history.steps)

    def explode(value: Any) -> dict[str, Any]:
        raise ValueError("no comma allowed")

    steps[1] = sync.Split(3, "location", into=("building", "room"), split=explode, join=str)
    monkeypatch.setattr(stype, "history", type(stype.history)(tuple(steps)))
    old = speaking(alice, schema=V1)
    results = old.push(
        equipment(acme, name="Boiler", location="North, Cellar"),
        equipment(acme, name="Water heater"),
    )["results"]
    assert results[0]["status"] == "rejected"
    assert "no comma allowed" in results[0]["errors"]["data"][0]
    assert results[1]["status"] == "applied"


def test_a_model_the_app_does_not_know_is_left_out_of_its_pulls(alice, acme):
    alice.push_one(equipment(acme, name="Boiler", kind="boiler"))
    unaware = speaking(alice, schema="fieldwork.customer=1, fieldwork.workorder=1")
    changes, _ = unaware.pull_all()
    assert {c["model"] for c in changes} == {"fieldwork.customer"}


# --- too old: drain first, then stop ---------------------------------------------------------


def test_below_the_minimum_pulls_are_refused_and_pushes_still_land(alice, acme):
    AppVersionPolicy.objects.create(
        platform="android", minimum_version="2.0.0", upgrade_url="https://example.com/app"
    )
    old = speaking(alice, app_version="1.9.9", schema=V1, pending="1", oldest="60")
    refused = old.client.get("/api/v1/sync/pull/")
    assert refused.status_code == 426
    assert refused.json()["code"] == "upgrade_required"
    assert refused.json()["minimum_version"] == "2.0.0"
    assert refused.json()["upgrade_url"] == "https://example.com/app"
    assert refused["Upgrade"] == "android-app/2.0.0"
    live = old.client.get("/api/v1/sync/live/", {"wait": "1"})
    assert live.status_code == 426
    # Its offline work still drains, translated like any old app's.
    result = old.push_one(equipment(acme, name="Boiler", serial="SN-5"))
    assert result["status"] == "applied"
    assert current(result["id"])["serial_number"] == "SN-5"
    # Staff see it reported in.
    assert Device.objects.get(pk=old.device_id).app_version == "1.9.9"
    # The minimum itself and newer versions pull; other platforms are not concerned.
    assert speaking(alice, app_version="2.0.0").client.get("/api/v1/sync/pull/").status_code == 200
    assert speaking(alice, app_version="2.0.0-rc.1").pull()["cursor"]


def test_the_registered_app_version_counts_when_the_header_is_absent(make_actor):
    AppVersionPolicy.objects.create(platform="ios", minimum_version="3")
    actor = make_actor(platform="ios")
    Device.objects.filter(pk=actor.device_id).update(app_version="2.9")
    assert actor.client.get("/api/v1/sync/pull/").status_code == 426


def test_deprecated_versions_are_warned_then_cut_off_at_the_sunset(alice, acme):
    sunset = timezone.now() + dt.timedelta(days=30)
    policy = AppVersionPolicy.objects.create(
        platform="android",
        deprecated_below="2.0",
        sunset_at=sunset,
        upgrade_url="https://example.com/app",
    )
    old = speaking(alice, app_version="1.5")
    response = old.client.get("/api/v1/sync/pull/")
    assert response.status_code == 200
    assert response["Deprecation"] == f"@{int(policy.deprecated_at.timestamp())}"
    assert response["Sunset"] == sunset.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 'rel="deprecation"' in response["Link"]
    pushed = old.client.post("/api/v1/sync/push/", {"mutations": []}, format="json")
    assert pushed["Deprecation"] == response["Deprecation"]
    current_app = speaking(alice, app_version="2.0").client.get("/api/v1/sync/pull/")
    assert "Deprecation" not in current_app
    # The sunset passes: below 2.0 is now below the minimum.
    policy.sunset_at = timezone.now() - dt.timedelta(seconds=1)
    policy.save()
    refused = old.client.get("/api/v1/sync/pull/")
    assert refused.status_code == 426
    assert refused.json()["minimum_version"] == "2.0"
    assert old.push_one(equipment(acme, name="Boiler", kind="boiler"))["status"] == "applied"


# --- targeted re-sync --------------------------------------------------------------------------


def test_a_resync_sends_devices_back_for_that_model_only(alice, acme):
    made = alice.push_one(equipment(acme, name="Boiler", kind="boiler"))
    alice.push_one(customer("Other"))
    _, cursor = alice.pull_all()
    # A backfill the feed did not carry.
    with service_writes():
        Equipment.objects.filter(pk=made["id"]).update(room="Plant room")
    number = sync.resync(Equipment, reason="rooms backfilled")
    refused = alice.client.get("/api/v1/sync/pull/", {"cursor": cursor})
    assert refused.status_code == 410
    body = refused.json()
    assert body["code"] == "resync_required"
    assert body["models"] == [EQUIPMENT]
    # Fetching the model again brings the backfill...
    fetched, _ = alice.pull_all(models=EQUIPMENT)
    assert upserts(fetched)[made["id"]]["room"] == "Plant room"
    # ...and the 410's cursor goes on where the device was, for every model.
    page = alice.pull(cursor=body["cursor"])
    assert page["changes"] == []
    later = alice.push_one(customer("Later"))
    assert [c["id"] for c in alice.pull(cursor=body["cursor"])["changes"]] == [later["id"]]
    # The old cursor keeps getting the 410: nothing is skipped either way.
    assert alice.client.get("/api/v1/sync/pull/", {"cursor": cursor}).status_code == 410
    assert number > 0


def test_a_resync_of_a_model_outside_the_cursors_filter_is_not_its_concern(alice, acme):
    _, cursor = alice.pull_all(models="fieldwork.customer")
    sync.resync(Equipment)
    assert alice.pull(cursor=cursor, models="fieldwork.customer")["changes"] == []


def test_an_upgraded_app_fetches_again_the_models_whose_version_it_gained(alice, acme):
    made = alice.push_one(equipment(acme, name="Boiler", kind="boiler", building="B", room="R"))
    old = speaking(alice, schema=V1)
    _, cursor = old.pull_all()
    # The same device, its app upgraded: equipment at version 4, the rest unchanged.
    old.client._credentials["HTTP_X_SCHEMA_VERSION"] = V1.replace("equipment=1", "equipment=4")
    refused = old.client.get("/api/v1/sync/pull/", {"cursor": cursor})
    assert refused.status_code == 410
    assert refused.json()["models"] == [EQUIPMENT]
    fetched, _ = old.pull_all(models=EQUIPMENT)
    assert upserts(fetched)[made["id"]]["kind"] == "boiler"
    assert old.pull(cursor=refused.json()["cursor"])["changes"] == []


def test_an_app_that_learns_a_model_fetches_it(alice, acme):
    alice.push_one(equipment(acme, name="Boiler", kind="boiler"))
    app = speaking(alice, schema="fieldwork.customer=1, fieldwork.workorder=1, fieldwork.note=1")
    _, cursor = app.pull_all()
    app.client._credentials["HTTP_X_SCHEMA_VERSION"] = V1
    refused = app.client.get("/api/v1/sync/pull/", {"cursor": cursor})
    assert (refused.status_code, refused.json()["models"]) == (410, [EQUIPMENT])


def test_a_cursor_from_before_versions_were_kept_is_not_sent_back(alice, acme):
    from sync.engine.cursor import decode

    _, cursor = alice.pull_all()
    old_style = decode(cursor).evolve(v=None, e=None).encode()
    sync.resync(Equipment)
    assert alice.pull(cursor=old_style)["changes"] == []


def test_sync_resync_command(alice, acme, capsys):
    _, cursor = alice.pull_all()
    call_command("sync_resync", EQUIPMENT, reason="restored from backup")
    assert "fieldwork.equipment: re-sync #" in capsys.readouterr().out
    response = alice.client.get("/api/v1/sync/pull/", {"cursor": cursor})
    assert response.json()["models"] == [EQUIPMENT], response.json()
    with pytest.raises(Exception, match="Not synced model"):
        call_command("sync_resync", "fieldwork.team")


def test_an_old_app_reads_and_resolves_its_conflict_in_its_own_shape(alice, acme):
    object_id, old, _, old_result = _concurrent_edits(
        alice, acme, {"location": "N, Garage", "serial": "OLD"}, {"room": "Attic"}
    )
    assert old_result["status"] == "conflict"
    conflict_id = old_result["conflict_id"]
    (listed,) = old.client.get("/api/v1/sync/conflicts/").json()
    assert listed["fields"] == ["location"]
    assert listed["server_data"]["location"] == "N, Attic"
    assert listed["base_data"]["location"] == "N, C" and "building" not in listed["base_data"]
    assert listed["client_data"]["location"] == "N, Garage"
    detail = old.client.get(f"/api/v1/sync/conflicts/{conflict_id}/").json()
    assert detail["server_data"]["serial"] == "OLD"  # its other edit went in at once
    # The new app sees the same conflict in the current shape.
    assert alice.client.get(f"/api/v1/sync/conflicts/{conflict_id}/").json()["fields"] == ["room"]
    resolved = old.client.post(
        f"/api/v1/sync/conflicts/{conflict_id}/resolve/",
        {
            "choice": "fields",
            "values": {"location": "N, Boiler house"},
            "expected_version": listed["server_version"],
        },
        format="json",
    )
    assert resolved.status_code == 200, resolved.content
    assert resolved.json()["object"]["data"]["location"] == "N, Boiler house"
    assert (current(object_id)["building"], current(object_id)["room"]) == ("N", "Boiler house")
    _converged(alice, old, object_id)


def test_an_old_apps_rejection_names_its_own_fields(alice, acme):
    old = speaking(alice, schema=V1)
    result = old.push_one(equipment(acme, name="Boiler", serial="S" * 101, location="x" * 160))
    assert result["status"] == "rejected"
    assert set(result["errors"]) == {"serial", "location"}, result["errors"]
    assert "at most 100 characters" in result["errors"]["serial"][0]


# --- a retired model -----------------------------------------------------------------------


@pytest.fixture
def retired_models():
    from sync import registry

    yield registry
    registry._retired.clear()


def test_pushes_of_a_retired_model_are_rejected_saying_so(alice, retired_models):
    sync.retire("fieldwork.visit", note="Visits are work orders now: update the app.")
    old = speaking(alice, schema=V1 + ", fieldwork.visit=2")
    result = old.push_one(mutation("fieldwork.visit", data={"title": "Annual check"}))
    assert result["status"] == "rejected" and result["reason"] == "retired"
    assert result["errors"]["model"] == [
        "fieldwork.visit is no longer synced. Visits are work orders now: update the app."
    ]
    # A retry gets the same answer: the entry leaves the outbox.
    again = old.push(
        {**mutation("fieldwork.visit"), "mutation_id": result["mutation_id"], "id": result["id"]}
    )
    assert again["results"][0]["reason"] == "retired"


def test_a_retired_model_can_drain_into_a_synced_one(alice, acme, retired_models):
    def into_work_order(raw):
        if raw["op"] != "create":
            return None  # its later edits have nowhere to go: rejected, saying so
        data = raw["data"]
        return {**raw, "model": "fieldwork.workorder", "data": {"customer": acme, **data}}

    sync.retire("fieldwork.visit", into=into_work_order)
    old = speaking(alice, schema=V1)
    made = old.push_one(mutation("fieldwork.visit", data={"title": "Annual check"}))
    assert made["status"] == "applied"
    from fieldwork.models import WorkOrder

    assert WorkOrder.objects.get(pk=made["id"]).title == "Annual check"
    edit = old.push_one(update("fieldwork.visit", made["id"], 1, title="x"))
    assert (edit["status"], edit["reason"]) == ("rejected", "retired")


def test_a_registered_model_cannot_be_retired(retired_models):
    with pytest.raises(ValueError, match="registered"):
        sync.retire(EQUIPMENT)
