"""The reference client across app versions and schema changes
(docs/protocol.md, "App versions and schema changes"), against the real
server: old and new apps editing the same equipment, an app too old to pull,
deprecation notices, and targeted re-syncs (a model re-synced on the server,
an app upgraded under its store).

`fieldwork.equipment` is at version 4: v2 renamed `serial` to
`serial_number`, v3 split `location` into `building` and `room`, v4 added a
required `kind` (fieldwork/sync_registration.py).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import httpx
import pytest
from django.utils import timezone

import sync
from client import NetworkError, NotFound, UpgradeRequired, ValidationError
from client.sync import SyncReport
from devices.models import AppVersionPolicy
from devices.models import Device as DeviceRow
from fieldwork.models import Customer, Equipment, Note, WorkOrder
from sync.writers import service_writes
from tests.oracle import CUSTOMER, NOTE, ORDER

pytestmark = pytest.mark.django_db

EQUIPMENT = "fieldwork.equipment"
STORE_URL = "https://play.example/store/apps/fieldwork"


def pinned(equipment: int) -> dict[str, int]:
    """An app built when equipment was at `equipment` (the rest as now)."""
    return {CUSTOMER: 1, ORDER: 1, NOTE: 1, EQUIPMENT: equipment}


def as_version(data: dict[str, Any], version: int) -> dict[str, Any]:
    """Current equipment data as an app at `version` sees it: written out
    here, apart from the server's own translation (sync.schema)."""
    out = dict(data)
    if version < 4:
        del out["kind"]
    if version < 3:
        building, room = out.pop("building"), out.pop("room")
        out["location"] = ", ".join(part for part in (building, room) if part)
    if version < 2:
        out["serial"] = out.pop("serial_number")
    return out


def fresh(device) -> dict:
    """What an initial sync of the device's app (its schema) brings now."""
    return dict(device.client.fetch_all().items())


def equipment_of(device) -> dict[str, dict[str, Any]]:
    return {key[1]: copy.data for key, copy in device.client.store.server_copies(EQUIPMENT).items()}


def requests_to(device, name: str) -> list[httpx.Request]:
    return [r for r in device.network.requests if r.url.path.rstrip("/").endswith(name)]


def pulled_pages(device) -> list[dict]:
    """Every pull page the server answers the device from now on."""
    pages: list[dict] = []
    device.network.on_pull_page = pages.append
    return pages


def pair(make_device, old_version: int):
    """A user's old app (equipment pinned at `old_version`) and new app, and
    an equipment the old one created and both have synced."""
    old = make_device(schema=pinned(old_version), app_version="1.4.0")
    new = make_device(user=old.user, app_version="2.0.0")
    customer = old.client.create(CUSTOMER, {"name": "Acme"})
    return old, new, customer


# --- an old app and a new one on the same data -------------------------------------------------


