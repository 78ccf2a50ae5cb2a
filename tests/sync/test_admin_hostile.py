"""Every admin page of ours survives hostile input: filters, search, ordering
and object ids that are NUL bytes, 10,000 characters, SQL, wildcards, text
where a UUID belongs, or numbers out of any column's range.

A hostile value may be refused (400, 404), cleaned away (a 302 to the
changelist with `?e=1`, Django's answer to a lookup it cannot use) or simply
find nothing (200); it must never be a server error. PostgreSQL refuses a NUL
byte in any text it is sent, so these run on both databases.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib import admin
from django.contrib.admin.options import ModelAdmin
from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.test import Client, RequestFactory
from django.urls import URLPattern
from django.urls.resolvers import RoutePattern

from tests.factories import customer, update, work_order

pytestmark = pytest.mark.django_db

APPS = {"sync", "devices", "fieldwork"}
# Changelist parameters besides the filters': search, ordering, page.
LIST_PARAMS = ("q", "o", "p")

NUL = "\x00"
HOSTILE = [
    NUL,
    f"open{NUL}",
    "x" * 10_000,
    "' OR 1=1 --",
    "%",
    "not-a-uuid",
    "3f2a9c1e-0000-4000-8000-00000000000z",  # nearly a UUID
    "-1",
    "9" * 40,  # beyond any integer column
]
HOSTILE_IDS = [*HOSTILE, "_00", "..", str(uuid.uuid4())]


def _ours() -> list[tuple[type[models.Model], ModelAdmin]]:
    return sorted(
        (
            (model, model_admin)
            for model, model_admin in admin.site._registry.items()
            # and the user admin, which ours extend with the data actions
            if model._meta.app_label in APPS or model is get_user_model()
        ),
        key=lambda pair: pair[0]._meta.label_lower,
    )


OURS = _ours()
LABELS = [model._meta.label_lower for model, _ in OURS]


@pytest.fixture
def superuser() -> Any:
    return get_user_model().objects.create_superuser("boss", password="boss-pass-1234")


@pytest.fixture
def staff(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def data(alice: Any, bob: Any) -> None:
    """A row or more in every table the admin lists: objects, their history and
    feed, devices, tokens, mutations, and an open conflict."""
    c = customer("Acme", phone="1")
    wo = work_order(c["id"], "Fix boiler")
    alice.push(c, wo)
    alice.push_one(update("fieldwork.customer", c["id"], 1, phone="2"))
    result = alice.push_one(update("fieldwork.customer", c["id"], 1, phone="3"))
    assert result["status"] == "conflict"
    bob.push_one(customer("Bob's", phone="9"))


def filter_parameters(model_admin: ModelAdmin, user: Any) -> list[str]:
    """Every query parameter the changelist's filters read, found as the admin
    finds them (a filter knows its own parameters)."""
    request = RequestFactory().get("/", secure=True)
    request.user = user
    changelist = model_admin.get_changelist_instance(request)
    params: list[str] = []
    for spec in changelist.filter_specs:
        params += spec.expected_parameters()
    # A lookup on a local field is allowed without a filter (Django's
    # lookup_allowed): the one the "open conflict" link uses, for instance.
    params += [f.name for f in model_admin.model._meta.concrete_fields if not f.is_relation]
    return list(dict.fromkeys(params))


def object_paths(model: type[models.Model], model_admin: ModelAdmin, hostile: str) -> Iterator[str]:
    """Each of the admin's URLs that take an object id (Django's, simple-history's
    and our own), with `hostile` in every captured part, then with a real
    object's id first and `hostile` after it (a history version, say)."""
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    value = quote(hostile, safe="")
    real = model._default_manager.values_list("pk", flat=True).first()
    for url in model_admin.get_urls():
        if not isinstance(url, URLPattern):
            continue
        if isinstance(url.pattern, RoutePattern):
            route, capture = str(url.pattern), r"<[^>]+>"
        else:
            route, capture = str(url.pattern).lstrip("^").rstrip("$"), r"\([^)]*\)"
        captures = len(re.findall(capture, route))
        if not captures:
            continue
        yield base + re.sub(capture, lambda _: value, route)
        if real is not None and captures > 1:
            first = re.sub(capture, lambda _: quote(str(real), safe=""), route, count=1)
            yield base + re.sub(capture, lambda _: value, first)
    if model_admin.opts.label_lower == "sync.conflict":
        yield f"{base}{value}/resolve/"  # the resolve page, under another name


