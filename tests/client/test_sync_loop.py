"""The reference client's sync loop, case by case, against the real server."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from client import (
    ApiError,
    ConflictSettled,
    NetworkError,
    NotFound,
    Redirected,
    StaleResolution,
    SyncClient,
    UnsentChanges,
    ValidationError,
)
from fieldwork.models import Customer, WorkOrder
from sync.engine.compaction import feed_compact
from sync.models import MutationRecord
from tests.factories import team_of
from tests.oracle import CUSTOMER, NOTE, ORDER, server_state

pytestmark = pytest.mark.django_db


def fresh(device) -> dict:
    """What a fresh initial sync of the device's user brings now."""
    return {key: (version, data) for key, (version, data) in device.client.fetch_all().items()}


def test_an_initial_sync_pages_and_reports_progress_from_remaining(make_device):
    writer = make_device()
    for i in range(23):
        writer.client.create(CUSTOMER, {"name": f"c{i}"})
    writer.client.sync()
    reader = make_device(user=writer.user, page_size=5)
    seen = []
    report = reader.client.sync(progress=seen.append)
    assert report.initial and report.pulled == 23
    assert [p.pulled for p in seen] == [5, 10, 15, 20, 23]
    assert all(p.initial for p in seen)
    assert seen[0].remaining > 0 and seen[-1].remaining == 0
    assert reader.state() == fresh(reader) == writer.state()


def test_offline_edits_fold_into_one_mutation_per_object(make_device):
    device = make_device()
    c = device.client
    kept = c.create(CUSTOMER, {"name": "Acme"})
    c.update(CUSTOMER, kept, {"phone": "1"})
    dropped = c.create(CUSTOMER, {"name": "Gone"})
    c.delete(CUSTOMER, dropped)  # create + delete: the server never hears of it
    c.sync()
    assert [(m["op"], m["data"]["name"], m["data"]["phone"]) for m in _sent(device)] == [
        ("create", "Acme", "1")
    ]
    c.update(CUSTOMER, kept, {"name": "Acme Ltd"})
    c.update(CUSTOMER, kept, {"phone": "2"})
    c.sync()
    assert [(m["op"], m["base_version"], m["data"]) for m in _sent(device)] == [
        ("update", 1, {"name": "Acme Ltd", "phone": "2"})
    ]
    assert c.update(CUSTOMER, kept, {"phone": "2"}) is None  # unchanged: nothing queued
    c.update(CUSTOMER, kept, {"phone": "3"})
    c.delete(CUSTOMER, kept)  # update + delete: the delete, on the update's base
    c.sync()
    assert [(m["op"], m["base_version"]) for m in _sent(device)] == [("delete", 2)]
    assert Customer.objects.get(pk=kept).is_deleted
    assert c.get(CUSTOMER, kept) is None and device.state() == {}


def _sent(device) -> list[dict]:
    """The mutations of the device's last push."""
    import json

    push = [r for r in device.network.requests if r.url.path.endswith("/push/")][-1]
    return json.loads(push.content)["mutations"]


