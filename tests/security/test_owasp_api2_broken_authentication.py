"""OWASP API2:2023 Broken Authentication.

Tokens that are missing, malformed, unknown, revoked or expired, a
deactivated user's token and device, a browser session without CSRF, password
guessing (the account lockout, and the per-address throttle that a forged
X-Forwarded-For must not dodge), and tokens never stored in clear.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.throttling import AnonRateThrottle

from devices.models import Device
from fieldwork.models import Customer
from sync.accounts.services import token_issue
from sync.models import Token
from tests.data_helpers import data_url, service_client
from tests.factories import customer
from tests.helpers import assert_error, https_client

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"
DEVICES = "/api/v1/devices/"
PUSH = "/api/v1/sync/push/"
PASSWORD = "right-pass-1234"


def attempt_writes(client: Any, device_id: Any = None) -> list[Any]:
    """A device registration and a push: what a stolen or forged credential would try."""
    headers = {"HTTP_X_DEVICE_ID": str(device_id)} if device_id else {}
    new_device = {"id": str(uuid.uuid4()), "platform": "android"}
    return [
        client.post(DEVICES, new_device, format="json"),
        client.post(PUSH, {"mutations": [customer("Forged")]}, format="json", **headers),
        client.get("/api/v1/sync/pull/", **headers),
        client.get(data_url("fieldwork.customer")),
    ]


def assert_refused(responses: list[Any], code: str) -> None:
    for response in responses:
        assert_error(response, 401, code)
    assert not Customer.objects.exists()


def test_no_credentials_is_401_with_a_challenge():
    responses = attempt_writes(https_client())
    assert_refused(responses, "not_authenticated")
    assert all(r["WWW-Authenticate"] == "Token" for r in responses)


@pytest.mark.parametrize(
    "header",
    [
        "Token",  # no token
        "Token a b",  # two
        "Token \u00e9\u00e9\u00e9",  # not ASCII (was a 500: knox decodes it as UTF-8)
        "Token 01234\x00" + "f" * 58,  # a NUL, which PostgreSQL refuses in a query (was a 500)
        "Token " + "f" * 64,  # the right shape, unknown
        "Token " + "f" * 10_000,  # absurdly long
        "Bearer " + "f" * 64,  # another scheme: not ours, so no credentials at all
        "Basic dXNlcjpwYXNz",
    ],
)
def test_malformed_or_unknown_tokens_are_401(header):
    token_issue(user=get_user_model().objects.create_user("owner"))  # a token exists
    responses = attempt_writes(https_client(HTTP_AUTHORIZATION=header))
    code = "not_authenticated" if header.split()[0] != "Token" else "authentication_failed"
    assert_refused(responses, code)
    assert Device.objects.count() == 0


def test_a_token_in_the_query_string_is_not_accepted():
    user = get_user_model().objects.create_user("leaky")
    _, secret = token_issue(user=user)
    response = https_client().get(f"{DEVICES}?token={secret}&auth_token={secret}")
    assert_error(response, 401, "not_authenticated")


def test_a_revoked_token_is_401(alice):
    token, secret = token_issue(user=alice.user, name="lost phone")
    token.delete()  # what staff's "Revoke" does
    client = https_client(HTTP_AUTHORIZATION=f"Token {secret}")
    assert_refused(attempt_writes(client, alice.device_id), "authentication_failed")


def test_an_expired_token_is_401_even_with_a_registered_device(alice):
    token, secret = token_issue(user=alice.user, ttl=dt.timedelta(days=1))
    Token.objects.filter(pk=token.pk).update(expiry=timezone.now() - dt.timedelta(seconds=1))
    client = https_client(HTTP_AUTHORIZATION=f"Token {secret}")
    responses = attempt_writes(client, alice.device_id)
    assert_refused(responses, "authentication_failed")
    assert all("expired" in r.json()["detail"] for r in responses)


def test_a_deactivated_users_token_and_device_are_refused(alice):
    get_user_model().objects.filter(pk=alice.user.pk).update(is_active=False)
    assert_refused(attempt_writes(alice.client, alice.device_id), "authentication_failed")
    assert Device.objects.get(pk=alice.device_id).last_seen is None
    # Nor can the account log in again for a fresh token.
    alice.user.set_password(PASSWORD)
    alice.user.save(update_fields=["password"])
    login = https_client().post(
        TOKEN, {"username": alice.user.username, "password": PASSWORD}, format="json"
    )
    assert_error(login, 400, "invalid_credentials")
    assert Token.objects.filter(user=alice.user, name="login").count() == 0


def test_a_browser_session_cannot_write_without_the_csrf_token():
    """The API also accepts the admin's session (for the API docs page); a
    cross-site form posting with that cookie must not get through."""
    staff = get_user_model().objects.create_superuser("boss", password=PASSWORD)
    browser = Client(enforce_csrf_checks=True, HTTP_X_FORWARDED_PROTO="https")
    browser.force_login(staff)
    new_device = {"id": str(uuid.uuid4()), "platform": "web"}
    response = browser.post(DEVICES, new_device, content_type="application/json")
    body = assert_error(response, 403, "permission_denied")
    assert "CSRF" in body["detail"]
    assert not Device.objects.exists()
    create = browser.post(
        data_url("fieldwork.customer"), {"name": "Forged"}, content_type="application/json"
    )
    assert_error(create, 403, "permission_denied")
    assert not Customer.objects.exists()


# --- password guessing ----------------------------------------------------------------


@pytest.fixture
def victim() -> Any:
    return get_user_model().objects.create_user("victim", password=PASSWORD)


def login(password: str, username: str = "victim", **headers: str) -> Any:
    return https_client(**headers).post(
        TOKEN, {"username": username, "password": password}, format="json"
    )


def test_repeated_failures_lock_the_account_whatever_address_they_claim(victim, settings):
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        bad = login("guess", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
        assert_error(bad, 400, "invalid_credentials")
    locked = login("guess", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert_error(locked, 429, "too_many_attempts")
    assert int(locked["Retry-After"]) == int(settings.AXES_COOLOFF_TIME.total_seconds())
    # The right password gains nothing while locked: no token is issued.
    assert_error(login(PASSWORD), 429, "too_many_attempts")
    assert not Token.objects.filter(user=victim).exists()


def test_the_same_message_for_a_wrong_password_and_an_unknown_user(victim):
    wrong = assert_error(login("guess"), 400, "invalid_credentials")
    nobody = assert_error(login("guess", username="nobody-here"), 400, "invalid_credentials")
    assert wrong == nobody


def test_the_address_throttle_is_not_dodged_by_a_forged_forwarded_for(monkeypatch):
    monkeypatch.setitem(AnonRateThrottle.THROTTLE_RATES, "anon", "5/min")
    codes = [
        login("guess", username=f"user{i}", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code
        for i in range(6)
    ]
    assert codes == [400] * 5 + [429]
    limited = login("guess", username="user9", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert_error(limited, 429, "throttled")
    assert int(limited["Retry-After"]) > 0


# --- tokens at rest ---------------------------------------------------------------------


def test_tokens_are_never_stored_in_clear(victim):
    issued = login(PASSWORD).json()["token"]
    _, secret = token_issue(user=service_client("erp")[0].user, name="issued by staff")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM sync_token")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
    for token in (issued, secret):
        assert len(token) == 64
        assert token not in stored
        assert token[15:] not in stored  # beyond the lookup prefix, nothing of it
