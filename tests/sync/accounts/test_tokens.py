"""API tokens (device logins and service accounts), and service accounts in the admin."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.utils import timezone

from sync.accounts.services import token_issue, token_login, tokens_purge
from sync.api.throttling import TokenRateThrottle
from sync.models import ChannelGrant, ServiceAccount, Token
from tests.conftest import make_client
from tests.data_helpers import data_url, service_client
from tests.helpers import assert_error, https_client

pytestmark = pytest.mark.django_db

DEVICES = "/api/v1/devices/"


def authed(secret: str):
    return https_client(HTTP_AUTHORIZATION=f"Token {secret}")


def test_a_token_is_never_stored_in_clear():
    user = get_user_model().objects.create_user("plain")
    token, secret = token_issue(user=user, name="probe")
    assert authed(secret).get(DEVICES).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM sync_token")
        stored = [str(value) for row in cursor.fetchall() for value in row]
    assert secret not in stored
    assert token.digest != secret and len(token.digest) == 128  # SHA-512, hex
    assert secret.startswith(token.token_key)  # only a 15-character prefix, for lookup


def test_an_expired_token_is_refused_and_kept_for_the_admin():
    user = get_user_model().objects.create_user("late")
    token, secret = token_issue(user=user, ttl=dt.timedelta(days=1))
    Token.objects.filter(pk=token.pk).update(expiry=timezone.now() - dt.timedelta(seconds=1))
    body = assert_error(authed(secret).get(DEVICES), 401, "authentication_failed")
    assert "expired" in body["detail"]
    assert Token.objects.filter(pk=token.pk).exists()


def test_a_revoked_token_is_refused():
    user = get_user_model().objects.create_user("gone")
    token, secret = token_issue(user=user)
    token.delete()
    assert_error(authed(secret).get(DEVICES), 401, "authentication_failed")


def test_a_deactivated_users_token_is_refused():
    user = get_user_model().objects.create_user("left")
    _, secret = token_issue(user=user)
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    assert_error(authed(secret).get(DEVICES), 401, "authentication_failed")


def test_use_records_last_used_and_slides_a_login_tokens_expiry(settings):
    user = get_user_model().objects.create_user("busy")
    secret = token_login(user=user)
    token = Token.objects.get(user=user)
    assert token.sliding and token.last_used_at is None
    old_expiry = timezone.now() + dt.timedelta(days=1)
    Token.objects.filter(pk=token.pk).update(expiry=old_expiry)
    assert authed(secret).get(DEVICES).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert token.expiry > old_expiry + dt.timedelta(days=80)  # AUTH_TOKEN_TTL from now


def test_a_service_token_keeps_the_expiry_it_was_given():
    user = get_user_model().objects.create_user("svc")
    token, secret = token_issue(user=user, ttl=dt.timedelta(days=7))
    expiry = token.expiry
    authed(secret).get(DEVICES)
    token.refresh_from_db()
    assert token.expiry == expiry and token.last_used_at is not None


def test_logins_beyond_the_cap_replace_the_least_recently_used(settings):
    settings.AUTH_TOKENS_PER_USER = 3
    user = get_user_model().objects.create_user("phones")
    secrets = [token_login(user=user) for _ in range(4)]
    assert Token.objects.filter(user=user).count() == 3
    assert_error(authed(secrets[0]).get(DEVICES), 401, "authentication_failed")
    assert authed(secrets[-1]).get(DEVICES).status_code == 200


def test_purge_deletes_long_expired_tokens_only():
    user = get_user_model().objects.create_user("old")
    gone, _ = token_issue(user=user, ttl=dt.timedelta(days=1))
    fresh, _ = token_issue(user=user, ttl=dt.timedelta(days=1))
    Token.objects.filter(pk=gone.pk).update(expiry=timezone.now() - dt.timedelta(days=40))
    assert tokens_purge() == 1
    assert list(Token.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_a_service_account_cannot_log_in_with_a_password():
    account, _ = service_client("nopass")
    response = https_client().post(
        "/api/v1/auth/token/", {"username": account.user.username, "password": ""}, format="json"
    )
    assert response.status_code == 400
    assert not account.user.has_usable_password()


def test_throttling_is_per_token_with_retry_after(monkeypatch):
    monkeypatch.setitem(TokenRateThrottle.THROTTLE_RATES, "token", "3/min")
    account, erp = service_client("busy-erp")
    url = data_url("fieldwork.customer")
    assert [erp.get(url).status_code for _ in range(3)] == [200, 200, 200]
    limited = erp.get(url)
    assert_error(limited, 429, "throttled")
    assert int(limited["Retry-After"]) > 0
    # Another token of the same account has its own budget.
    _, secret = token_issue(user=account.user, name="second")
    other = https_client(HTTP_AUTHORIZATION=f"Token {secret}")
    assert other.get(url).status_code == 200


# --- the admin ------------------------------------------------------------------------------


@pytest.fixture
def staff() -> Client:
    admin = get_user_model().objects.create_superuser("staff", password="staff-pass-1234")
    client = Client(HTTP_X_FORWARDED_PROTO="https")
    client.force_login(admin)
    return client


def test_staff_create_a_restricted_service_account_with_permissions(staff):
    view = Permission.objects.get(codename="view_customer")
    add = Permission.objects.get(codename="add_customer")
    response = staff.post(
        "/admin/sync/serviceaccount/add/",
        {
            "username": "crm",
            "description": "The CRM",
            "restricted": "on",
            "channels": "team:north, team:south",
            "permissions": [view.pk, add.pk],
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    account = ServiceAccount.objects.get(user__username="crm")
    assert account.restricted and account.description == "The CRM"
    assert set(account.user.user_permissions.all()) == {view, add}
    assert set(
        ChannelGrant.objects.filter(user=account.user).values_list("channel", flat=True)
    ) == {
        "team:north",
        "team:south",
    }
    assert not account.user.has_usable_password()


def test_staff_issue_a_token_shown_once_and_revoke_it(staff):
    account, _ = service_client("erp2")
    issued = staff.post(
        f"/admin/sync/serviceaccount/{account.pk}/issue/",
        {"name": "nightly import", "expires_in_days": 30},
    )
    html = issued.content.decode()
    token = Token.objects.get(user=account.user, name="nightly import")
    start = html.index('id="issued-token"')
    secret = html[html.index(">", start) + 1 : html.index("</code>", start)]
    assert secret.startswith(token.token_key) and len(secret) == 64
    assert token.expiry is not None and token.created_by.username == "staff"
    assert authed(secret).get(data_url("fieldwork.customer")).status_code == 200
    # The list shows a prefix, never the token.
    listing = staff.get("/admin/sync/token/").content.decode()
    assert token.token_key[:8] in listing and secret not in listing
    staff.post(
        "/admin/sync/token/",
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    assert not Token.objects.filter(pk=token.pk).exists()
    assert_error(authed(secret).get(data_url("fieldwork.customer")), 401, "authentication_failed")


def test_an_app_logs_out_this_token_or_every_token(alice):
    other = make_client(alice.user)  # the same user's second login
    response = alice.client.post("/api/v1/auth/logout/", {}, format="json")
    assert response.status_code == 200 and response.json() == {"revoked": 1}
    assert_error(alice.client.get("/api/v1/sync/models/"), 401, "authentication_failed")
    assert other.get("/api/v1/sync/models/").status_code == 200
    third = make_client(alice.user)
    held = Token.objects.filter(user=alice.user).count()
    response = other.post("/api/v1/auth/logout/", {"everywhere": True}, format="json")
    assert response.json()["revoked"] == held >= 2
    assert not Token.objects.filter(user=alice.user).exists()
    assert_error(third.get("/api/v1/sync/models/"), 401, "authentication_failed")
    anonymous = https_client()
    assert_error(
        anonymous.post("/api/v1/auth/logout/", {}, format="json"), 401, "not_authenticated"
    )
    bad = make_client(alice.user)
    assert_error(
        bad.post("/api/v1/auth/logout/", {"everywhere": "yes"}, format="json"), 400, "invalid"
    )