def test_applied_merged_conflict_and_rejected_results(make_device):
    phone = make_device()
    tablet = make_device(user=phone.user)
    customer = phone.client.create(CUSTOMER, {"name": "Acme", "phone": "1"})
    order = phone.client.create(ORDER, {"customer": customer, "title": "Boiler"})
    assert phone.client.sync().pushed == {"applied": 2}
    tablet.client.sync()

    # Both offline: the phone changes the phone number, the tablet the name.
    phone.client.update(CUSTOMER, customer, {"phone": "2"})
    tablet.client.update(CUSTOMER, customer, {"name": "Acme Ltd"})
    assert phone.client.sync().pushed == {"applied": 1}
    assert tablet.client.sync().pushed == {"merged": 1}
    assert tablet.client.get(CUSTOMER, customer)["phone"] == "2"  # adopted the merge

    # The same field on both sides: a conflict, recorded with the user's value.
    phone.client.update(CUSTOMER, customer, {"phone": "3"})
    tablet.client.update(CUSTOMER, customer, {"phone": "4"})
    phone.client.sync()
    report = tablet.client.sync()
    assert report.pushed == {"conflict": 1}
    (conflict,) = tablet.client.conflicts()
    assert conflict.conflict_id == report.conflicts[0]
    assert conflict.client_data == {"phone": "4"} and conflict.object_id == customer
    assert tablet.client.get(CUSTOMER, customer)["phone"] == "3"  # the server's, for now
    answer = tablet.client.resolve(conflict.conflict_id, "client")
    assert answer["object"]["data"]["phone"] == "4"
    assert tablet.client.get(CUSTOMER, customer)["phone"] == "4"
    assert tablet.client.conflicts() == []
    assert tablet.client.conflicts("resolved")[0].resolved_version == answer["object"]["version"]
    phone.client.sync()
    assert phone.client.get(CUSTOMER, customer)["phone"] == "4"

    # A customer with work orders cannot be deleted: rejected, errors kept for
    # the app, and the object is back in the local view (from the server copy).
    phone.client.delete(CUSTOMER, customer)
    assert phone.client.get(CUSTOMER, customer) is None
    report = phone.client.sync()
    assert report.pushed == {"rejected": 1}
    (rejection,) = phone.client.rejections()
    assert rejection.mutation_id == report.rejected[0] and rejection.op == "delete"
    assert "Cannot be deleted" in rejection.errors["id"][0]
    assert phone.client.get(CUSTOMER, customer)["name"] == "Acme Ltd"
    assert WorkOrder.objects.get(pk=order).customer_id is not None
    phone.client.dismiss_rejection(rejection.mutation_id)
    assert phone.client.rejections() == []
    assert phone.state() == tablet.state() == fresh(phone)


def test_deleting_a_work_order_takes_its_notes_on_every_device(make_device):
    phone = make_device()
    tablet = make_device(user=phone.user)
    customer = phone.client.create(CUSTOMER, {"name": "Acme"})
    order = phone.client.create(ORDER, {"customer": customer, "title": "Boiler"})
    phone.client.create(NOTE, {"work_order": order, "body": "gate code 1234"})
    follow_up = phone.client.create(
        ORDER, {"customer": customer, "title": "Again", "follow_up_of": order}
    )
    phone.client.sync()
    tablet.client.sync()
    tablet.client.delete(ORDER, order)
    tablet.client.sync()
    phone.client.sync()
    assert phone.client.all(NOTE) == {}
    assert phone.client.get(ORDER, follow_up)["follow_up_of"] is None
    assert phone.state() == tablet.state() == fresh(phone)


def test_a_local_edit_made_while_a_pull_is_in_flight_survives_it_and_merges(make_device):
    phone = make_device()
    tablet = make_device(user=phone.user)
    customer = phone.client.create(CUSTOMER, {"name": "Acme"})
    phone.client.sync()
    tablet.client.sync()
    tablet.client.update(CUSTOMER, customer, {"name": "Acme Ltd"})
    tablet.client.sync()

    # The user edits while the pull that brings the tablet's change is on its way.
    phone.network.after_pull = lambda: phone.client.update(CUSTOMER, customer, {"phone": "9"})
    phone.client.sync()
    assert phone.client.store.server_copy(CUSTOMER, customer).version == 2  # pulled
    assert phone.client.get(CUSTOMER, customer) == {
        **phone.client.store.server_copy(CUSTOMER, customer).data,
        "phone": "9",
    }
    (pending,) = phone.client.store.pending()
    assert (pending.op, pending.base_version, pending.data) == ("update", 1, {"phone": "9"})

    assert phone.client.sync().pushed == {"merged": 1}  # made on version 1, merged on the server
    assert phone.client.get(CUSTOMER, customer)["name"] == "Acme Ltd"
    assert phone.client.get(CUSTOMER, customer)["phone"] == "9"
    tablet.client.sync()
    assert phone.state() == tablet.state() == fresh(phone)


def test_a_lost_push_answer_is_retried_with_the_same_mutation_ids(make_device):
    device = make_device()
    customer = device.client.create(CUSTOMER, {"name": "Acme"})
    device.network.lose_push_answers = 1
    assert device.client.sync().pushed == {"applied": 1}
    first, again = device.network.pushed
    assert first == again
    assert MutationRecord.objects.filter(mutation_id=first).count() == 1
    assert Customer.objects.get(pk=customer).version == 1


