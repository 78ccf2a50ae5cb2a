"""OWASP API4:2023 Unrestricted Resource Consumption.

Every way a client makes the server read, store or send more has a bound,
and going past it is a clear error that applies nothing: the request body,
mutations per request, pull and data-API page sizes, a pull page's bytes,
each value's length, devices per user, the conflicts list, query parameters,
and requests per minute (429 with Retry-After).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from devices.models import Device
from fieldwork.models import Customer
from sync.api import data as data_api
from sync.api.throttling import TokenRateThrottle
from tests.conftest import make_client
from tests.data_helpers import data_url, service_client
from tests.factories import UserFactory, customer, update
from tests.helpers import assert_error, https_client
from tests.security.conftest import CUSTOMER

pytestmark = pytest.mark.django_db

PULL = "/api/v1/sync/pull/"
PUSH = "/api/v1/sync/push/"
DEVICES = "/api/v1/devices/"


# --- bodies and batches ---------------------------------------------------------------


def test_a_body_over_the_limit_is_413_and_nothing_is_applied(alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    c = customer("Big", address="x" * 5000)
    assert_error(
        alice.client.post(PUSH, {"mutations": [c]}, format="json"), 413, "payload_too_large"
    )
    _, erp = service_client()
    big = {"name": "Big", "address": "x" * 5000}
    assert_error(erp.post(data_url(CUSTOMER), big, format="json"), 413, "payload_too_large")
    device = {"id": str(uuid.uuid4()), "platform": "ios", "name": "x" * 5000}
    assert_error(alice.client.post(DEVICES, device, format="json"), 413, "payload_too_large")
    assert not Customer.objects.exists()
    assert Device.objects.count() == 1  # the fixture's


def test_more_than_500_mutations_is_413_and_nothing_is_applied(alice):
    batch = [customer(f"c{i}") for i in range(501)]
    response = alice.client.post(PUSH, {"mutations": batch}, format="json")
    assert_error(response, 413, "too_many_mutations")
    _, erp = service_client()
    bulk = [{"op": "create", "data": {"name": f"c{i}"}} for i in range(501)]
    response = erp.post(data_url(CUSTOMER, suffix="bulk/"), {"mutations": bulk}, format="json")
    assert_error(response, 413, "too_many_mutations")
    assert not Customer.objects.exists()
    # 500 is still one request.
    assert len(alice.push(*batch[:500])["results"]) == 500


# --- pages ---------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["1001", "0", "-1", "1e3", "abc", "9" * 40])
def test_a_pull_page_size_outside_1_to_1000_is_400(alice, limit):
    body = assert_error(alice.client.get(PULL, {"limit": limit}), 400, "bad_limit")
    assert body["errors"] == {"limit": ["Must be an integer from 1 to 1000."]}


@pytest.mark.parametrize("limit", ["1001", "0", "abc"])
def test_a_data_api_change_page_outside_1_to_1000_is_400(limit):
    _, erp = service_client()
    response = erp.get(data_url(CUSTOMER), {"since": "", "limit": limit})
    assert_error(response, 400, "bad_limit")


def test_a_data_api_page_never_exceeds_its_maximum(alice, monkeypatch):
    alice.push(*[customer(f"c{i}") for i in range(5)])
    monkeypatch.setattr(data_api.Pages, "max_page_size", 3)
    _, erp = service_client()
    page = erp.get(data_url(CUSTOMER), {"page_size": "100000"}).json()
    assert len(page["results"]) == 3 and page["next"]


def test_a_pull_page_stops_at_its_byte_budget(alice, settings):
    alice.push(*[customer(f"c{i}", address="a" * 900) for i in range(10)])
    settings.SYNC_PULL_MAX_BYTES = 3_000
    page = alice.pull(limit=1000)
    assert 1 <= len(page["changes"]) <= 3 and page["has_more"]
    assert len(page["changes"]) * 900 <= 3_000 + 900  # the budget, plus one object at most


def test_a_text_value_over_its_length_is_rejected_on_its_field(alice):
    result = alice.push_one(customer("x" * 201))
    assert result["status"] == "rejected"
    assert result["errors"] == {
        "name": ["Ensure this value has at most 200 characters (it has 201)."]
    }
    _, erp = service_client()
    refused = erp.post(data_url(CUSTOMER), {"name": "Acme", "address": "a" * 1001}, format="json")
    assert "address" in assert_error(refused, 400, "invalid")["errors"]
    assert not Customer.objects.exists()


def test_too_many_query_parameters_is_400(alice):
    query = "&".join(f"p{i}=1" for i in range(1200))
    assert_error(alice.client.get(f"{PULL}?{query}"), 400, "bad_request")


# --- devices and conflicts -------------------------------------------------------------


def register(client: Any, device_id: Any = None) -> Any:
    body = {"id": str(device_id or uuid.uuid4()), "platform": "android"}
    return client.post(DEVICES, body, format="json")


def test_devices_per_user_are_limited(settings):
    assert settings.SYNC_MAX_DEVICES_PER_USER == 50  # the documented default
    settings.SYNC_MAX_DEVICES_PER_USER = 3
    user = UserFactory()
    client = make_client(user)
    first = uuid.uuid4()
    assert [register(client, first).status_code] + [
        register(client).status_code for _ in range(2)
    ] == [201, 201, 201]
    refused = register(client)
    body = assert_error(refused, 409, "too_many_devices")
    assert "3 devices" in body["detail"]
    assert Device.objects.filter(user=user).count() == 3
    # Registering one it has again is an update, still fine at the limit.
    assert register(client, first).status_code == 200
    # Another account has its own allowance.
    assert register(make_client(UserFactory())).status_code == 201
    # Deleting one makes room.
    assert client.delete(f"{DEVICES}{first}/").status_code == 204
    assert register(client).status_code == 201


def test_the_conflicts_list_answers_the_newest_up_to_its_maximum(alice, settings):
    objects = [customer(f"c{i}", phone="1") for i in range(5)]
    alice.push(*objects)
    alice.push(*[update(CUSTOMER, c["id"], 1, phone="2") for c in objects])
    for c in objects:  # one push each, so that they are raised one after the other
        assert alice.push_one(update(CUSTOMER, c["id"], 1, phone="3"))["status"] == "conflict"
    settings.SYNC_CONFLICTS_LIST_MAX = 3
    listed = alice.client.get("/api/v1/sync/conflicts/").json()
    assert [c["object_id"] for c in listed] == [c["id"] for c in reversed(objects[2:])]


# --- rates ---------------------------------------------------------------------------


def test_a_user_over_the_rate_gets_429_with_retry_after(alice, monkeypatch):
    monkeypatch.setitem(UserRateThrottle.THROTTLE_RATES, "user", "3/min")
    cache.clear()  # forget the fixture's device registration
    statuses = [alice.client.get(PULL).status_code for _ in range(3)]
    c = customer("Late")
    limited = alice.client.post(PUSH, {"mutations": [c]}, format="json")
    assert statuses == [200, 200, 200]
    assert_error(limited, 429, "throttled")
    assert 0 < int(limited["Retry-After"]) <= 60
    assert not Customer.objects.filter(pk=c["id"]).exists()


def test_a_token_over_the_data_api_rate_gets_429_with_retry_after(monkeypatch):
    monkeypatch.setitem(TokenRateThrottle.THROTTLE_RATES, "token", "2/min")
    _, erp = service_client()
    assert [erp.get(data_url(CUSTOMER)).status_code for _ in range(2)] == [200, 200]
    limited = erp.post(data_url(CUSTOMER), {"name": "Late"}, format="json")
    assert_error(limited, 429, "throttled")
    assert int(limited["Retry-After"]) > 0
    assert not Customer.objects.exists()


def test_anonymous_callers_over_the_rate_get_429_with_retry_after(monkeypatch):
    monkeypatch.setitem(AnonRateThrottle.THROTTLE_RATES, "anon", "2/min")
    client = https_client()
    login = {"username": "nobody", "password": "x"}
    for _ in range(2):
        assert client.post("/api/v1/auth/token/", login, format="json").status_code == 400
    limited = client.post("/api/v1/auth/token/", login, format="json")
    assert_error(limited, 429, "throttled")
    assert int(limited["Retry-After"]) > 0