def test_an_old_and_a_new_app_edit_the_same_equipment_and_converge(make_device):
    old, new, customer = pair(make_device, 1)
    # Version 1's shape: `serial`, `location`, no `kind`. Not checked against
    # discovery's (current) shape offline: the server translates it.
    made = old.client.create(
        EQUIPMENT,
        {
            "customer": customer,
            "name": "Boiler in the basement",
            "serial": "SN-1",
            "location": "North wing, Boiler room",
        },
    )
    assert old.client.sync().pushed == {"applied": 2}
    assert equipment_of(old)[made] == {
        **equipment_of(old)[made],
        "serial": "SN-1",
        "location": "North wing, Boiler room",
    }
    assert {"serial_number", "building", "room", "kind"}.isdisjoint(equipment_of(old)[made])
    row = Equipment.objects.get(pk=made)
    assert (row.serial_number, row.building, row.room, row.kind) == (
        "SN-1",
        "North wing",
        "Boiler room",
        "boiler",  # derived from the name for the old app's create
    )

    new.client.sync()
    assert (
        new.client.get(EQUIPMENT, made).items()
        >= {
            "serial_number": "SN-1",
            "building": "North wing",
            "room": "Boiler room",
            "kind": "boiler",
        }.items()
    )
    assert "serial" not in new.client.get(EQUIPMENT, made)

    # Both offline: the new app changes kind and room; the old one the serial
    # and the building part of its location (its room part as it was).
    new.client.update(EQUIPMENT, made, {"kind": "heat_pump", "room": "Plant room"})
    old.client.update(EQUIPMENT, made, {"serial": "SN-2", "location": "South wing, Boiler room"})
    assert new.client.sync().pushed == {"applied": 1}
    assert old.client.sync().pushed == {"merged": 1}  # every non-clashing edit kept
    new.client.sync()

    current = {
        "serial_number": "SN-2",
        "building": "South wing",
        "room": "Plant room",
        "kind": "heat_pump",
    }
    assert new.client.get(EQUIPMENT, made).items() >= current.items()
    assert (
        old.client.get(EQUIPMENT, made).items()
        >= {
            "serial": "SN-2",
            "location": "South wing, Plant room",
        }.items()
    )
    assert "kind" not in old.client.get(EQUIPMENT, made)
    row = Equipment.objects.get(pk=made)
    assert {k: getattr(row, k) for k in current} == current
    # Converged: each holds the server's state, in its own app's shape.
    assert new.state() == fresh(new)
    assert old.state() == fresh(old)
    assert old.state() == {
        key: (version, as_version(data, 1) if key[0] == EQUIPMENT else data)
        for key, (version, data) in new.state().items()
    }
    assert old.client.store.pending() == new.client.store.pending() == []


def test_a_renamed_field_merges_with_other_edits_and_clashes_with_itself(make_device):
    old, new, customer = pair(make_device, 1)
    made = old.client.create(EQUIPMENT, {"customer": customer, "name": "Unit 7", "serial": "A"})
    old.client.sync()
    new.client.sync()
    assert new.client.get(EQUIPMENT, made)["kind"] == "other"  # nothing in the name

    # Different fields: the old name on one side, another field on the other.
    old.client.update(EQUIPMENT, made, {"serial": "B"})
    new.client.update(EQUIPMENT, made, {"name": "Unit 7 (left)"})
    assert old.client.sync().pushed == {"applied": 1}
    assert new.client.sync().pushed == {"merged": 1}
    assert (
        new.client.get(EQUIPMENT, made).items()
        >= {
            "serial_number": "B",
            "name": "Unit 7 (left)",
        }.items()
    )

    # The same field under its two names: a conflict, as between two new apps.
    old.client.sync()
    new.client.update(EQUIPMENT, made, {"serial_number": "C-new"})
    old.client.update(EQUIPMENT, made, {"serial": "C-old"})
    assert new.client.sync().pushed == {"applied": 1}
    report = old.client.sync()
    assert report.pushed == {"conflict": 1}
    (conflict,) = old.client.conflicts()
    assert conflict.client_data == {"serial": "C-old"}
    # The server's state stands, in the old app's shape.
    assert old.client.get(EQUIPMENT, made)["serial"] == "C-new"
    # Resolved from the old app, which speaks of `serial` throughout.
    assert old.client.conflict_details(conflict.conflict_id)["fields"] == ["serial"]
    answer = old.client.resolve(conflict.conflict_id, "client")
    assert answer["object"]["data"]["serial"] == "C-old"
    assert old.client.get(EQUIPMENT, made)["serial"] == "C-old"
    assert "serial_number" not in old.client.get(EQUIPMENT, made)
    new.client.sync()
    assert new.client.get(EQUIPMENT, made)["serial_number"] == "C-old"
    assert old.state() == fresh(old)
    assert new.state() == fresh(new)
    assert equipment_of(old)[made] == as_version(equipment_of(new)[made], 1)


