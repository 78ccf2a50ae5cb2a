"""OWASP API5:2023 Broken Function Level Authorization.

Functions meant for others: the admin (staff only), resolving in the admin
(`sync.resolve_conflict` only), the data API's actions (each needs its model
permission, per item in a bulk), and staff powers through the app's API
(there are none).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from fieldwork.models import Customer
from sync.accounts.services import token_issue
from sync.models import Conflict
from tests.conftest import make_client
from tests.data_helpers import data_url, service_client
from tests.factories import customer
from tests.helpers import assert_error
from tests.security.conftest import CUSTOMER, raise_conflict, session_client

pytestmark = pytest.mark.django_db

ADMIN_PAGES = [
    "/admin/",
    "/admin/sync/conflict/",
    "/admin/fieldwork/customer/",
    "/admin/sync/serviceaccount/",
    "/admin/sync/token/",
    "/admin/devices/device/",
]


def resolve_page(conflict_id: Any) -> str:
    return f"/admin/sync/conflict/{conflict_id}/change/"


def still_open(raised: dict, c: dict) -> None:
    conflict = Conflict.objects.get(pk=raised["conflict_id"])
    assert conflict.status == "open" and conflict.resolved_by is None
    row = Customer.objects.get(pk=c["id"])
    assert (row.version, row.phone) == (2, "2")


# --- the admin ---------------------------------------------------------------------------


def test_the_admin_sends_non_staff_to_its_login(alice):
    c, raised = raise_conflict(alice)
    erp, _ = service_client("erp")
    for user in (alice.user, erp.user):
        browser = session_client(user)
        for page in [*ADMIN_PAGES, resolve_page(raised["conflict_id"])]:
            response = browser.get(page)
            assert response.status_code == 302, (page, response.status_code)
            assert response["Location"].startswith("/admin/login/?next=")
        posted = browser.post(
            resolve_page(raised["conflict_id"]), {"action": "client", "expected_version": 2}
        )
        assert posted.status_code == 302 and "/admin/login/" in posted["Location"]
    still_open(raised, c)


def test_an_api_token_does_not_open_the_admin(alice):
    _, secret = token_issue(user=alice.user)
    alice.user.is_staff = True  # even a staff member's token: the admin wants a session
    alice.user.save(update_fields=["is_staff"])
    client = Client(HTTP_X_FORWARDED_PROTO="https", HTTP_AUTHORIZATION=f"Token {secret}")
    for page in ADMIN_PAGES:
        response = client.get(page)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_who_may_only_view_conflicts_cannot_resolve_them(alice, staff_user_with):
    c, raised = raise_conflict(alice)
    viewer = session_client(staff_user_with("view_conflict"))
    page = viewer.get(resolve_page(raised["conflict_id"]))
    assert page.status_code == 200
    assert 'name="action" value="client"' not in page.content.decode()
    for action in ("client", "server", "dismiss"):
        posted = viewer.post(
            resolve_page(raised["conflict_id"]), {"action": action, "expected_version": 2}
        )
        assert posted.status_code == 403
    # The bulk actions need the permission too: not offered, and not run if posted.
    queue = viewer.get("/admin/sync/conflict/").content.decode()
    assert "resolve_take_client" not in queue and "dismiss_selected" not in queue
    for action in ("resolve_take_client", "dismiss_selected"):
        viewer.post(
            "/admin/sync/conflict/",
            {
                "action": action,
                "_selected_action": [raised["conflict_id"]],
                "post": "yes",
                f"version-{raised['conflict_id']}": "2",
            },
        )
    still_open(raised, c)


def test_staff_without_the_view_permission_cannot_open_a_conflict(alice, staff_user_with):
    c, raised = raise_conflict(alice)
    nobody = session_client(staff_user_with("view_customer", username="clerk2"))
    assert nobody.get(resolve_page(raised["conflict_id"])).status_code == 403
    posted = nobody.post(
        resolve_page(raised["conflict_id"]), {"action": "client", "expected_version": 2}
    )
    assert posted.status_code == 403
    assert nobody.get("/admin/sync/conflict/").status_code == 403
    still_open(raised, c)


def test_staff_with_the_resolve_permission_can(alice, staff_user_with):
    """The control: the same request succeeds with the permission."""
    c, raised = raise_conflict(alice)
    resolver = session_client(staff_user_with("view_conflict", "resolve_conflict"))
    posted = resolver.post(
        resolve_page(raised["conflict_id"]), {"action": "client", "expected_version": 2}
    )
    assert posted.status_code == 302
    assert Conflict.objects.get(pk=raised["conflict_id"]).status == "resolved"
    assert Customer.objects.get(pk=c["id"]).phone == "3"


def test_the_apps_resolve_call_gives_staff_no_powers(alice, bob):
    """A staff member using the app's API settles their own conflicts only."""
    c, raised = raise_conflict(alice)
    bob.user.is_staff = True
    bob.user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_conflict", "resolve_conflict"])
    )
    bob.user.save(update_fields=["is_staff"])
    response = bob.client.post(
        f"/api/v1/sync/conflicts/{raised['conflict_id']}/resolve/",
        {"choice": "client", "expected_version": 2},
        format="json",
    )
    assert_error(response, 404, "not_found")
    still_open(raised, c)


