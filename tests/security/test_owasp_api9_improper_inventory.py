"""OWASP API9:2023 Improper Inventory Management.

The OpenAPI document is the inventory other teams build against: every route
the server answers under /api/ is in it with every method it serves, and it
lists nothing the server does not serve. Only one version is served.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.helpers import assert_error, https_client

pytestmark = pytest.mark.django_db

# The document's own endpoints are not operations of the API.
DOCUMENTATION = {"/api/v1/schema/", "/api/v1/docs/"}
IGNORED_METHODS = {"options", "head"}


def _readable(pattern: Any) -> str:
    """A URL pattern as OpenAPI writes it: `<uuid:conflict_id>` and
    `(?P<pk>...)` become `{conflict_id}` and `{id}` (drf-spectacular names a
    primary key `id`), regex anchors and escapes go."""
    text = str(pattern)
    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", text)
    text = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", text)
    return text.lstrip("^").rstrip("$").replace("\\.", ".").replace("{pk}", "{id}")


def served(resolver: Any = None, prefix: str = "/") -> Iterator[tuple[str, set[str]]]:
    """Every route the URL resolver answers, with the HTTP methods its view serves."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        path = prefix + _readable(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from served(entry, path)
        elif isinstance(entry, URLPattern):
            callback = entry.callback
            actions = getattr(callback, "actions", None)
            if actions is not None:  # a viewset route: method → action
                methods = set(actions)
            else:
                view = getattr(callback, "view_class", None)
                names = getattr(view, "http_method_names", [])
                methods = {m for m in names if view is not None and hasattr(view, m)}
            yield path, methods - IGNORED_METHODS


@pytest.fixture
def documented() -> dict[str, set[str]]:
    doc = https_client().get("/api/v1/schema/?format=json").json()
    return {
        path: {m for m in item if m in {"get", "post", "put", "patch", "delete"}}
        for path, item in doc["paths"].items()
    }


def test_every_served_api_route_is_documented_with_its_methods(documented):
    api = {path: methods for path, methods in served() if path.startswith("/api/")}
    assert len(api) > 15  # the walk found the routes (a broken walk would pass vacuously)
    undocumented = {
        path: sorted(methods)
        for path, methods in api.items()
        if path not in documented and path not in DOCUMENTATION
    }
    assert undocumented == {}
    for path, methods in api.items():
        if path in DOCUMENTATION:
            continue
        assert documented[path] == methods, (path, sorted(documented[path]), sorted(methods))


def test_the_document_lists_only_served_routes(documented):
    served_paths = {path for path, _ in served()}
    assert sorted(set(documented) - served_paths) == []


def test_every_synced_model_has_its_data_api_and_nothing_else_is_exposed(alice, documented):
    labels = {m["model"] for m in alice.client.get("/api/v1/sync/models/").json()}
    data_models = {p.split("/")[4] for p in documented if p.startswith("/api/v1/data/")}
    assert data_models == labels  # no data API for an unsynced model (users, tokens, teams...)


@pytest.mark.parametrize("path", ["/api/v0/sync/pull/", "/api/v2/sync/pull/", "/api/sync/pull/"])
def test_no_other_api_version_is_served(alice, path):
    assert_error(alice.client.get(path), 404, "not_found")