def test_a_split_field_merges_part_by_part(make_device):
    old, new, customer = pair(make_device, 1)
    made = old.client.create(
        EQUIPMENT, {"customer": customer, "name": "Heat pump 2", "location": "Annex, Loft"}
    )
    old.client.sync()
    new.client.sync()
    assert (
        new.client.get(EQUIPMENT, made).items()
        >= {
            "building": "Annex",
            "room": "Loft",
            "kind": "heat_pump",
        }.items()
    )

    # The old app moves it to another building (the room part untouched); the
    # new one renames the room. Old first this time.
    old.client.update(EQUIPMENT, made, {"location": "Main house, Loft"})
    new.client.update(EQUIPMENT, made, {"room": "Attic"})
    assert old.client.sync().pushed == {"applied": 1}
    assert new.client.sync().pushed == {"merged": 1}
    old.client.sync()
    assert (
        new.client.get(EQUIPMENT, made).items()
        >= {
            "building": "Main house",
            "room": "Attic",
        }.items()
    )
    assert old.client.get(EQUIPMENT, made)["location"] == "Main house, Attic"
    assert equipment_of(old)[made] == as_version(equipment_of(new)[made], 1)
    assert old.state() == fresh(old) and new.state() == fresh(new)


def test_an_added_required_field_is_derived_for_old_creates_and_kept_by_old_updates(make_device):
    old, new, customer = pair(make_device, 1)
    made = old.client.create(EQUIPMENT, {"customer": customer, "name": "Water heater, flat 3"})
    old.client.sync()
    new.client.sync()
    assert new.client.get(EQUIPMENT, made)["kind"] == "water_heater"

    # The new app sets the kind; the old one, which has never heard of it,
    # renames the equipment meanwhile: its update leaves the kind alone (not
    # derived again from the new name).
    new.client.update(EQUIPMENT, made, {"kind": "boiler"})
    old.client.update(EQUIPMENT, made, {"name": "Air con, flat 3"})
    assert new.client.sync().pushed == {"applied": 1}
    assert old.client.sync().pushed == {"merged": 1}
    new.client.sync()
    assert (
        new.client.get(EQUIPMENT, made).items()
        >= {
            "name": "Air con, flat 3",
            "kind": "boiler",
        }.items()
    )
    assert "kind" not in old.client.get(EQUIPMENT, made)
    assert Equipment.objects.get(pk=made).kind == "boiler"
    assert equipment_of(old)[made] == as_version(equipment_of(new)[made], 1)
    assert old.state() == fresh(old) and new.state() == fresh(new)


def test_an_app_at_version_2_speaks_serial_number_and_location(make_device):
    old, new, customer = pair(make_device, 2)
    made = old.client.create(
        EQUIPMENT,
        {
            "customer": customer,
            "name": "Boiler 1",
            "serial_number": "X-1",
            "location": "Block A, Basement",
        },
    )
    old.client.sync()
    new.client.sync()
    assert (
        new.client.get(EQUIPMENT, made).items()
        >= {
            "serial_number": "X-1",
            "building": "Block A",
            "room": "Basement",
            "kind": "boiler",
        }.items()
    )

    new.client.update(EQUIPMENT, made, {"building": "Block B", "kind": "other"})
    old.client.update(EQUIPMENT, made, {"serial_number": "X-2"})
    new.client.sync()
    assert old.client.sync().pushed == {"merged": 1}
    new.client.sync()
    assert (
        old.client.get(EQUIPMENT, made).items()
        >= {
            "serial_number": "X-2",
            "location": "Block B, Basement",
        }.items()
    )
    assert {"serial", "building", "room", "kind"}.isdisjoint(old.client.get(EQUIPMENT, made))
    assert equipment_of(old)[made] == as_version(equipment_of(new)[made], 2)
    assert old.state() == fresh(old) and new.state() == fresh(new)


def test_an_app_at_version_3_has_building_and_room_but_no_kind(make_device):
    old, new, customer = pair(make_device, 3)
    made = old.client.create(
        EQUIPMENT,
        {"customer": customer, "name": "Heat pump roof", "building": "HQ", "room": "Roof"},
    )
    old.client.sync()
    new.client.sync()
    assert new.client.get(EQUIPMENT, made)["kind"] == "heat_pump"

    new.client.update(EQUIPMENT, made, {"kind": "air_conditioner"})
    old.client.update(EQUIPMENT, made, {"room": "Roof terrace"})
    new.client.sync()
    assert old.client.sync().pushed == {"merged": 1}
    new.client.sync()
    assert (
        new.client.get(EQUIPMENT, made).items()
        >= {
            "room": "Roof terrace",
            "kind": "air_conditioner",
        }.items()
    )
    assert old.client.get(EQUIPMENT, made)["room"] == "Roof terrace"
    assert "kind" not in old.client.get(EQUIPMENT, made)
    assert equipment_of(old)[made] == as_version(equipment_of(new)[made], 3)
    assert old.state() == fresh(old) and new.state() == fresh(new)