def test_a_crash_between_push_and_result_resends_the_same_ids_after_a_restart(make_device):
    device = make_device()
    customer = device.client.create(CUSTOMER, {"name": "Acme"})
    device.network.lose_push_answers = 3  # every try: the sync gives up
    with pytest.raises(NetworkError):
        device.client.sync()
    assert Customer.objects.get(pk=customer).version == 1  # it did reach the server
    device.restart()
    (frozen,) = device.client.store.pending()
    assert frozen.sent and frozen.op == "create"
    # A new edit after the restart cannot join the sent entry: it waits behind it.
    device.client.update(CUSTOMER, customer, {"phone": "5"})
    assert [(m.op, m.base_version) for m in device.client.store.pending()] == [
        ("create", None),
        ("update", None),
    ]
    assert device.client.sync().pushed == {"applied": 2}
    assert device.network.pushed[:3] == [frozen.mutation_id] * 3
    assert device.network.pushed[3:] == [frozen.mutation_id, device.network.pushed[4]]
    assert Customer.objects.get(pk=customer).version == 2
    assert device.state() == fresh(device)


def test_resync_required_starts_over_without_losing_the_outbox(make_device, settings):
    phone = make_device()
    tablet = make_device(user=phone.user)
    doomed = phone.client.create(CUSTOMER, {"name": "Doomed"})
    kept = phone.client.create(CUSTOMER, {"name": "Kept"})
    phone.client.sync()
    tablet.client.sync()
    tablet.client.delete(CUSTOMER, doomed)
    tablet.client.sync()
    # Time passes: the tombstone is compacted away, and with it the only news
    # of the delete the phone has not pulled: its cursor is answered with 410.
    settings.SYNC_MUTATION_LOG_RETENTION = timedelta(days=3650)
    feed_compact(now=timezone.now() + settings.SYNC_RETENTION + timedelta(days=1))

    phone.client.update(CUSTOMER, kept, {"phone": "1"})  # offline edit, pushed first
    # ...and one made while the 410'd pull is in flight, still pending after it.
    phone.network.after_pull = lambda: phone.client.update(CUSTOMER, kept, {"name": "Kept!"})
    report = phone.client.sync()
    assert report.resynced and report.initial and report.pushed == {"applied": 1}
    assert phone.client.get(CUSTOMER, doomed) is None  # the initial sync did not bring it
    assert phone.client.get(CUSTOMER, kept).items() >= {"phone": "1", "name": "Kept!"}.items()
    assert [m.data for m in phone.client.store.pending()] == [{"name": "Kept!"}]
    phone.client.sync()
    assert phone.client.store.pending() == []
    assert phone.state() == fresh(phone)


def test_an_unreadable_cursor_starts_over(make_device):
    device = make_device()
    device.client.create(CUSTOMER, {"name": "Acme"})
    device.client.sync()
    device.client.store.set("cursor", "not-a-cursor")
    report = device.client.sync()
    assert report.resynced and report.pulled == 1
    assert device.state() == fresh(device)


def test_resolving_against_a_stale_version_or_twice(make_device):
    phone = make_device()
    tablet = make_device(user=phone.user)
    customer = phone.client.create(CUSTOMER, {"name": "Acme"})
    phone.client.sync()
    tablet.client.sync()
    phone.client.update(CUSTOMER, customer, {"name": "A"})
    tablet.client.update(CUSTOMER, customer, {"name": "B"})
    phone.client.sync()
    (conflict_id,) = tablet.client.sync().conflicts
    phone.client.update(CUSTOMER, customer, {"phone": "7"})  # the object moves on
    phone.client.sync()
    with pytest.raises(StaleResolution) as stale:
        tablet.client.resolve(conflict_id, "client")
    assert stale.value.current["data"]["phone"] == "7"
    assert tablet.client.get(CUSTOMER, customer)["phone"] == "7"  # adopted
    tablet.client.resolve(conflict_id, "fields", {"name": "A and B"})
    with pytest.raises(ConflictSettled):
        phone.client.resolve(conflict_id, "server")  # the same user, another device
    phone.client.sync()
    assert phone.client.get(CUSTOMER, customer)["name"] == "A and B"


