"""Authentication and the error contract: every 4xx/5xx under /api/ is JSON
`{"code", "detail"}`, never an HTML page or a traceback."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from devices.models import Device
from fieldwork.models import Customer
from tests.conftest import make_client
from tests.factories import UserFactory
from tests.helpers import assert_error, https_client

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"
PASSWORD = "correct horse battery staple"


def login_user(**fields: Any) -> Any:
    """A user who can log in. (UserFactory's password is never saved: its
    post-generation `set_password` runs with `skip_postgeneration_save=True`.)"""
    user = UserFactory(**fields)
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    return user


def test_good_credentials_give_a_token_that_authenticates():
    user = login_user()
    response = https_client().post(
        TOKEN, {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"token"}
    token = body["token"]
    assert isinstance(token, str) and token

    authed = https_client(HTTP_AUTHORIZATION=f"Token {token}")
    assert authed.get("/api/v1/devices/").status_code == 200
    device_id = str(uuid.uuid4())
    registered = authed.post(
        "/api/v1/devices/", {"id": device_id, "platform": "ios"}, format="json"
    )
    assert registered.status_code == 201, registered.content
    pulled = authed.get("/api/v1/sync/pull/", HTTP_X_DEVICE_ID=device_id)
    assert pulled.status_code == 200, pulled.content


def test_each_login_gives_a_new_token_and_the_earlier_ones_keep_working():
    user = login_user()
    creds = {"username": user.username, "password": PASSWORD}
    first = https_client().post(TOKEN, creds, format="json").json()["token"]
    second = https_client().post(TOKEN, creds, format="json").json()["token"]
    assert first != second
    for token in (first, second):
        authed = https_client(HTTP_AUTHORIZATION=f"Token {token}")
        assert authed.get("/api/v1/devices/").status_code == 200


@pytest.mark.parametrize(
    "creds",
    [
        {"username": "USER", "password": "wrong-password"},
        {"username": "nobody-by-this-name", "password": PASSWORD},
        {"username": "USER", "password": PASSWORD.upper()},
    ],
)
def test_bad_credentials_are_400_invalid_credentials(creds):
    user = login_user()
    creds = {k: (user.username if v == "USER" else v) for k, v in creds.items()}
    response = https_client().post(TOKEN, creds, format="json")
    body = assert_error(response, 400, "invalid_credentials")
    assert "token" not in body
    # The account itself is fine: with the right password it gets a token.
    good = {"username": user.username, "password": PASSWORD}
    assert https_client().post(TOKEN, good, format="json").status_code == 200


def test_inactive_user_gets_no_token():
    user = login_user(is_active=False)
    response = https_client().post(
        TOKEN, {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert_error(response, 400, "invalid_credentials")


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ({}, {"username", "password"}),
        ({"username": "someone"}, {"password"}),
        ({"password": PASSWORD}, {"username"}),
        ({"username": "", "password": ""}, {"username", "password"}),
    ],
)
def test_missing_fields_are_400_invalid_with_errors(body, missing):
    response = https_client().post(TOKEN, body, format="json")
    payload = assert_error(response, 400, "invalid")
    assert set(payload["errors"]) == missing
    for messages in payload["errors"].values():
        assert isinstance(messages, list) and all(isinstance(m, str) and m for m in messages)


def test_malformed_json_to_token_is_400_parse_error():
    response = https_client().post(TOKEN, "{nope", content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_token_endpoint_does_not_accept_get():
    assert_error(https_client().get(TOKEN), 405, "method_not_allowed")


# --- 401 ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/devices/", "/api/v1/sync/pull/", "/api/v1/sync/models/"])
def test_no_token_is_401_not_authenticated(path):
    response = https_client().get(path)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Token")


def test_no_token_on_push_is_401_and_nothing_is_written():
    object_id = str(uuid.uuid4())
    mutation = {
        "mutation_id": str(uuid.uuid4()),
        "model": "fieldwork.customer",
        "op": "create",
        "id": object_id,
        "base_version": None,
        "data": {"name": "Anon"},
    }
    response = https_client().post("/api/v1/sync/push/", {"mutations": [mutation]}, format="json")
    assert_error(response, 401, "not_authenticated")
    assert not Customer.objects.filter(pk=object_id).exists()


@pytest.mark.parametrize(
    "header",
    [
        "Token not-a-real-token",
        "Token 0123456789abcdef0123456789abcdef01234567",
        "Token",
        "Token two parts",
    ],
)
def test_bad_token_is_401_authentication_failed(header):
    response = https_client(HTTP_AUTHORIZATION=header).get("/api/v1/devices/")
    assert_error(response, 401, "authentication_failed")


def test_token_of_a_deactivated_user_is_rejected():
    user = UserFactory()
    client = make_client(user)
    assert client.get("/api/v1/devices/").status_code == 200
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert_error(client.get("/api/v1/devices/"), 401, "authentication_failed")


# --- 404 / 405 ----------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "path", ["/api/v1/nope/", "/api/v1/sync/nope/", "/api/v2/sync/pull/", "/api/"]
)
def test_unknown_url_under_api_is_404_json(settings, debug, path):
    settings.DEBUG = debug
    user = UserFactory()
    for client in (https_client(), make_client(user)):
        assert_error(client.get(path), 404, "not_found")
        assert_error(client.post(path, {"x": 1}, format="json"), 404, "not_found")


@pytest.mark.parametrize("debug", [False, True])
def test_disallowed_host_under_api_is_400_json(settings, debug):
    settings.DEBUG = debug
    client = make_client(UserFactory())
    client.raise_request_exception = False
    response = client.get("/api/v1/sync/models/", HTTP_HOST="evil.example")
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("method", ["post", "patch", "delete"])
def test_write_to_an_api_url_missing_its_slash_is_404_json(settings, debug, method):
    """A redirect would drop the body of a write (and, with DEBUG on, APPEND_SLASH
    raised a RuntimeError rendered as an HTML traceback): a JSON 404 that names
    the right URL instead."""
    settings.DEBUG = debug
    user = UserFactory()
    client = make_client(user)
    client.raise_request_exception = False
    response = getattr(client, method)(
        "/api/v1/devices", {"id": str(uuid.uuid4()), "platform": "ios"}, format="json"
    )
    body = assert_error(response, 404, "not_found")
    assert "/api/v1/devices/" in body["detail"]
    assert not Device.objects.filter(user=user).exists()


def test_get_of_an_api_url_missing_its_slash_redirects_to_it(alice):
    response = alice.client.get("/api/v1/devices")
    assert response.status_code == 301
    assert response["Location"].endswith("/api/v1/devices/")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/api/v1/sync/pull/"),
        ("post", "/api/v1/sync/pull/"),
        ("get", "/api/v1/sync/push/"),
        ("put", "/api/v1/sync/models/"),
        ("post", "/api/v1/sync/conflicts/"),
        ("put", "/api/v1/devices/"),
    ],
)
def test_wrong_method_is_405_json(alice, method, path):
    response = getattr(alice.client, method)(path)
    assert_error(response, 405, "method_not_allowed")
    assert method.upper() not in response["Allow"]


# --- 500 ----------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_unhandled_exception_in_a_view_is_500_json(alice, settings, monkeypatch, debug):
    settings.DEBUG = debug

    def explode(**kwargs: Any) -> None:
        raise RuntimeError("secret internal detail: boom")

    monkeypatch.setattr("sync.api.views.pull_page_read", explode)
    alice.client.raise_request_exception = False
    response = alice.client.get("/api/v1/sync/pull/")
    body = assert_error(response, 500, "server_error")
    assert set(body) == {"code", "detail"}
    assert "secret internal detail" not in response.content.decode()
    assert "RuntimeError" not in response.content.decode()


# --- 413 ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/devices/", "/api/v1/sync/push/", TOKEN])
def test_body_over_the_upload_limit_is_413_json(settings, alice, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = "x" * 3000
    bodies = {
        "/api/v1/devices/": {"id": str(uuid.uuid4()), "platform": "ios", "push_token": big},
        "/api/v1/sync/push/": {"mutations": [], "cursor": big},
        TOKEN: {"username": big, "password": "x"},
    }
    before = Device.objects.count()
    response = alice.client.post(path, bodies[path], format="json")
    assert_error(response, 413, "payload_too_large")
    assert Device.objects.count() == before


# --- 429 ----------------------------------------------------------------------------


def _throttle(settings: Any, monkeypatch: Any, *, user: str, anon: str) -> None:
    rates = {"user": user, "anon": anon}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    # DRF reads the rates into the class once, at import.
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", rates)
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", rates)


def test_fourth_request_over_a_3_per_minute_user_rate_is_429(settings, monkeypatch):
    _throttle(settings, monkeypatch, user="3/min", anon="1000/min")
    client = make_client(UserFactory())
    for _ in range(3):
        assert client.get("/api/v1/devices/").status_code == 200
    response = client.get("/api/v1/devices/")
    assert_error(response, 429, "throttled")
    retry_after = int(response["Retry-After"])
    assert 0 < retry_after <= 60
    # The limit is per user: another account is not affected.
    assert make_client(UserFactory()).get("/api/v1/devices/").status_code == 200


def test_user_throttle_counts_across_endpoints(settings, monkeypatch, make_actor):
    actor = make_actor()
    _throttle(settings, monkeypatch, user="3/min", anon="1000/min")
    cache.clear()  # forget the registration request made by the fixture
    assert actor.client.get("/api/v1/devices/").status_code == 200
    assert actor.client.get("/api/v1/sync/models/").status_code == 200
    assert actor.client.get("/api/v1/sync/pull/").status_code == 200
    response = actor.client.get("/api/v1/sync/pull/")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


def test_anonymous_token_requests_are_throttled(settings, monkeypatch):
    _throttle(settings, monkeypatch, user="1000/min", anon="3/min")
    user = login_user()
    client = https_client()
    for _ in range(3):
        response = client.post(TOKEN, {"username": user.username, "password": "x"}, format="json")
        assert response.status_code == 400
    response = client.post(TOKEN, {"username": user.username, "password": PASSWORD}, format="json")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