# --- offline validation and unknown models -----------------------------------------------------


def test_offline_validation_follows_the_shape_the_app_speaks(make_device):
    old, new, customer = pair(make_device, 1)
    old.client.sync()
    new.client.sync()
    # The current app is checked against discovery: `serial` is no field of it.
    with pytest.raises(ValidationError) as caught:
        new.client.create(EQUIPMENT, {"customer": customer, "name": "B", "serial": "1"})
    assert set(caught.value.errors) == {"serial", "kind"}  # and kind is required
    # The old app's equipment is another shape than discovery's: queued
    # unchecked (the server judges it, translated), with no defaults added.
    made = old.client.create(EQUIPMENT, {"customer": customer, "name": "B", "serial": "1"})
    assert old.client.get(EQUIPMENT, made) == {"customer": customer, "name": "B", "serial": "1"}
    # Its other models are at discovery's version: still checked.
    with pytest.raises(ValidationError):
        old.client.create(CUSTOMER, {"name": ""})
    # What the server cannot take comes back rejected, as for any app.
    bad = old.client.create(EQUIPMENT, {"customer": customer, "name": "C", "serial": 7})
    assert old.client.sync().pushed == {"applied": 1, "rejected": 1}
    (rejection,) = old.client.rejections()
    assert rejection.object_id == bad


def test_models_the_app_was_built_without_are_unknown_to_it(make_device):
    new = make_device()
    old = make_device(user=new.user, schema={CUSTOMER: 1, ORDER: 1})  # no notes, no equipment
    customer = new.client.create(CUSTOMER, {"name": "Acme"})
    order = new.client.create(ORDER, {"customer": customer, "title": "Service"})
    new.client.create(NOTE, {"work_order": order, "body": "Gate code 1234"})
    new.client.create(EQUIPMENT, {"customer": customer, "name": "Boiler", "kind": "boiler"})
    new.client.sync()
    old.client.sync()
    assert {model for model, _ in old.state()} == {CUSTOMER, ORDER}
    assert old.state() == fresh(old)
    for model in (NOTE, EQUIPMENT, "note"):
        with pytest.raises(NotFound):
            old.client.create(model, {"body": "x"})
        with pytest.raises(NotFound):
            old.client.all(model)
    assert old.client.get(ORDER, order)["title"] == "Service"


# --- the handshake -----------------------------------------------------------------------------


def test_every_sync_call_says_which_app_which_schema_and_how_its_outbox_stands(make_device):
    device = make_device(app_version="2.1.0", schema=pinned(4))
    customer = device.client.create(CUSTOMER, {"name": "Acme"})
    device.client.create(CUSTOMER, {"name": "Other"})
    # The oldest edit was made an hour and a half ago.
    with device.client.store.transaction() as db:
        made = (timezone.now() - dt.timedelta(seconds=5400)).isoformat()
        db.execute("UPDATE outbox SET created_at = ? WHERE object_id = ?", (made, customer))
    device.network.requests.clear()
    device.client.refresh_models()
    device.client.sync()
    device.client.refresh_conflicts()
    device.client.update(CUSTOMER, customer, {"phone": "1"})
    device.client.pull()
    names = [r.url.path.rstrip("/").rsplit("/", 1)[-1] for r in device.network.requests]
    assert names == ["models", "push", "pull", "conflicts", "pull"]
    schema = "fieldwork.customer=1,fieldwork.equipment=4,fieldwork.note=1,fieldwork.workorder=1"
    for request in device.network.requests:
        assert request.headers["X-App-Version"] == "2.1.0"
        assert request.headers["X-Schema-Version"] == schema
    models, push, pull, conflicts, last_pull = device.network.requests
    assert (push.headers["X-Outbox-Pending"], models.headers["X-Outbox-Pending"]) == ("2", "2")
    assert 5400 <= int(push.headers["X-Outbox-Oldest-Age"]) < 5460
    # Sent even when the outbox is empty.
    assert (pull.headers["X-Outbox-Pending"], pull.headers["X-Outbox-Oldest-Age"]) == ("0", "0")
    assert conflicts.headers["X-Outbox-Pending"] == "0"
    assert last_pull.headers["X-Outbox-Pending"] == "1"
    assert 0 <= int(last_pull.headers["X-Outbox-Oldest-Age"]) < 60

    # The server's record of the device, for the admin's "App versions" page.
    row = DeviceRow.objects.get(pk=device.client.device_id)
    assert row.app_version == "2.1.0"
    assert row.schema_versions == pinned(4)
    assert row.outbox_pending == 1 and row.outbox_oldest_at is not None
    device.client.sync()
    row.refresh_from_db()
    assert (row.outbox_pending, row.outbox_oldest_at) == (0, None)


