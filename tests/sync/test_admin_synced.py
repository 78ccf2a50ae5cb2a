"""Synced models in the admin: staff add, edit, delete and revert them, and every
one of those writes goes through the write service, exactly as a push would
(a new version, one history row by the staff member, the change feed)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.models import QuerySet
from django.test import Client

from devices.models import Device
from fieldwork.models import Customer, Note, WorkOrder
from sync.engine.conflicts import conflict_resolve
from sync.engine.write import mutations_apply
from sync.models import Change, Conflict, SyncedModel
from tests.conftest import Actor
from tests.factories import customer, delete, update, work_order

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"
WORK_ORDER = "fieldwork.workorder"
CUSTOMERS = "/admin/fieldwork/customer/"
UPSERT, DELETE = Change.Op.UPSERT, Change.Op.DELETE


@pytest.fixture
def staff_user() -> Any:
    return get_user_model().objects.create_superuser("staff", password="staff-pass-1234")


@pytest.fixture
def staff(staff_user: Any) -> Client:
    client = Client(HTTP_X_FORWARDED_PROTO="https")
    client.force_login(staff_user)
    return client


@pytest.fixture(autouse=True)
def no_direct_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any save(), delete() or queryset update()/delete() of a synced row fails the
    test: the write service writes with bulk statements, so only a path around
    it would call these."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a synced row was written behind the write service")

    for model in (Customer, WorkOrder, Note):
        monkeypatch.setattr(model, "save", refuse)
        monkeypatch.setattr(model, "delete", refuse)
    for name in ("update", "delete"):
        original = getattr(QuerySet, name)

        def guarded(self: QuerySet, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if issubclass(self.model, SyncedModel):
                refuse()
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(QuerySet, name, guarded)


# --- helpers -------------------------------------------------------------------------


def change_url(object_id: Any, model: str = "customer") -> str:
    return f"/admin/fieldwork/{model}/{object_id}/change/"


def browser_form(page: Any) -> dict[str, Any]:
    """What a browser submits for the admin form on `page`, as the page rendered
    it (the time widget, for one, renders no microseconds)."""
    form = page.context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        widget = field.widget
        if isinstance(widget, forms.MultiWidget):
            for i, (sub, part) in enumerate(
                zip(widget.widgets, widget.decompress(value), strict=True)
            ):
                data[f"{name}_{i}"] = sub.format_value(part) or ""
        elif isinstance(widget, forms.CheckboxInput):
            if value:
                data[name] = "on"
        else:
            shown = widget.format_value(value)
            if isinstance(shown, list):
                shown = shown[0] if shown else ""
            data[name] = "" if shown is None else str(shown)
    return data


def history_of(model: type[SyncedModel], object_id: Any) -> list[tuple[int, str, str, str]]:
    """(version, type, user, reason) of each history row, oldest first."""
    return [
        (h.version, h.history_type, h.history_user.username, h.history_change_reason)
        for h in model.history.filter(id=object_id)
        .select_related("history_user")  # type: ignore[attr-defined]
        .order_by("history_id")
    ]


def feed_of(object_id: Any) -> list[tuple[str, int, int]]:
    """(channel, version, op) of each change feed row, in feed order."""
    return list(
        Change.objects.filter(object_id=object_id)
        .order_by("seq")
        .values_list("channel", "version", "op")
    )


def messages_of(page: Any) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in page.context["messages"]]


def pulled(changes: list[dict[str, Any]], object_id: str) -> dict[str, Any]:
    [change] = [c for c in changes if c["id"] == object_id]
    return change


def channel(actor: Actor) -> str:
    return f"user:{actor.user.pk}"


def applied(actor: Actor, mutation: dict[str, Any]) -> None:
    assert actor.push_one(mutation)["status"] == "applied"


def pushed_customer(actor: Actor, name: str = "Acme", **data: Any) -> str:
    c = customer(name, **data)
    applied(actor, c)
    return c["id"]


@contextmanager
def before_first_query(fragment: str, action: Callable[[], Any]) -> Iterator[None]:
    """Run `action` just before the first SQL statement containing `fragment`: a
    concurrent writer committing at that exact moment."""
    fired = False

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal fired
        if not fired and fragment in sql:
            fired = True
            action()
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield
    assert fired, f"no query touched {fragment}"


# --- add -----------------------------------------------------------------------------


def test_add_creates_the_object_through_the_service(staff, alice):
    page = staff.get(f"{CUSTOMERS}add/")
    assert page.status_code == 200
    assert 'name="base_version"' not in page.content.decode()  # nothing to be stale against
    _, cursor = alice.pull_all()
    response = staff.post(
        f"{CUSTOMERS}add/",
        {"name": "Acme", "phone": "1", "owner": alice.user.pk, "_continue": "1"},
    )
    created = Customer.objects.get()
    assert response.status_code == 302
    assert response["Location"] == change_url(created.pk)
    assert (created.name, created.phone, created.owner_id, created.version) == (
        "Acme",
        "1",
        alice.user.pk,
        1,
    )
    assert created.last_device_id is None
    assert history_of(Customer, created.pk) == [(1, "+", "staff", "admin edit by staff")]
    assert feed_of(created.pk) == [(channel(alice), 1, UPSERT)]
    changes, _ = alice.pull_all(cursor)
    assert pulled(changes, str(created.pk))["data"]["name"] == "Acme"
    page = staff.get(response["Location"])
    assert ("success", "The customer “Acme” was saved as version 1.") in messages_of(page)


def test_add_form_shows_what_the_service_would_refuse(staff, alice):
    customer_id = pushed_customer(alice)
    applied(alice, delete(CUSTOMER, customer_id, 1))
    feed_before = Change.objects.count()
    data = browser_form(staff.get("/admin/fieldwork/workorder/add/"))
    data.update(customer=customer_id, title="Fix boiler", owner=alice.user.pk)
    page = staff.post("/admin/fieldwork/workorder/add/", data)
    # Django's own check passes (the row exists); the service's does not.
    assert page.status_code == 200
    assert page.context["adminform"].form.errors == {
        "customer": ["No fieldwork.customer with this id in your scope."]
    }
    assert not WorkOrder.objects.exists()
    assert Change.objects.count() == feed_before


def test_create_refused_at_write_time_returns_to_the_add_form(staff, alice):
    customer_id = pushed_customer(alice)

    def device_deletes_the_customer() -> None:
        outcome = mutations_apply(
            user=alice.user, mutations=[delete(CUSTOMER, customer_id, 1)], device_id=alice.device_id
        )
        assert outcome.results[0].status == "applied"

    # The form's check passes; the customer is deleted before the write runs.
    data = browser_form(staff.get("/admin/fieldwork/workorder/add/"))
    data.update(customer=customer_id, title="Fix boiler", owner=alice.user.pk)
    with before_first_query('FROM "sync_mutationrecord"', device_deletes_the_customer):
        response = staff.post("/admin/fieldwork/workorder/add/", data)
    assert response.status_code == 302
    assert response["Location"] == "/admin/fieldwork/workorder/add/"
    assert not WorkOrder.objects.exists()
    page = staff.get(response["Location"])
    assert messages_of(page) == [
        (
            "error",
            "The work order was not saved: customer: "
            "No fieldwork.customer with this id in your scope.",
        )
    ]


# --- change ----------------------------------------------------------------------------


def test_change_writes_a_new_version_with_the_staff_member_in_history(staff, alice):
    cid = pushed_customer(alice, phone="1")
    _, cursor = alice.pull_all()
    page = staff.get(change_url(cid))
    assert 'name="base_version" value="1"' in page.content.decode()
    data = browser_form(page)
    data["name"] = "Acme Ltd"
    response = staff.post(change_url(cid), data)
    assert response.status_code == 302
    assert response["Location"] == CUSTOMERS
    c = Customer.objects.get(pk=cid)
    assert (c.name, c.phone, c.version, c.last_device_id) == ("Acme Ltd", "1", 2, None)
    assert history_of(Customer, cid)[1:] == [(2, "~", "staff", "admin edit by staff")]
    assert feed_of(cid) == [(channel(alice), 1, UPSERT), (channel(alice), 2, UPSERT)]
    changes, _ = alice.pull_all(cursor)
    assert pulled(changes, cid)["version"] == 2
    assert pulled(changes, cid)["data"]["name"] == "Acme Ltd"
    assert messages_of(staff.get(CUSTOMERS)) == [
        ("success", "The customer “Acme Ltd” was saved as version 2.")
    ]


def test_saving_an_unchanged_form_writes_nothing(staff, alice):
    cid = pushed_customer(alice)
    response = staff.post(change_url(cid), browser_form(staff.get(change_url(cid))), follow=True)
    assert Customer.objects.get(pk=cid).version == 1
    assert len(history_of(Customer, cid)) == 1
    assert len(feed_of(cid)) == 1
    assert messages_of(response) == [("success", "No changes to the customer “Acme”.")]


def test_stale_edit_is_merged_with_a_devices_change(staff, alice):
    cid = pushed_customer(alice, phone="1")
    data = browser_form(staff.get(change_url(cid)))
    applied(alice, update(CUSTOMER, cid, 1, phone="2"))
    data["name"] = "Acme Ltd"
    response = staff.post(change_url(cid), data, follow=True)
    c = Customer.objects.get(pk=cid)
    assert (c.name, c.phone, c.version) == ("Acme Ltd", "2", 3)
    assert history_of(Customer, cid)[2:] == [(3, "~", "staff", "admin edit by staff")]
    assert messages_of(response) == [
        (
            "warning",
            "The customer “Acme Ltd” had changed since you opened the form (at version 1); "
            "your edits were merged with those changes under its conflict policy "
            "(now version 3).",
        )
    ]


def test_stale_edit_of_the_same_field_is_a_conflict_and_writes_nothing(staff, staff_user, alice):
    cid = pushed_customer(alice, phone="1")
    data = browser_form(staff.get(change_url(cid)))
    applied(alice, update(CUSTOMER, cid, 1, name="Device name", phone="2"))
    history_before, feed_before = history_of(Customer, cid), feed_of(cid)
    data["name"] = "Staff name"
    response = staff.post(change_url(cid), data, follow=True)
    c = Customer.objects.get(pk=cid)
    assert (c.name, c.phone, c.version) == ("Device name", "2", 2)
    assert history_of(Customer, cid) == history_before
    assert feed_of(cid) == feed_before
    conflict = Conflict.objects.get(object_id=cid)
    assert (conflict.user_id, conflict.fields, conflict.base_version) == (
        staff_user.pk,
        ["name"],
        1,
    )
    # Only what the staff member edited: taking "the client's" must not undo the
    # device's phone.
    assert conflict.client_data == {"name": "Staff name"}
    [(level, text)] = messages_of(response)
    assert level == "warning" and "nothing was written" in text
    link = f'href="/admin/sync/conflict/{conflict.pk}/change/"'
    assert link in response.content.decode()
    assert staff.get(f"/admin/sync/conflict/{conflict.pk}/change/").status_code == 200
    conflict_resolve(
        conflict_id=conflict.pk, user=staff_user, choice="client", expected_version=2, as_staff=True
    )
    c = Customer.objects.get(pk=cid)
    assert (c.name, c.phone) == ("Staff name", "2")


def test_untouched_fields_are_not_rewritten_by_the_forms_round_trip(staff, alice):
    cid = pushed_customer(alice)
    wo = work_order(
        cid,
        description="line one\nline two",
        due_at="2026-03-01T10:00:00.123456Z",
        estimated_hours=1.1,
    )
    applied(alice, wo)
    data = browser_form(staff.get(change_url(wo["id"], "workorder")))
    assert data["due_at_1"] == "10:00:00"  # what the browser gets, and sends back
    data["description"] = data["description"].replace("\n", "\r\n")  # as browsers submit it
    data["title"] = "Fix the boiler"
    assert staff.post(change_url(wo["id"], "workorder"), data).status_code == 302
    saved = WorkOrder.objects.get(pk=wo["id"])
    assert saved.version == 2 and saved.title == "Fix the boiler"
    assert saved.due_at == dt.datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert saved.description == "line one\nline two"
    assert saved.estimated_hours == 1.1


def test_owner_change_moves_the_object_to_the_new_owners_devices(staff, alice, bob):
    cid = pushed_customer(alice)
    _, alice_cursor = alice.pull_all()
    page = staff.get(change_url(cid))
    data = browser_form(page)
    data["owner"] = str(bob.user.pk)
    assert staff.post(change_url(cid), data).status_code == 302
    assert Customer.objects.get(pk=cid).owner_id == bob.user.pk
    assert feed_of(cid)[1:] == [(channel(bob), 2, UPSERT), (channel(alice), 2, DELETE)]
    bob_changes, _ = bob.pull_all()
    assert pulled(bob_changes, cid)["op"] == "upsert"
    alice_changes, _ = alice.pull_all(alice_cursor)
    assert pulled(alice_changes, cid)["op"] == "delete"


def test_invalid_edit_shows_errors_and_writes_nothing(staff, alice):
    cid = pushed_customer(alice)
    data = browser_form(staff.get(change_url(cid)))
    page = staff.post(change_url(cid), {**data, "email": "not an email"})
    assert page.status_code == 200
    assert page.context["adminform"].form.errors == {"email": ["Enter a valid email address."]}
    page = staff.post(change_url(cid), {**data, "name": "New", "base_version": ""})
    assert page.status_code == 200
    assert "which version it was opened at" in str(page.context["adminform"].form.errors)
    assert Customer.objects.get(pk=cid).version == 1
    assert len(history_of(Customer, cid)) == 1
    assert len(feed_of(cid)) == 1


def test_write_the_service_rejects_is_reported_on_the_form(staff, alice):
    cid = pushed_customer(alice)
    data = {**browser_form(staff.get(change_url(cid))), "name": "New", "base_version": "7"}
    response = staff.post(change_url(cid), data)
    assert response.status_code == 302
    assert response["Location"] == change_url(cid)
    assert messages_of(staff.get(change_url(cid))) == [
        (
            "error",
            "The customer was not saved: base_version: Ahead of the server, which is at version 1.",
        )
    ]
    assert Customer.objects.get(pk=cid).name == "Acme"
    assert len(history_of(Customer, cid)) == 1


# --- delete ----------------------------------------------------------------------------


def test_delete_is_a_soft_delete_through_the_service(staff, alice):
    cid = pushed_customer(alice)
    _, cursor = alice.pull_all()
    confirm = staff.get(f"{CUSTOMERS}{cid}/delete/")
    assert confirm.status_code == 200
    assert confirm.context["deleted_objects"] == [f'Customer: <a href="{change_url(cid)}">Acme</a>']
    assert not confirm.context["protected"]
    response = staff.post(f"{CUSTOMERS}{cid}/delete/", {"post": "yes"}, follow=True)
    c = Customer.objects.get(pk=cid)
    assert c.deleted_at is not None and c.version == 2
    assert history_of(Customer, cid)[1:] == [(2, "-", "staff", "admin delete by staff")]
    assert feed_of(cid)[1:] == [(channel(alice), 2, DELETE)]
    changes, _ = alice.pull_all(cursor)
    assert pulled(changes, cid)["op"] == "delete"
    assert messages_of(response) == [
        (
            "success",
            "The customer “Acme” was deleted (version 2); devices will receive the deletion.",
        )
    ]


def test_a_customer_with_work_orders_is_protected_from_deletion(staff, alice):
    cid = pushed_customer(alice)
    wo = work_order(cid)
    applied(alice, wo)
    confirm = staff.get(f"{CUSTOMERS}{cid}/delete/")
    assert confirm.status_code == 200
    assert confirm.context["protected"] == [
        f'Work order: <a href="/admin/fieldwork/workorder/{wo["id"]}/change/">Fix boiler</a>'
    ]
    staff.post(f"{CUSTOMERS}{cid}/delete/", {"post": "yes"})
    assert Customer.objects.get(pk=cid).deleted_at is None
    assert WorkOrder.objects.get(pk=wo["id"]).deleted_at is None


def test_delete_of_an_object_a_device_just_changed_is_a_conflict(staff, alice):
    cid = pushed_customer(alice)

    def device_changes_it() -> None:
        outcome = mutations_apply(
            user=alice.user,
            mutations=[update(CUSTOMER, cid, 1, phone="2")],
            device_id=alice.device_id,
        )
        assert outcome.results[0].status == "applied"

    # Between the confirmation's read (version 1) and the write.
    with before_first_query('FROM "sync_mutationrecord"', device_changes_it):
        response = staff.post(f"{CUSTOMERS}{cid}/delete/", {"post": "yes"})
    assert response.status_code == 302
    c = Customer.objects.get(pk=cid)
    assert (c.deleted_at, c.version, c.phone) == (None, 2, "2")
    conflict = Conflict.objects.get(object_id=cid)
    assert (conflict.kind, conflict.client_op) == ("delete_update", "delete")
    [(level, text)] = messages_of(staff.get(response["Location"]))
    assert level == "warning" and "nothing was written" in text
    assert f"/admin/sync/conflict/{conflict.pk}/change/" in text


def test_deleting_a_deleted_object_changes_nothing(staff, alice):
    cid = pushed_customer(alice)
    applied(alice, delete(CUSTOMER, cid, 1))
    response = staff.post(f"{CUSTOMERS}{cid}/delete/", {"post": "yes"}, follow=True)
    assert Customer.objects.get(pk=cid).version == 2
    assert len(history_of(Customer, cid)) == 2
    assert len(feed_of(cid)) == 2
    assert messages_of(response) == [("info", "The customer “Acme” was already deleted.")]


def test_bulk_delete_soft_deletes_each_object_once(staff, alice):
    ids = [pushed_customer(alice, f"C{i}") for i in range(3)]
    applied(alice, delete(CUSTOMER, ids[2], 1))
    action = {"action": "delete_selected", "_selected_action": ids}
    confirm = staff.post(f"{CUSTOMERS}?state=all", action)
    assert confirm.status_code == 200
    # Only what will be deleted is listed: nothing happens to the deleted one.
    assert len(confirm.context["deletable_objects"][0]) == 2
    assert not confirm.context["protected"]
    response = staff.post(f"{CUSTOMERS}?state=all", {**action, "post": "yes"}, follow=True)
    for cid in ids[:2]:
        assert Customer.objects.get(pk=cid).version == 2
        assert history_of(Customer, cid)[1:] == [(2, "-", "staff", "admin delete by staff")]
        assert feed_of(cid)[1:] == [(channel(alice), 2, DELETE)]
    assert Customer.objects.get(pk=ids[2]).version == 2  # already deleted: untouched
    assert len(history_of(Customer, ids[2])) == 2
    assert messages_of(response) == [
        ("success", "Deleted 2 customers; devices will receive the deletions.")
    ]


def test_a_deleted_object_is_shown_read_only(staff, alice):
    cid = pushed_customer(alice)
    applied(alice, delete(CUSTOMER, cid, 1))
    deleted_at = Customer.objects.get(pk=cid).deleted_at
    page = staff.get(change_url(cid))
    assert page.status_code == 200
    html = page.content.decode()
    assert page.context["title"] == "View customer"
    assert 'name="name"' not in html and 'name="base_version"' not in html
    assert f"{CUSTOMERS}{cid}/delete/" not in html
    readonly = {f.field["name"]: f for fs in page.context["adminform"] for line in fs for f in line}
    assert readonly["deleted_at"].contents() != "-" and deleted_at is not None
    assert messages_of(page)[0][0] == "warning"
    # A form opened before a device deleted it: told, nothing written.
    response = staff.post(
        change_url(cid), {"name": "Back", "owner": alice.user.pk, "base_version": 1}
    )
    assert response.status_code == 302
    assert Customer.objects.get(pk=cid).version == 2
    assert "nothing was written" in messages_of(staff.get(change_url(cid)))[0][1]


# --- history ---------------------------------------------------------------------------


def test_history_lists_version_device_and_changes(staff, alice):
    cid = pushed_customer(alice, phone="1")
    Device.objects.filter(pk=alice.device_id).update(name="Pixel 7")
    applied(alice, update(CUSTOMER, cid, 1, phone="2"))
    page = staff.get(f"{CUSTOMERS}{cid}/history/")
    assert page.status_code == 200
    html = page.content.decode()
    table = html[html.index('<table id="change-history"') :]
    headers = re.findall(r'<th scope="col">([^<]*)</th>', table[: table.index("</thead>")])
    assert headers == [
        "Object",
        "version",
        "last_device",
        "Date/time",
        "Comment",
        "Changed by",
        "Change reason",
        "Changes",
    ]
    assert [(r.version, r.sync_device) for r in page.context["page_obj"]] == [
        (2, "Pixel 7"),
        (1, "Pixel 7"),
    ]
    assert html.count(f'<a href="/admin/devices/device/{alice.device_id}/change/">Pixel 7</a>') == 2
    assert "<strong>Phone:</strong>" in html


def test_revert_writes_the_old_values_as_a_new_version(staff, alice):
    cid = pushed_customer(alice, phone="1")
    applied(alice, update(CUSTOMER, cid, 1, name="Acme Two", phone="2"))
    _, cursor = alice.pull_all()
    first = Customer.history.get(id=cid, version=1)
    url = f"{CUSTOMERS}{cid}/history/{first.history_id}/"
    page = staff.get(url)
    assert page.status_code == 200
    assert 'value="Revert"' in page.content.decode()
    data = browser_form(page)
    assert (data["name"], data["base_version"]) == ("Acme", "2")  # old values, current version
    response = staff.post(url, data, follow=True)
    c = Customer.objects.get(pk=cid)
    assert (c.name, c.phone, c.version) == ("Acme", "1", 3)
    assert history_of(Customer, cid)[2:] == [
        (3, "~", "staff", "admin revert to version 1 by staff")
    ]
    assert feed_of(cid)[2:] == [(channel(alice), 3, UPSERT)]
    changes, _ = alice.pull_all(cursor)
    assert pulled(changes, cid)["data"]["name"] == "Acme"
    assert messages_of(response) == [("success", "The customer “Acme” was saved as version 3.")]


def test_revert_of_a_deleted_object_restores_it(staff, alice):
    cid = pushed_customer(alice, phone="1")
    applied(alice, delete(CUSTOMER, cid, 1))
    _, cursor = alice.pull_all()
    history = staff.get(f"{CUSTOMERS}{cid}/history/")
    assert "Choose a date from the list below to revert" in history.content.decode()
    first = Customer.history.get(id=cid, version=1)
    url = f"{CUSTOMERS}{cid}/history/{first.history_id}/"
    data = browser_form(staff.get(url))
    assert data["base_version"] == "2"
    response = staff.post(url, data, follow=True)
    c = Customer.objects.get(pk=cid)
    assert (c.name, c.phone, c.version, c.deleted_at) == ("Acme", "1", 3, None)
    assert history_of(Customer, cid)[2:] == [
        (3, "~", "staff", "admin restore of version 1 by staff")
    ]
    assert feed_of(cid)[2:] == [(channel(alice), 3, UPSERT)]
    changes, _ = alice.pull_all(cursor)
    assert pulled(changes, cid)["op"] == "upsert"
    assert messages_of(response) == [("success", "The customer “Acme” was restored as version 3.")]


def test_revert_keeps_values_the_form_cannot_show(staff, alice):
    cid = pushed_customer(alice)
    wo = work_order(cid, due_at="2026-03-01T10:00:00.123456Z")
    applied(alice, wo)
    moved = update(WORK_ORDER, wo["id"], 1, title="Moved", due_at="2026-04-01T09:00:00Z")
    applied(alice, moved)
    first = WorkOrder.history.get(id=wo["id"], version=1)
    url = f"/admin/fieldwork/workorder/{wo['id']}/history/{first.history_id}/"
    data = browser_form(staff.get(url))
    assert data["due_at_1"] == "10:00:00"
    assert staff.post(url, data).status_code == 302
    saved = WorkOrder.objects.get(pk=wo["id"])
    assert (saved.version, saved.title) == (3, "Fix boiler")
    assert saved.due_at == dt.datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)


def test_a_deletion_is_not_a_version_to_revert_to(staff, alice):
    cid = pushed_customer(alice)
    applied(alice, delete(CUSTOMER, cid, 1))
    deletion = Customer.history.get(id=cid, version=2)
    url = f"{CUSTOMERS}{cid}/history/{deletion.history_id}/"
    page = staff.get(url)
    assert page.status_code == 200 and 'value="Revert"' not in page.content.decode()
    response = staff.post(url, {"name": "Acme", "owner": alice.user.pk, "base_version": 2})
    assert response.status_code == 403
    assert Customer.objects.get(pk=cid).version == 2


def test_staff_who_may_only_view_cannot_revert(alice):
    viewer = get_user_model().objects.create_user("viewer", password="pw-123456789", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_customer"))
    client = Client(HTTP_X_FORWARDED_PROTO="https")
    client.force_login(viewer)
    cid = pushed_customer(alice)
    applied(alice, update(CUSTOMER, cid, 1, name="Two"))
    first = Customer.history.get(id=cid, version=1)
    url = f"{CUSTOMERS}{cid}/history/{first.history_id}/"
    # simple-history's revert view saves without asking; the admin refuses.
    response = client.post(url, {"name": "Acme", "owner": alice.user.pk, "base_version": 2})
    assert response.status_code == 403
    assert Customer.objects.get(pk=cid).version == 2


# --- changelist ------------------------------------------------------------------------


def test_changelist_shows_live_objects_unless_asked(staff, alice):
    live = pushed_customer(alice, "Live one")
    gone = pushed_customer(alice, "Gone one")
    applied(alice, delete(CUSTOMER, gone, 1))

    def listed(query: str = "") -> set[str]:
        page = staff.get(f"{CUSTOMERS}{query}")
        assert page.status_code == 200
        return {str(obj.pk) for obj in page.context["cl"].result_list}

    assert listed() == {live}
    assert listed("?state=live") == {live}
    assert listed("?state=deleted") == {gone}
    assert listed("?state=all") == {live, gone}
    page = staff.get(CUSTOMERS)
    [spec] = [s for s in page.context["cl"].filter_specs if s.parameter_name == "state"]
    choices = list(spec.choices(page.context["cl"]))
    assert [(c["display"], c["selected"], c["query_string"]) for c in choices] == [
        ("Live", True, "?"),
        ("Deleted", False, "?state=deleted"),
        ("All", False, "?state=all"),
    ]


def test_changelist_shows_version_device_deletion_and_open_conflicts(staff, alice):
    Device.objects.filter(pk=alice.device_id).update(name="Pixel 7")
    calm = pushed_customer(alice, "Calm")
    disputed = pushed_customer(alice, "Disputed", phone="1")
    applied(alice, update(CUSTOMER, disputed, 1, phone="2"))
    result = alice.push_one(update(CUSTOMER, disputed, 1, phone="3"))
    assert result["status"] == "conflict"
    page = staff.get(f"{CUSTOMERS}?state=all")
    html = page.content.decode()
    rows = {str(r.pk): r for r in page.context["cl"].result_list}
    assert (rows[calm].version, rows[disputed].version) == (1, 2)
    assert html.count(">Pixel 7</a>") == 2
    queue = f"/admin/sync/conflict/?object_id={disputed}&amp;status__exact=open"
    assert html.count("open conflict</a>") == 1 and queue in html
    conflicts = staff.get(queue.replace("&amp;", "&"))
    assert [str(c.pk) for c in conflicts.context["cl"].result_list] == [result["conflict_id"]]


@pytest.mark.parametrize("rows", [5, 50])
def test_changelist_queries_do_not_grow_with_rows(
    staff, make_actor, django_assert_max_num_queries, rows
):
    devices = [make_actor(platform="ios"), make_actor()]
    for i in range(rows):
        actor = devices[i % 2]
        cid = pushed_customer(actor, f"C{i}", phone="1")
        if i % 5 == 0:  # some with an open conflict
            actor.push_one(update(CUSTOMER, cid, 1, phone="2"))
            assert actor.push_one(update(CUSTOMER, cid, 1, phone="3"))["status"] == "conflict"
        if i % 7 == 0:
            actor.push_one(delete(CUSTOMER, cid, Customer.objects.get(pk=cid).version))
    staff.get(CUSTOMERS)  # warm the session
    # Session, user, two counts, the page: a subquery per column, not a query per row.
    with django_assert_max_num_queries(5):
        page = staff.get(f"{CUSTOMERS}?state=all")
    assert page.status_code == 200
    assert len(page.context["cl"].result_list) == rows


def test_every_admin_write_grows_history_and_feed_like_a_push(staff, alice):
    """One create, edit, delete and restore from the admin: exactly one history row
    and one feed row each, as the same writes pushed by a device make."""
    pushed = pushed_customer(alice, "P")
    applied(alice, update(CUSTOMER, pushed, 1, name="P2"))
    applied(alice, delete(CUSTOMER, pushed, 2))
    by_push = (len(history_of(Customer, pushed)), len(feed_of(pushed)))

    staff.post(f"{CUSTOMERS}add/", {"name": "A", "owner": alice.user.pk})
    made = Customer.objects.get(name="A").pk
    data = browser_form(staff.get(change_url(made)))
    staff.post(change_url(made), {**data, "name": "A2"})
    staff.post(f"{CUSTOMERS}{made}/delete/", {"post": "yes"})
    assert (len(history_of(Customer, made)), len(feed_of(made))) == by_push == (3, 3)
    assert [h[1] for h in history_of(Customer, made)] == ["+", "~", "-"]
    assert [op for _, _, op in feed_of(made)] == [UPSERT, UPSERT, DELETE]
