"""The staff's conflict queue, resolve page and bulk actions, through the admin's HTTP interface."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from fieldwork.models import Customer
from sync.models import Conflict
from tests.factories import customer, delete, update

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"
QUEUE = "/admin/sync/conflict/"


def page(conflict_id) -> str:
    return f"/admin/sync/conflict/{conflict_id}/change/"


def staff_client(user) -> Client:
    client = Client(HTTP_X_FORWARDED_PROTO="https")
    client.force_login(user)
    return client


@pytest.fixture
def admin_user():
    return get_user_model().objects.create_superuser("boss", password="boss-pass-1234")


@pytest.fixture
def staff(admin_user) -> Client:
    return staff_client(admin_user)


@pytest.fixture
def viewer() -> Client:
    """Staff who may look at conflicts but not resolve them."""
    user = get_user_model().objects.create_user("looker", password="look-pass-1234", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_conflict"))
    return staff_client(user)


def raise_conflict(actor, name="Acme") -> tuple[dict, dict]:
    c = customer(name, phone="1", email="a@acme.test")
    actor.push_one(c)
    actor.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    # Only the clashing field: the client's other edits would be written at
    # once (tests/sync/test_push.py), and the conflict is about the phone.
    result = actor.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    assert result["status"] == "conflict"
    return c, result


def row_of(html: str, field: str) -> str:
    match = re.search(rf'<tr id="row-{field}".*?</tr>', html, re.S)
    assert match, f"no row for {field}"
    return match.group(0)


# --- the queue --------------------------------------------------------------------


def test_queue_lists_open_conflicts_first_oldest_first(staff, alice, admin_user):
    _, first = raise_conflict(alice, "First")
    _, second = raise_conflict(alice, "Second")
    _, settled = raise_conflict(alice, "Settled")
    Conflict.objects.filter(pk=first["conflict_id"]).update(
        created_at=timezone.now() - dt.timedelta(hours=3)
    )
    staff.post(
        page(settled["conflict_id"]), {"action": "server", "expected_version": 2}
    )  # resolve the newest... then make it the oldest of all
    Conflict.objects.filter(pk=settled["conflict_id"]).update(
        created_at=timezone.now() - dt.timedelta(days=3)
    )
    html = staff.get(QUEUE).content.decode()
    order = [html.index(r["conflict_id"]) for r in (first, second, settled)]
    assert order == sorted(order)


def test_queue_columns(staff, alice):
    c, result = raise_conflict(alice)
    html = staff.get(QUEUE).content.decode()
    assert f'href="/admin/fieldwork/customer/{c["id"]}/change/"' in html  # object, linked
    assert '<td class="field-fields_at_stake">phone</td>' in html
    assert alice.user.username in html
    assert "android" in html  # the device (no name given: its platform)
    assert 'class="conflict-status conflict-status-open"' in html
    assert page(result["conflict_id"]) in html


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("status__exact=open", {"open"}),
        ("status__exact=resolved", {"resolved"}),
        ("model=fieldwork.customer", {"open", "resolved"}),
        ("model=fieldwork.note", set()),
        ("age=hour", {"open", "resolved"}),
        ("age=older", set()),
    ],
)
def test_queue_filters(staff, alice, query, shown):
    _, open_one = raise_conflict(alice, "Open")
    _, done = raise_conflict(alice, "Done")
    staff.post(page(done["conflict_id"]), {"action": "server", "expected_version": 2})
    html = staff.get(f"{QUEUE}?{query}").content.decode()
    found = set()
    if open_one["conflict_id"] in html:
        found.add("open")
    if done["conflict_id"] in html:
        found.add("resolved")
    assert found == shown


def test_queue_filters_by_user_and_searches(staff, alice, bob):
    ca, a = raise_conflict(alice, "A")
    _, b = raise_conflict(bob, "B")
    by_user = staff.get(f"{QUEUE}?user__id__exact={bob.user.pk}").content.decode()
    assert b["conflict_id"] in by_user and a["conflict_id"] not in by_user
    by_object = staff.get(QUEUE, {"q": ca["id"]}).content.decode()
    assert a["conflict_id"] in by_object and b["conflict_id"] not in by_object
    by_name = staff.get(QUEUE, {"q": bob.user.username}).content.decode()
    assert b["conflict_id"] in by_name and a["conflict_id"] not in by_name
    nonsense = staff.get(QUEUE, {"q": "not-a-uuid"})
    assert nonsense.status_code == 200


def test_admin_index_counts_open_conflicts(staff, alice):
    raise_conflict(alice, "One")
    raise_conflict(alice, "Two")
    html = staff.get("/admin/").content.decode()
    assert re.search(r"<strong>2</strong> open conflicts", html)


@pytest.mark.parametrize("n", [3, 30])
def test_queue_queries_do_not_grow_with_rows(staff, make_actor, django_assert_max_num_queries, n):
    actors = [make_actor() for _ in range(3)]
    for i in range(n):
        raise_conflict(actors[i % 3], f"c{i}")
    with django_assert_max_num_queries(12):
        response = staff.get(QUEUE)
    assert response.status_code == 200
    assert response.content.decode().count('class="conflict-status conflict-status-open"') == n


# --- the resolve page ---------------------------------------------------------------


def test_resolve_page_shows_base_server_and_client_side_by_side(staff, alice):
    c = customer("Acme", phone="1", email="a@acme.test")
    alice.push_one(c)
    alice.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    # The address nobody else changed is written at once (version 3); the
    # phone is at stake.
    result = alice.push_one(update(CUSTOMER, c["id"], 1, phone="3", address="Client St"))
    html = staff.get(page(result["conflict_id"])).content.decode()
    phone = row_of(html, "phone")
    assert "at stake" in phone
    cells = re.findall(r'<td class="value (\w+)[^"]*">(.*?)</td>', phone, re.S)
    assert cells == [("base", "1"), ("server", "2"), ("client", "3")]
    assert 'class="value server changed"' in phone and 'class="value client changed"' in phone
    address = row_of(html, "address")
    assert "Client St" in address and "at stake" not in address
    assert f"/admin/fieldwork/customer/{c['id']}/history/" in html
    assert 'name="expected_version" value="3"' in html
    assert "moved-on-notice" not in html


def test_resolve_per_field_with_a_typed_value(staff, alice, admin_user):
    c, result = raise_conflict(alice)
    response = staff.post(
        page(result["conflict_id"]),
        {
            "action": "fields",
            "expected_version": 2,
            "pick-phone": "value",
            "value-phone": "555-0199",
            "pick-address": "server",
            "note": "checked with the customer",
        },
    )
    assert response.status_code == 302 and response["Location"] == QUEUE
    obj = Customer.objects.get(pk=c["id"])
    assert (obj.phone, obj.address, obj.version) == ("555-0199", "", 3)
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    assert conflict.status == "resolved" and conflict.resolved_by == admin_user
    assert conflict.note == "checked with the customer"
    history = Customer.history.filter(id=c["id"]).order_by("history_id").last()
    assert history.history_user == admin_user and history.version == 3
    changes, _ = alice.pull_all()
    assert next(ch for ch in changes if ch["id"] == c["id"])["data"]["phone"] == "555-0199"


def test_keep_server_and_take_client_for_all(staff, alice):
    c1, r1 = raise_conflict(alice, "One")
    c2, r2 = raise_conflict(alice, "Two")
    staff.post(page(r1["conflict_id"]), {"action": "server", "expected_version": 2})
    staff.post(page(r2["conflict_id"]), {"action": "client", "expected_version": 2})
    one, two = Customer.objects.get(pk=c1["id"]), Customer.objects.get(pk=c2["id"])
    assert (one.phone, one.version) == ("2", 3)
    assert (two.phone, two.version) == ("3", 3)


def test_a_field_at_stake_left_undecided_is_shown_as_an_error(staff, alice):
    c, result = raise_conflict(alice)
    response = staff.post(
        page(result["conflict_id"]),
        {"action": "fields", "expected_version": 2, "pick-address": "client"},
    )
    assert response.status_code == 400
    assert "Choose the server" in row_of(response.content.decode(), "phone")
    assert Customer.objects.get(pk=c["id"]).version == 2


def test_a_value_the_service_refuses_is_shown_on_its_row(staff, alice):
    c, result = raise_conflict(alice)
    response = staff.post(
        page(result["conflict_id"]),
        {"action": "fields", "expected_version": 2, "pick-phone": "value", "value-phone": "9" * 41},
    )
    assert response.status_code == 400
    assert "at most 40" in row_of(response.content.decode(), "phone")
    assert Customer.objects.get(pk=c["id"]).version == 2


def test_stale_resolution_shows_the_current_values_and_writes_nothing(staff, alice):
    c, result = raise_conflict(alice)
    staff.get(page(result["conflict_id"]))  # staff opens the page at version 2 ...
    alice.push_one(update(CUSTOMER, c["id"], 2, name="Moved on"))  # ... the object moves on
    response = staff.post(page(result["conflict_id"]), {"action": "client", "expected_version": 2})
    assert response.status_code == 412
    html = response.content.decode()
    assert "changed while you were looking" in html
    assert 'name="expected_version" value="3"' in html and "moved-on-notice" in html
    assert 'class="value server changed">Moved on<' in row_of(html, "name")
    obj = Customer.objects.get(pk=c["id"])
    assert (obj.version, obj.phone) == (3, "2")
    assert Conflict.objects.get(pk=result["conflict_id"]).status == "open"


def test_second_staff_resolution_is_refused(staff, alice):
    c, result = raise_conflict(alice)
    staff.post(page(result["conflict_id"]), {"action": "client", "expected_version": 2})
    response = staff.post(
        page(result["conflict_id"]), {"action": "server", "expected_version": 2}, follow=True
    )
    html = response.content.decode()
    assert "already resolved by boss" in html
    assert 'id="resolve-form"' in html and 'id="resolve-server"' not in html
    assert Customer.objects.get(pk=c["id"]).version == 3


def test_deleted_object_offers_restore_or_keep_deleted(staff, alice):
    c = customer("Gone", phone="1")
    alice.push_one(c)
    alice.push_one(delete(CUSTOMER, c["id"], 1))
    result = alice.push_one(update(CUSTOMER, c["id"], 1, phone="9"))
    html = staff.get(page(result["conflict_id"])).content.decode()
    assert "deleted-notice" in html
    assert "Restore with the client&#x27;s values" in html and "Keep deleted" in html
    staff.post(page(result["conflict_id"]), {"action": "client", "expected_version": 2})
    obj = Customer.objects.get(pk=c["id"])
    assert obj.deleted_at is None and obj.phone == "9"


def test_stacked_conflicts_are_shown_together(staff, make_actor):
    from tests.factories import team_of

    one, two = make_actor(), make_actor()
    team = team_of(one.user, two.user)
    c = customer("Shared", phone="1", team=str(team.pk))
    one.push_one(c)
    one.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    first = one.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    second = two.push_one(update(CUSTOMER, c["id"], 1, phone="4"))
    html = staff.get(page(first["conflict_id"])).content.decode()
    assert "stacked-conflicts" in html and page(second["conflict_id"]) in html
    assert "+1 open here" in staff.get(QUEUE).content.decode()


def test_dismiss(staff, alice, admin_user):
    c, result = raise_conflict(alice)
    staff.post(page(result["conflict_id"]), {"action": "dismiss", "expected_version": 2})
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    assert conflict.status == "dismissed" and conflict.resolved_by == admin_user
    assert Customer.objects.get(pk=c["id"]).version == 2
    assert "Dismissed by" in staff.get(page(result["conflict_id"])).content.decode()


# --- permissions --------------------------------------------------------------------


def test_staff_without_the_permission_can_view_but_not_resolve(viewer, alice):
    c, result = raise_conflict(alice)
    html = viewer.get(page(result["conflict_id"])).content.decode()
    assert "no-permission-notice" in html and 'id="resolve-server"' not in html
    response = viewer.post(page(result["conflict_id"]), {"action": "client", "expected_version": 2})
    assert response.status_code == 403
    queue = viewer.get(QUEUE).content.decode()
    assert "resolve_keep_server" not in queue
    response = viewer.post(
        QUEUE,
        {
            "action": "resolve_take_client",
            "_selected_action": [result["conflict_id"]],
            "post": "yes",
        },
    )
    assert Conflict.objects.get(pk=result["conflict_id"]).status == "open"
    assert Customer.objects.get(pk=c["id"]).version == 2


def test_conflicts_are_never_deleted(staff, alice):
    _, result = raise_conflict(alice)
    assert staff.get(f"/admin/sync/conflict/{result['conflict_id']}/delete/").status_code == 403
    assert "delete_selected" not in staff.get(QUEUE).content.decode()
    assert Conflict.objects.filter(pk=result["conflict_id"]).exists()


def test_resolving_needs_a_csrf_token(admin_user, alice):
    c, result = raise_conflict(alice)
    client = Client(enforce_csrf_checks=True, HTTP_X_FORWARDED_PROTO="https")
    client.force_login(admin_user)
    response = client.post(page(result["conflict_id"]), {"action": "client", "expected_version": 2})
    assert response.status_code == 403
    assert Customer.objects.get(pk=c["id"]).version == 2


# --- bulk -------------------------------------------------------------------------------


def test_bulk_keep_server_confirms_then_resolves_each(staff, alice):
    pairs = [raise_conflict(alice, f"c{i}") for i in range(3)]
    ids = [r["conflict_id"] for _, r in pairs]
    confirm = staff.post(QUEUE, {"action": "resolve_keep_server", "_selected_action": ids})
    html = confirm.content.decode()
    assert confirm.status_code == 200 and "keep the server&#x27;s values" in html
    for conflict_id in ids:
        assert f'name="version-{conflict_id}" value="2"' in html
    assert html.count("Keeps the server&#x27;s values: phone = 2") == 3
    assert all(Conflict.objects.get(pk=i).status == "open" for i in ids)  # nothing yet
    done = staff.post(
        QUEUE,
        {
            "action": "resolve_keep_server",
            "_selected_action": ids,
            "post": "yes",
            **{f"version-{i}": 2 for i in ids},
        },
        follow=True,
    )
    assert "3 conflict(s) resolved" in done.content.decode()
    for c, r in pairs:
        assert Conflict.objects.get(pk=r["conflict_id"]).status == "resolved"
        assert Customer.objects.get(pk=c["id"]).version == 3


def test_bulk_one_failure_does_not_sink_the_others(staff, alice):
    (c1, r1), (c2, r2) = raise_conflict(alice, "One"), raise_conflict(alice, "Two")
    ids = [r1["conflict_id"], r2["conflict_id"]]
    staff.post(QUEUE, {"action": "resolve_take_client", "_selected_action": ids})
    alice.push_one(update(CUSTOMER, c1["id"], 2, name="Moved on"))  # after the confirmation page
    done = staff.post(
        QUEUE,
        {
            "action": "resolve_take_client",
            "_selected_action": ids,
            "post": "yes",
            **{f"version-{i}": 2 for i in ids},
        },
        follow=True,
    )
    html = done.content.decode()
    assert "1 conflict(s) resolved" in html and "1 conflict(s) not resolved" in html
    assert Conflict.objects.get(pk=r1["conflict_id"]).status == "open"
    assert Conflict.objects.get(pk=r2["conflict_id"]).status == "resolved"
    assert Customer.objects.get(pk=c2["id"]).phone == "3"


def test_bulk_lists_already_settled_conflicts_as_skipped(staff, alice):
    _, r1 = raise_conflict(alice, "One")
    _, r2 = raise_conflict(alice, "Two")
    staff.post(page(r1["conflict_id"]), {"action": "server", "expected_version": 2})
    html = staff.post(
        QUEUE,
        {"action": "dismiss_selected", "_selected_action": [r1["conflict_id"], r2["conflict_id"]]},
    ).content.decode()
    assert "bulk-skipped" in html and "(resolved)" in html
    assert f'id="bulk-{r2["conflict_id"]}"' in html