def test_an_app_speaking_the_current_schema_sends_no_schema_header(make_device):
    device = make_device()
    device.client.sync()
    (pull,) = requests_to(device, "pull")
    assert "X-Schema-Version" not in pull.headers
    assert "X-App-Version" not in pull.headers
    assert pull.headers["X-Outbox-Pending"] == "0"


# --- too old: drain first, then stop ---------------------------------------------------------


def test_an_app_below_the_minimum_pushes_its_outbox_then_stops_pulling(make_device):
    phone = make_device(app_version="1.5.0")
    current = make_device(user=phone.user, app_version="2.3.0")
    kept = phone.client.create(CUSTOMER, {"name": "Synced before"})
    phone.client.sync()
    AppVersionPolicy.objects.create(
        platform="android", minimum_version="2.0.0", upgrade_url=STORE_URL
    )
    # Offline edits, made before the user hears of the upgrade.
    made = phone.client.create(CUSTOMER, {"name": "Made offline"})
    phone.client.update(CUSTOMER, kept, {"phone": "555"})
    current.client.create(CUSTOMER, {"name": "From the current app"})
    current.client.sync()

    with pytest.raises(UpgradeRequired) as caught:
        phone.client.sync()
    refused = caught.value
    assert (refused.status, refused.code) == (426, "upgrade_required")
    assert (refused.minimum_version, refused.platform, refused.upgrade_url) == (
        "2.0.0",
        "android",
        STORE_URL,
    )
    # The outbox went out first and landed; the pull was refused.
    assert refused.report.pushed == {"applied": 2}
    assert Customer.objects.get(pk=made).name == "Made offline"
    assert Customer.objects.get(pk=kept).phone == "555"
    assert phone.client.store.pending() == []
    assert [r.url.path.rsplit("/", 2)[-2] for r in phone.network.requests[-2:]] == [
        "push",
        "pull",
    ]
    # Local data kept (and readable), nothing pulled from the current app.
    assert {data["name"] for data in phone.client.all(CUSTOMER).values()} == {
        "Synced before",
        "Made offline",
    }
    assert phone.client.get(CUSTOMER, kept)["phone"] == "555"

    # follow() stops on it rather than spinning.
    stop = threading.Event()
    with pytest.raises(UpgradeRequired):
        phone.client.follow(stop, wait=1, poll_every=0.01)
    # Upgraded: the same store pulls again.
    phone.options["app_version"] = "2.0.0"
    phone.restart()
    phone.client.sync()
    current.client.sync()
    assert phone.state() == fresh(phone) == current.state()


def test_follow_stops_when_a_live_pull_is_refused_for_the_app_version(make_device):
    phone = make_device(app_version="1.5.0")
    phone.client.create(CUSTOMER, {"name": "Pending"})
    stop = threading.Event()
    reports: list[SyncReport] = []

    def synced(report: SyncReport) -> None:  # after follow()'s first sync
        reports.append(report)
        AppVersionPolicy.objects.create(platform="android", minimum_version="2.0.0")

    phone.network.requests.clear()
    with pytest.raises(UpgradeRequired):
        phone.client.follow(stop, wait=1, on_sync=synced)
    assert [r.pushed for r in reports] == [{"applied": 1}]
    assert [r.url.path.rsplit("/", 2)[-2] for r in phone.network.requests] == [
        "push",
        "pull",
        "live",
    ]