def test_conflicts_raised_or_settled_elsewhere_are_refreshed(make_device):
    phone = make_device()
    tablet = make_device(user=phone.user)
    customer = phone.client.create(CUSTOMER, {"name": "Acme"})
    phone.client.sync()
    tablet.client.sync()
    phone.client.update(CUSTOMER, customer, {"name": "A"})
    tablet.client.update(CUSTOMER, customer, {"name": "B"})
    phone.client.sync()
    (conflict_id,) = tablet.client.sync().conflicts
    assert [c.conflict_id for c in phone.client.refresh_conflicts()] == [conflict_id]
    phone.client.resolve(conflict_id, "server")
    tablet.client.sync()  # it had the conflict open: the sync asks after it
    assert tablet.client.conflicts() == []
    assert tablet.client.conflicts("resolved")[0].conflict_id == conflict_id


def test_edits_are_validated_offline_from_discovery(make_device):
    c = make_device().client
    bad = [
        (CUSTOMER, {"name": ""}, "name"),
        (CUSTOMER, {"name": "x" * 201}, "name"),
        (CUSTOMER, {"name": "Acme", "email": "nope"}, "email"),
        (CUSTOMER, {"name": "Acme", "owner": 1}, "owner"),
        (CUSTOMER, {"name": "Acme", "colour": "red"}, "colour"),
        (CUSTOMER, {"name": 5}, "name"),
        (CUSTOMER, {"phone": "1"}, "name"),  # required
        (ORDER, {"customer": None, "title": "t"}, "customer"),
        (ORDER, {"customer": "3f1e0bd1-42f8-4c62-9be0-2d8e3c4b9a10", "title": "t"}, "customer"),
    ]
    for model, data, field in bad:
        with pytest.raises(ValidationError) as caught:
            c.create(model, data)
        assert field in caught.value.errors, (data, caught.value.errors)
    customer = c.create(CUSTOMER, {"name": "Acme"})
    bad_updates = [
        ({"status": "finished"}, "status"),
        ({"estimated_hours": "2"}, "estimated_hours"),
        ({"estimated_hours": True}, "estimated_hours"),
        ({"scheduled_for": "2026-13-01"}, "scheduled_for"),
        ({"due_at": "tomorrow"}, "due_at"),
        ({"title": None}, "title"),
    ]
    order = c.create(ORDER, {"customer": customer, "title": "Boiler"})
    for changes, field in bad_updates:
        with pytest.raises(ValidationError) as caught:
            c.update(ORDER, order, changes)
        assert list(caught.value.errors) == [field]
    c.update(ORDER, order, {"estimated_hours": 2, "due_at": "2026-05-01T10:00:00+02:00"})
    assert c.get(ORDER, order)["status"] == "open"  # discovery's default, shown at once
    assert c.sync().pushed == {"applied": 2}
    assert c.get(ORDER, order)["due_at"] == "2026-05-01T08:00:00Z"
    with pytest.raises(NotFound):
        c.update(ORDER, "3f1e0bd1-42f8-4c62-9be0-2d8e3c4b9a10", {"title": "x"})


def test_what_validation_refuses_the_server_rejects_on_the_same_fields(make_device):
    """The offline checks agree with the server: each refused edit, pushed
    anyway (straight into the outbox), is rejected on the same field."""
    device = make_device()
    c = device.client
    customer = c.create(CUSTOMER, {"name": "Acme"})
    c.sync()
    cases = [
        {"name": ""},
        {"name": "x" * 201},
        {"email": "nope"},
        {"phone": 40 * "1" + "1"},
        {"team": "not-a-uuid"},
        {"owner": 1},
        {"colour": "red"},
        {"address": 7},
    ]
    spec = c.spec(CUSTOMER)
    for changes in cases:
        expected = spec.validate(changes, creating=False)
        assert expected, changes
        c.store.queue(CUSTOMER, customer, "update", changes)
        c.sync()
        (rejection,) = c.rejections()
        assert set(rejection.errors) == set(expected), (changes, rejection.errors)
        c.dismiss_rejection(rejection.mutation_id)


