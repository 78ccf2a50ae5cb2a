"""Answers that the fuzzer (tests/fuzz) found the OpenAPI document did not
describe: each real response here must have a documented status code and a
body that validates against the schema documented for it."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from django.contrib.auth import get_user_model
from schemathesis.core.transport import Response

from tests.data_helpers import data_url, service_client
from tests.factories import customer, update, work_order
from tests.helpers import assert_error, https_client

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"


@pytest.fixture
def openapi() -> Any:
    doc = https_client().get("/api/v1/schema/?format=json").json()
    return schemathesis.openapi.from_dict(doc)


def assert_documented(openapi: Any, method: str, path: str, response: Any) -> None:
    """`response` (a Django test response to `method path`, path as the schema
    names it) has a status the operation documents and a conforming body."""
    operation = openapi[path][method]
    status = response.status_code
    assert operation.responses.find_by_status_code(status) is not None, (
        f"{method} {path} answered {status}, which its schema does not list: "
        f"{sorted(operation.definition.raw['responses'])}"
    )
    wire = Response(
        status_code=status,
        headers={name: [value] for name, value in response.items()},
        content=response.content,
        request=requests.Request(method, f"https://testserver{path}").prepare(),
        elapsed=0.0,
        verify=True,
    )
    operation.validate_response(wire)  # raises, naming the mismatch


def test_an_open_conflict_conforms(alice, openapi):
    """`resolved_by` is null while a conflict is open; the schema said string."""
    c = customer("Acme", phone="1")
    alice.push(c)
    alice.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    raised = alice.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    assert raised["status"] == "conflict"
    listed = alice.client.get("/api/v1/sync/conflicts/")
    assert listed.json()[0]["resolved_by"] is None
    assert_documented(openapi, "GET", "/api/v1/sync/conflicts/", listed)
    one = alice.client.get(f"/api/v1/sync/conflicts/{raised['conflict_id']}/")
    assert_documented(openapi, "GET", "/api/v1/sync/conflicts/{conflict_id}/", one)


def test_the_data_listing_with_since_conforms(alice, openapi):
    """`?since=` answers in the pull response's shape; the schema only knew pages."""
    alice.push(customer("Acme"))
    _, erp = service_client()
    path = "/api/v1/data/fieldwork.customer/"
    changes = erp.get(data_url(CUSTOMER), {"since": ""})
    assert "changes" in changes.json()
    assert_documented(openapi, "GET", path, changes)
    assert_documented(openapi, "GET", path, erp.get(data_url(CUSTOMER)))


def test_a_protected_delete_in_the_data_api_conforms(alice, openapi):
    """A customer with work orders answers 409 `protected`, which was undocumented."""
    c = customer("Acme")
    alice.push(c, work_order(c["id"]))
    _, erp = service_client()
    refused = erp.delete(data_url(CUSTOMER, c["id"]))
    assert_error(refused, 409, "protected")
    assert_documented(openapi, "DELETE", "/api/v1/data/fieldwork.customer/{id}/", refused)


def test_a_locked_out_login_conforms(openapi, settings):
    """The login lockout's 429 was undocumented (every operation may answer 429)."""
    get_user_model().objects.create_user("target", password="right-pass-1234")
    client = https_client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        locked = client.post(
            "/api/v1/auth/token/", {"username": "target", "password": "x"}, format="json"
        )
    assert_error(locked, 429, "too_many_attempts")
    assert_documented(openapi, "POST", "/api/v1/auth/token/", locked)


def test_every_operation_documents_the_answers_of_the_shared_layers(openapi):
    for path, methods in openapi.raw_schema["paths"].items():
        for method, operation in methods.items():
            codes = set(operation["responses"])
            assert {"400", "406", "429"} <= codes, (method, path, codes)
            if any(operation.get("security", [])):
                assert "401" in codes, (method, path)
            if method in ("post", "put", "patch"):
                assert {"413", "415"} <= codes, (method, path)