def test_a_deprecated_app_version_is_told_when_it_stops_working(make_device):
    phone = make_device(app_version="2.5.0")
    phone.client.sync()
    assert phone.client.deprecation is None
    sunset = timezone.now().replace(microsecond=0) + dt.timedelta(days=30)
    policy = AppVersionPolicy.objects.create(
        platform="android",
        minimum_version="2.0.0",
        deprecated_below="3.0.0",
        sunset_at=sunset,
        upgrade_url=STORE_URL,
    )
    phone.client.create(CUSTOMER, {"name": "Acme"})
    assert phone.client.sync().pushed == {"applied": 1}  # still syncing
    notice = phone.client.deprecation
    assert notice is not None
    assert notice.deprecated_at == policy.deprecated_at.replace(microsecond=0)
    assert notice.sunset_at == sunset
    assert notice.url == STORE_URL
    assert phone.client.status().deprecation == notice
    # Kept in the store: the app shows it offline too.
    phone.restart()
    assert phone.client.deprecation == notice

    # The sunset passes: that version is now refused as too old.
    policy.sunset_at = timezone.now() - dt.timedelta(seconds=1)
    policy.save()
    with pytest.raises(UpgradeRequired) as caught:
        phone.client.sync()
    assert caught.value.minimum_version == "3.0.0"
    assert phone.client.deprecation is not None

    # Upgraded past it: the notice goes away.
    phone.options["app_version"] = "3.0.1"
    phone.restart()
    phone.client.sync()
    assert phone.client.deprecation is None


# --- targeted re-sync ------------------------------------------------------------------------


def _fleet(device, count: int = 5) -> tuple[str, list[str], str]:
    """A customer, `count` pieces of equipment and a work order, synced."""
    customer = device.client.create(CUSTOMER, {"name": "Acme"})
    made = [
        device.client.create(
            EQUIPMENT, {"customer": customer, "name": f"Unit {i}", "kind": "other"}
        )
        for i in range(count)
    ]
    order = device.client.create(ORDER, {"customer": customer, "title": "Service"})
    device.client.sync()
    return customer, made, order


def _backfill(rooms: dict[str, str], gone: str | None = None) -> None:
    """Equipment rows changed the way a data migration would: outside the
    feed (the capture's triggers stand aside), then a targeted re-sync."""
    with service_writes():
        for pk, room in rooms.items():
            Equipment.objects.filter(pk=pk).update(room=room)
        if gone is not None:
            Equipment.objects.filter(pk=gone).delete()
    sync.resync(Equipment, reason="rooms backfilled")


def test_a_resync_of_a_model_fetches_that_model_again_and_nothing_else(make_device):
    phone = make_device(page_size=2)
    customer, made, order = _fleet(phone)
    _backfill({made[0]: "Plant room", made[1]: "Loft"}, gone=made[4])
    # Offline edits, pushed before the re-fetch replaces what they were made on.
    phone.client.update(EQUIPMENT, made[2], {"name": "Unit 2 (left)"})
    phone.client.update(CUSTOMER, customer, {"phone": "1"})
    phone.network.requests.clear()
    pages = pulled_pages(phone)

    report = phone.client.sync()
    assert report.refetched == [EQUIPMENT] and not report.resynced
    assert report.pushed == {"applied": 2}
    assert Equipment.objects.get(pk=made[2]).name == "Unit 2 (left)"
    # The push first; then the old cursor's pull (410); then equipment alone,
    # as an initial sync of it; then on from the 410's cursor.
    calls = [(r.url.path.rsplit("/", 2)[-2], dict(r.url.params)) for r in phone.network.requests]
    push, refused, first, *more, last = calls
    assert push[0] == "push" and {name for name, _ in calls[1:]} == {"pull"}
    assert "models" not in refused[1] and "cursor" in refused[1]
    assert first[1] == {"limit": "2", "models": EQUIPMENT}  # no cursor
    assert more and all(p["models"] == EQUIPMENT and "cursor" in p for _, p in more)
    assert "models" not in last[1] and last[1]["cursor"] != refused[1]["cursor"]
    # Only equipment came down: customers and work orders kept their place.
    assert {c["model"] for page in pages for c in page["changes"]} == {EQUIPMENT}
    # The four pieces left (the one just pushed may come twice: a pull may
    # send a state again, never an older one).
    assert {c["id"] for page in pages for c in page["changes"]} == set(made[:4])
    assert report.pulled == sum(len(page["changes"]) for page in pages)
    assert phone.client.get(EQUIPMENT, made[0])["room"] == "Plant room"
    assert phone.client.get(EQUIPMENT, made[1])["room"] == "Loft"
    assert phone.client.get(EQUIPMENT, made[4]) is None  # gone on the server
    assert phone.client.get(ORDER, order)["title"] == "Service"
    assert phone.client.store.refetch() is None
    assert phone.state() == fresh(phone)
    # Then on as usual: nothing again.
    assert phone.client.sync().refetched == []