def test_a_device_deleted_on_the_server_registers_again(make_device):
    device = make_device()
    device.client.api.request("DELETE", f"/api/v1/devices/{device.client.device_id}/", expect=204)
    device.client.create(CUSTOMER, {"name": "Acme"})
    assert device.client.sync().pushed == {"applied": 1}


def test_login_with_wrong_credentials_is_a_clear_error(make_device):
    device = make_device()
    with pytest.raises(ApiError) as caught:
        device.client.login(device.user.username, "wrong")
    assert caught.value.code == "invalid_credentials"
    device.client.login(device.user.username, "pw-123456789")
    device.client.sync()


def test_this_server_over_plain_http_is_a_clear_error(wsgi, tmp_path):
    # DEBUG off: SECURE_SSL_REDIRECT answers every API call 301 to https.
    client = SyncClient(tmp_path / "phone", base_url="http://testserver", transport=wsgi)
    with pytest.raises(Redirected) as caught:
        client.login("alice", "pw")
    assert caught.value.suggested_url == "https://testserver"
    assert "SYNC_URL=https://testserver" in str(caught.value)
    client.close()


def test_logging_out_sends_pending_edits_first_then_forgets_the_account(make_device):
    from devices.models import Device as DeviceRow
    from sync.models import Token

    device = make_device()
    device.client.sync()
    device.client.create(CUSTOMER, {"name": "Made offline"})
    device.network.canned = [httpx.ConnectError("offline")] * 3
    with pytest.raises((UnsentChanges, NetworkError)):
        device.client.logout()
    assert device.client.store.pending() != []  # nothing lost, still logged in
    assert device.client.logout() == 1
    assert Customer.objects.filter(name="Made offline").exists()  # pushed before
    assert not DeviceRow.objects.filter(user=device.user).exists()  # no more wake-ups
    assert not Token.objects.filter(user=device.user).exists()
    assert device.client.all() == {} and device.client.store.get("token") is None


def test_another_user_logging_in_starts_from_a_clean_device(make_device):
    first = make_device()
    first.client.create(CUSTOMER, {"name": "Mine"})
    first.client.sync()
    first.client.create(CUSTOMER, {"name": "Pending"})
    other = make_device()  # just for a second user with a password
    first.client.login(other.user.username, "pw-123456789")
    assert first.client.all() == {} and first.client.store.pending() == []
    first.client.sync()
    assert first.state() == {}


def test_teammates_converge_through_joins_and_leaves(make_device):
    from fieldwork.services import team_member_remove

    alice = make_device()
    bob = make_device()
    team = team_of(alice.user, bob.user)
    member = {(alice.user.pk, team.pk): True, (bob.user.pk, team.pk): True}
    customer = alice.client.create(CUSTOMER, {"name": "Shared", "team": str(team.pk)})
    alice.client.sync()
    bob.client.sync()
    assert (CUSTOMER, customer) in bob.state()
    team_member_remove(team=team, user=bob.user)
    member[(bob.user.pk, team.pk)] = False
    bob.client.sync()
    assert bob.state() == server_state(bob.user, member) == {}
    assert alice.state() == server_state(alice.user, member)


def test_an_edit_made_while_a_push_is_being_built_goes_next_not_lost(make_device, monkeypatch):
    """Another thread (the UI) edits the object whose entry a push is taking:
    the edit must not fold into the entry after its request was built."""
    import threading
    import time

    device = make_device()
    shop = device.client.create(CUSTOMER, {"name": "Shop"})
    device.client.sync()
    device.client.update(CUSTOMER, shop, {"phone": "1"})
    store = device.client.store
    taking, real_next_batch = threading.Event(), store.next_batch

    def slow_next_batch(limit: int = 500):
        batch = real_next_batch(limit)
        if batch:
            taking.set()
            time.sleep(0.3)  # the request is built from `batch`
        return batch

    monkeypatch.setattr(store, "next_batch", slow_next_batch)
    editor = threading.Thread(
        target=lambda: taking.wait(5) and device.client.update(CUSTOMER, shop, {"phone": "2"})
    )
    editor.start()
    device.client.push()
    editor.join(5)
    device.client.sync()
    assert Customer.objects.get(pk=shop).phone == "2"
    assert device.client.get(CUSTOMER, shop)["phone"] == "2"
    assert not store.pending()
