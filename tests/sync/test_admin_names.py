"""Staff read names, not ids: the conflict pages show an object, the objects it
refers to and the device by what they are called, the id kept as a link's
target or a title, in a bounded number of queries."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.conftest import Actor
from tests.factories import UserFactory, customer, team_of, update, work_order

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"
WORK_ORDER = "fieldwork.workorder"
QUEUE = "/admin/sync/conflict/"
UUID_TEXT = re.compile(r">\s*[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\s*<")


def page(conflict_id: str) -> str:
    return f"/admin/sync/conflict/{conflict_id}/change/"


@pytest.fixture
def staff() -> Client:
    user = get_user_model().objects.create_superuser("boss", password="boss-pass-1234")
    client = Client()
    client.force_login(user)
    return client


def get(client: Client, url: str) -> str:
    response = client.get(url, secure=True)
    assert response.status_code == 200
    return response.content.decode()


def name_device(actor: Actor, name: str) -> None:
    """The app re-registers its device with a name (an upsert)."""
    response = actor.client.post(
        "/api/v1/devices/",
        {"id": str(actor.device_id), "platform": "android", "name": name},
        format="json",
    )
    assert response.status_code in (200, 201), response.content


def row_of(html: str, field: str) -> str:
    match = re.search(rf'<tr id="row-{field}".*?</tr>', html, re.S)
    assert match, f"no row for {field}"
    return match.group(0)


def summary(html: str) -> str:
    match = re.search(r'<dl class="conflict-summary">.*?</dl>', html, re.S)
    assert match
    return match.group(0)


def raise_work_order_conflict(make_actor: Any) -> dict[str, Any]:
    """A dispatcher moves a job to another of the team's customers; the
    technician, offline, moves it to a third one."""
    dispatcher = make_actor(UserFactory(username="dana.dispatch"))
    technician = make_actor(UserFactory(username="sam.tech"))
    name_device(technician, "Sam's Pixel")
    team = team_of(dispatcher.user, technician.user)
    team.name = "Crew North"
    team.save()
    elm = customer("Elm Street Dental", team=str(team.pk))
    oak = customer("Oak Lane Clinic", team=str(team.pk))
    pine = customer("Pine Court Surgery", team=str(team.pk))
    wo = work_order(elm["id"], "Boiler service", team=str(team.pk))
    dispatcher.push(elm, oak, pine, wo)
    moved = dispatcher.push_one(update(WORK_ORDER, wo["id"], 1, customer=oak["id"]))
    assert moved["status"] == "applied"
    result = technician.push_one(update(WORK_ORDER, wo["id"], 1, customer=pine["id"]))
    assert result["status"] == "conflict"
    return {
        "conflict_id": result["conflict_id"],
        "work_order": wo["id"],
        "elm": elm["id"],
        "oak": oak["id"],
        "pine": pine["id"],
        "team": str(team.pk),
        "technician": technician,
    }


def raise_customer_conflict(actor: Actor, name: str) -> str:
    c = customer(name, phone="1")
    actor.push_one(c)
    actor.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    result = actor.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    assert result["status"] == "conflict"
    return result["conflict_id"]


# --- the resolve page -----------------------------------------------------------


def test_resolve_page_shows_references_by_name_with_their_ids_as_links(staff, make_actor):
    raised = raise_work_order_conflict(make_actor)
    html = get(staff, page(raised["conflict_id"]))
    customer_row = row_of(html, "customer")
    for name, object_id in (
        ("Elm Street Dental", raised["elm"]),  # base
        ("Oak Lane Clinic", raised["oak"]),  # server
        ("Pine Court Surgery", raised["pine"]),  # client
    ):
        assert re.search(
            rf'<a href="/admin/fieldwork/customer/{object_id}/change/" title="{object_id}">'
            rf"{name}</a>",
            customer_row,
        ), customer_row
    team_row = row_of(html, "team")
    assert f'title="{raised["team"]}">Crew North</a>' in team_row
    for row in (customer_row, team_row):
        assert not UUID_TEXT.search(row), row  # no id shown as text
    # The box to type a value in still takes (and holds) an id.
    assert f'name="value-customer" value="{raised["pine"]}"' in customer_row


def test_resolve_page_names_the_object_its_owner_and_the_device(staff, make_actor):
    raised = raise_work_order_conflict(make_actor)
    device_id = raised["technician"].device_id
    top = summary(get(staff, page(raised["conflict_id"])))
    assert re.search(
        rf'<a href="/admin/fieldwork/workorder/{raised["work_order"]}/change/" '
        rf'title="{raised["work_order"]}">Boiler service</a>',
        top,
    ), top
    assert "dana.dispatch" in top  # its owner
    assert f'title="{device_id}">Sam&#x27;s Pixel</a>' in top
    assert not UUID_TEXT.search(top), top


def test_a_device_without_a_name_is_its_platform_and_a_short_id(staff, alice):
    conflict_id = raise_customer_conflict(alice, "Acme")
    short = str(alice.device_id)[:8]
    top = summary(get(staff, page(conflict_id)))
    assert f'title="{alice.device_id}">android {short}…</a>' in top


# --- the queue ------------------------------------------------------------------


def test_queue_shows_each_object_by_name_and_each_device_by_name(staff, make_actor, alice):
    raised = raise_work_order_conflict(make_actor)
    acme = raise_customer_conflict(alice, "Acme Heating")
    html = get(staff, QUEUE)
    assert re.search(
        rf'<a href="/admin/fieldwork/workorder/{raised["work_order"]}/change/" '
        rf'title="{raised["work_order"]}">Boiler service</a>',
        html,
    )
    assert ">Acme Heating</a>" in html and acme in html
    assert f'title="{raised["technician"].device_id}">Sam&#x27;s Pixel</a>' in html
    assert f'title="{alice.device_id}">android {str(alice.device_id)[:8]}…</a>' in html


def test_a_page_of_conflicts_with_references_runs_a_constant_number_of_queries(staff, make_actor):
    def raise_some(n: int) -> None:
        for _ in range(n):
            raise_work_order_conflict_quietly(make_actor)

    raise_some(1)
    with CaptureQueriesContext(connection) as few:
        small = get(staff, QUEUE)
    raise_some(9)  # 20 conflicts: a customer's and a work order's each time
    with CaptureQueriesContext(connection) as many:
        large = get(staff, QUEUE)
    assert small.count('class="conflict-status conflict-status-open"') == 2
    assert large.count('class="conflict-status conflict-status-open"') == 20
    assert len(many) == len(few), "\n".join(q["sql"][:200] for q in many.captured_queries)


def raise_work_order_conflict_quietly(make_actor: Any) -> None:
    """A customer conflict and a work order conflict (that refers to the customer
    and a team), by two new users."""
    one, two = make_actor(), make_actor()
    team = team_of(one.user, two.user)
    c = customer("Shared", phone="1", team=str(team.pk))
    wo = work_order(c["id"], "Job", team=str(team.pk))
    one.push(c, wo)
    one.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    one.push_one(update(WORK_ORDER, wo["id"], 1, priority="high"))
    assert two.push_one(update(CUSTOMER, c["id"], 1, phone="3"))["status"] == "conflict"
    assert two.push_one(update(WORK_ORDER, wo["id"], 1, priority="low"))["status"] == "conflict"


def test_bulk_confirmation_names_objects_and_references(staff, make_actor):
    raised = raise_work_order_conflict(make_actor)
    response = staff.post(
        QUEUE,
        {"action": "resolve_take_client", "_selected_action": [raised["conflict_id"]]},
        secure=True,
    )
    html = response.content.decode()
    assert response.status_code == 200
    item = re.search(rf'<tr id="bulk-{raised["conflict_id"]}">.*?</tr>', html, re.S)
    assert item, html
    assert f'title="{raised["work_order"]}">Boiler service</a>' in item.group(0)
    assert "customer = Pine Court Surgery" in item.group(0)