class CutOff(httpx.BaseTransport):
    """The network drops after `pages` re-fetch pages have been answered."""

    def __init__(self, inner: httpx.BaseTransport, pages: int) -> None:
        self.inner = inner
        self.pages = pages

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.pages <= 0:
            raise httpx.ConnectError("the train went into a tunnel", request=request)
        if "models" in request.url.params:
            self.pages -= 1
        return self.inner.handle_request(request)


def test_an_interrupted_refetch_resumes_where_it_stopped(make_device):
    phone = make_device(page_size=2)
    _, made, _ = _fleet(phone)
    server = phone.network.inner
    _backfill(dict.fromkeys(made, "Basement"))
    phone.client.update(EQUIPMENT, made[0], {"name": "Unit 0 (left)"})
    phone.network.inner = CutOff(server, pages=1)
    with pytest.raises(NetworkError):
        phone.client.sync()
    # Pushed; the 410's models and cursor kept, with the re-fetch's place.
    assert phone.client.store.pending() == []
    kept = phone.client.store.refetch()
    assert kept["models"] == [EQUIPMENT] and kept["cursor"] and kept["page"]

    phone.network.inner = server
    phone.network.requests.clear()
    phone.restart()  # even across a restart
    phone.client.update(CUSTOMER, phone.client.get(EQUIPMENT, made[0])["customer"], {"phone": "2"})
    report = phone.client.sync()
    assert report.refetched == [EQUIPMENT] and report.pushed == {"applied": 1}
    # The outbox first, then the re-fetch from its kept place (not from the
    # start), then the 410's cursor.
    push, *pulls = phone.network.requests
    assert push.url.path.endswith("/push/")
    assert pulls[0].url.params["cursor"] == kept["page"]
    assert pulls[-1].url.params.get("models") is None
    assert all(d["room"] == "Basement" for d in equipment_of(phone).values())
    assert phone.state() == fresh(phone)


def test_follow_refetches_when_a_live_pull_names_models(make_device):
    phone = make_device()
    _, made, _ = _fleet(phone, count=2)
    stop = threading.Event()
    reports: list[SyncReport] = []

    def synced(report: SyncReport) -> None:
        reports.append(report)
        if len(reports) == 1:  # after the first sync, before the live pull
            _backfill({made[0]: "Boiler house"})
        else:
            stop.set()

    phone.client.update(CUSTOMER, phone.client.get(EQUIPMENT, made[0])["customer"], {"phone": "3"})
    phone.network.requests.clear()
    phone.client.follow(stop, wait=1, on_sync=synced)
    first, second = reports
    assert first.pushed == {"applied": 1} and second.refetched == [EQUIPMENT]
    names = [r.url.path.rsplit("/", 2)[-2] for r in phone.network.requests]
    assert names == ["push", "pull", "live", "pull", "pull"]
    assert phone.client.get(EQUIPMENT, made[0])["room"] == "Boiler house"
    assert phone.state() == fresh(phone)