def survives(client: Client, method: str, path: str, params: dict[str, str] | None = None) -> str:
    """'' if the request answered below 500, else what went wrong.

    In a savepoint of its own: on PostgreSQL a failed statement would abort the
    test's transaction and fail every request after it.
    """
    shown = f"{method} {path[:120]} {repr(params)[:120] if params else ''}"
    try:
        with transaction.atomic():
            if method == "GET":
                response = client.get(path, params, secure=True)
            else:
                response = client.post(path, params or {}, secure=True)
    except Exception as exc:  # noqa: BLE001 - what the server would have answered 500 for
        return f"{shown}: {type(exc).__name__}: {str(exc)[:200]}"
    if response.status_code >= 500:
        return f"{shown}: answered {response.status_code}"
    return ""


@pytest.mark.parametrize("label", LABELS)
def test_changelist_filters_search_and_ordering_survive_hostile_values(
    staff: Client, superuser: Any, data: None, label: str
) -> None:
    model, model_admin = next((m, a) for m, a in OURS if m._meta.label_lower == label)
    changelist = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    params = [*filter_parameters(model_admin, superuser), *LIST_PARAMS]
    failures = [
        failure
        for param in params
        for value in HOSTILE
        if (failure := survives(staff, "GET", changelist, {param: value}))
    ]
    # Several at once, and hostile names as well as values.
    failures += [
        failure
        for value in HOSTILE
        if (failure := survives(staff, "GET", changelist, dict.fromkeys(params, value)))
    ]
    failures += [
        failure
        for key in (NUL, f"q{NUL}", "x" * 1000)
        if (failure := survives(staff, "GET", changelist, {key: "1"}))
    ]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("label", LABELS)
def test_object_urls_survive_hostile_ids(
    staff: Client, superuser: Any, data: None, label: str
) -> None:
    model, model_admin = next((m, a) for m, a in OURS if m._meta.label_lower == label)
    failures = []
    for hostile in HOSTILE_IDS:
        for path in object_paths(model, model_admin, hostile):
            failures += [
                failure for method in ("GET", "POST") if (failure := survives(staff, method, path))
            ]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("label", LABELS)
def test_bulk_actions_survive_hostile_selections(
    staff: Client, superuser: Any, data: None, label: str
) -> None:
    model, model_admin = next((m, a) for m, a in OURS if m._meta.label_lower == label)
    changelist = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    request = RequestFactory().get("/", secure=True)
    request.user = superuser
    actions = [*model_admin.get_actions(request), "no-such-action", NUL]
    failures = [
        failure
        for action in actions
        for hostile in HOSTILE_IDS
        # With "index": the action is chosen; without: its confirmation page posts back.
        for extra in ({"index": "0"}, {"post": "yes"})
        if (
            failure := survives(
                staff,
                "POST",
                changelist,
                {"action": action, "_selected_action": hostile, **extra},
            )
        )
    ]
    assert not failures, "\n".join(failures)


def test_the_conflict_pages_answer_404_for_an_id_that_is_no_conflict(
    staff: Client, data: None
) -> None:
    for hostile in ("not-a-uuid", NUL, "x" * 10_000, "' OR 1=1 --"):
        value = quote(hostile, safe="")
        assert staff.get(f"/admin/sync/conflict/{value}/change/", secure=True).status_code == 404
        response = staff.get(f"/admin/sync/conflict/{value}/resolve/", follow=True, secure=True)
        assert response.status_code == 404


def test_a_nul_byte_in_a_conflict_filter_is_cleaned_away(staff: Client, data: None) -> None:
    for param in ("model", "status", "status__exact", "age", "q"):
        response = staff.get("/admin/sync/conflict/", {param: f"open{NUL}"}, secure=True)
        assert (response.status_code, response["Location"]) == (302, "/admin/sync/conflict/?e=1")