# --- the data API, per action -------------------------------------------------------------


def calls(c: dict) -> dict[str, tuple[str, str, Any]]:
    return {
        "list": ("get", data_url(CUSTOMER), None),
        "since": ("get", data_url(CUSTOMER) + "?since=", None),
        "retrieve": ("get", data_url(CUSTOMER, c["id"]), None),
        "create": ("post", data_url(CUSTOMER), {"name": "New"}),
        "replace": ("put", data_url(CUSTOMER, c["id"]), {"name": "Replaced"}),
        "change": ("patch", data_url(CUSTOMER, c["id"]), {"phone": "555"}),
        "delete": ("delete", data_url(CUSTOMER, c["id"]), None),
    }


NEEDS = {
    "list": "view",
    "since": "view",
    "retrieve": "view",
    "create": "add",
    "replace": "change",
    "change": "change",
    "delete": "delete",
}


def call(client: Any, method: str, url: str, body: Any) -> Any:
    return (
        getattr(client, method)(url, body, format="json") if body else getattr(client, method)(url)
    )


@pytest.mark.parametrize("perm", ["view", "add", "change", "delete"])
def test_a_service_account_may_do_exactly_what_its_permissions_say(alice, perm):
    c = customer("Acme", phone="1")
    alice.push(c)
    _, erp = service_client(f"erp-{perm}", perms=(perm,))
    for name, (method, url, body) in calls(c).items():
        if NEEDS[name] == perm:
            continue  # allowed; the control below
        response = call(erp, method, url, body)
        assert_error(response, 403, "permission_denied")
    row = Customer.objects.get(pk=c["id"])
    assert (row.version, row.phone, row.name, row.deleted_at) == (1, "1", "Acme", None)
    assert Customer.objects.count() == 1
    allowed = [name for name, needed in NEEDS.items() if needed == perm]
    for name in allowed:
        method, url, body = calls(c)[name]
        assert call(erp, method, url, body).status_code < 300, name


def test_model_permissions_do_not_carry_over_to_other_models(alice):
    _, erp = service_client("erp-customers", models=("customer",))
    assert erp.get(data_url(CUSTOMER)).status_code == 200
    for label in ("fieldwork.workorder", "fieldwork.note"):
        assert_error(erp.get(data_url(label)), 403, "permission_denied")
        created = erp.post(data_url(label), {"title": "x"}, format="json")
        assert_error(created, 403, "permission_denied")


def test_bulk_items_need_the_permission_of_their_operation(alice):
    c, other = customer("Acme", phone="1"), customer("Other")
    alice.push(c, other)
    _, erp = service_client("erp-change", perms=("change",))
    results = erp.post(
        data_url(CUSTOMER, suffix="bulk/"),
        {
            "mutations": [
                {"op": "update", "id": c["id"], "data": {"phone": "2"}},
                {"op": "create", "data": {"name": "Sneaked"}},
                {"op": "delete", "id": other["id"]},
            ]
        },
        format="json",
    )
    assert results.status_code == 200, results.content
    statuses = [(r["status"], r["errors"]) for r in results.json()["results"]]
    assert statuses == [
        ("applied", None),
        ("rejected", {"op": ["You may not create fieldwork.customer objects."]}),
        ("rejected", {"op": ["You may not delete fieldwork.customer objects."]}),
    ]
    assert Customer.objects.get(pk=c["id"]).phone == "2"
    assert Customer.objects.get(pk=other["id"]).deleted_at is None
    assert Customer.objects.count() == 2


def test_bulk_needs_some_write_permission(alice):
    c = customer("Acme")
    alice.push(c)
    _, reader = service_client("reader", perms=("view",))
    body = {"mutations": [{"op": "update", "id": c["id"], "data": {"phone": "2"}}]}
    assert_error(
        reader.post(data_url(CUSTOMER, suffix="bulk/"), body, format="json"),
        403,
        "permission_denied",
    )
    assert Customer.objects.get(pk=c["id"]).version == 1


def test_a_device_user_without_model_permissions_cannot_use_the_data_api(alice):
    c = customer("Acme", phone="1")
    alice.push(c)
    client = make_client(alice.user)
    for method, url, body in calls(c).values():
        assert_error(call(client, method, url, body), 403, "permission_denied")
    bulk = {"mutations": [{"op": "update", "id": c["id"], "data": {"phone": "2"}}]}
    assert_error(
        client.post(data_url(CUSTOMER, suffix="bulk/"), bulk, format="json"),
        403,
        "permission_denied",
    )
    row = Customer.objects.get(pk=c["id"])
    assert (row.version, row.phone) == (1, "1")