def test_an_upgraded_app_refetches_the_models_it_now_speaks_newer(make_device):
    new = make_device()
    customer = new.client.create(CUSTOMER, {"name": "Acme"})
    order = new.client.create(ORDER, {"customer": customer, "title": "Service"})
    new.client.create(NOTE, {"work_order": order, "body": "Gate code"})
    made = new.client.create(
        EQUIPMENT,
        {
            "customer": customer,
            "name": "Boiler",
            "serial_number": "S-1",
            "building": "North wing",
            "room": "Basement",
            "kind": "boiler",
        },
    )
    new.client.sync()
    # An app built with equipment at version 1, and without notes.
    phone = make_device(user=new.user, schema={CUSTOMER: 1, ORDER: 1, EQUIPMENT: 1})
    phone.client.sync()
    assert equipment_of(phone)[made] == as_version(equipment_of(new)[made], 1)
    assert {model for model, _ in phone.state()} == {CUSTOMER, ORDER, EQUIPMENT}
    # An edit made in the old app, not pushed before the upgrade.
    phone.client.update(EQUIPMENT, made, {"serial": "S-2"})

    phone.options["schema"] = pinned(4)  # the app upgraded, same store
    phone.restart()
    phone.network.requests.clear()
    pages = pulled_pages(phone)
    report = phone.client.sync()
    # The old edit went out in the shape it was made in...
    assert report.pushed == {"applied": 1}
    push, *pulls = phone.network.requests
    assert "fieldwork.equipment=1" in push.headers["X-Schema-Version"]
    assert all("fieldwork.equipment=4" in r.headers["X-Schema-Version"] for r in pulls)
    assert Equipment.objects.get(pk=made).serial_number == "S-2"
    # ...then only equipment (now newer) and notes (now known) were fetched again.
    assert report.refetched == [EQUIPMENT, NOTE]
    assert {c["model"] for page in pages for c in page["changes"]} == {EQUIPMENT, NOTE}
    assert pulls[1].url.params["models"] == f"{EQUIPMENT},{NOTE}"
    assert (
        phone.client.get(EQUIPMENT, made).items()
        >= {
            "serial_number": "S-2",
            "building": "North wing",
            "room": "Basement",
            "kind": "boiler",
        }.items()
    )
    assert {"serial", "location"}.isdisjoint(phone.client.get(EQUIPMENT, made))
    new.client.sync()
    assert phone.state() == fresh(phone) == new.state()
    # The upgraded app edits in the new shape, checked offline again.
    with pytest.raises(ValidationError):
        phone.client.update(EQUIPMENT, made, {"serial": "S-3"})
    phone.client.update(EQUIPMENT, made, {"kind": "other"})
    assert phone.client.sync().pushed == {"applied": 1}
    assert json.loads(requests_to(phone, "push")[-1].content)["mutations"][0]["data"] == {
        "kind": "other"
    }


def test_a_resync_without_models_still_starts_over(make_device):
    """The answer of old: no `models`, so an initial sync of everything."""
    phone = make_device()
    _fleet(phone, count=1)
    body = {"code": "resync_required", "detail": "Your cursor is too old."}
    phone.network.canned = [httpx.Response(410, json=body)]
    phone.network.requests.clear()
    report = phone.client.sync()
    assert report.resynced and report.initial and report.refetched == []
    assert report.pulled == 3
    assert phone.state() == fresh(phone)
    assert WorkOrder.objects.count() == 1 and Note.objects.count() == 0


def test_a_refetch_in_the_middle_of_an_initial_sync_keeps_what_that_sync_brought(make_device):
    writer = make_device()
    _, made, _ = _fleet(writer, count=4)
    for i in range(6):
        writer.client.create(CUSTOMER, {"name": f"Customer {i}"})
    writer.client.sync()
    phone = make_device(user=writer.user, page_size=3)
    backfilled: list[dict] = []

    def after_a_page(page: dict) -> None:  # once, while the initial sync is under way
        if not backfilled:
            backfilled.append(page)
            _backfill(dict.fromkeys(made, "Cellar"))

    phone.network.on_pull_page = after_a_page
    report = phone.client.sync()
    assert report.initial and report.refetched == [EQUIPMENT]
    # Nothing the initial sync brought before the re-fetch was dropped at its end.
    assert (
        phone.state()
        == fresh(phone)
        == writer.state()
        | {
            (EQUIPMENT, pk): (version, {**data, "room": "Cellar"})
            for (model, pk), (version, data) in writer.state().items()
            if model == EQUIPMENT
        }
    )
    assert phone.client.store.get("initial_sync") is None
