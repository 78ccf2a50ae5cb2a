"""Password guessing: client addresses come from trusted proxies only;
repeated failures lock a username from the address they come from, and an
address whatever the usernames (at a higher count), on the API and in the
admin alike; nobody elsewhere is locked out by them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.helpers import assert_error, https_client

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"
PASSWORD = "right-pass-1234"


@pytest.fixture
def victim():
    return get_user_model().objects.create_user("victim", password=PASSWORD)


def login(password: str, username: str = "victim", **headers: str):
    return https_client(**headers).post(
        TOKEN, {"username": username, "password": password}, format="json"
    )


def test_a_forged_forwarded_for_does_not_dodge_the_address_throttle(settings):
    """The probe: a new X-Forwarded-For on every try. The address throttle
    (60/min per client) still counts them as one client."""
    codes = [
        login("wrong", username=f"user{i}", HTTP_X_FORWARDED_FOR=f"10.9.0.{i}").status_code
        for i in range(61)
    ]
    assert codes[:60] == [400] * 60
    assert codes[60] == 429


def test_failed_logins_lock_the_username_from_that_address_only(victim, settings):
    attacker = {"REMOTE_ADDR": "10.9.0.1"}
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert_error(login("wrong", **attacker), 400, "invalid_credentials")
    # The failure that reaches the limit locks the username from there.
    locked = login("wrong", **attacker)
    body = assert_error(locked, 429, "too_many_attempts")
    assert "try again" in body["detail"]
    assert int(locked["Retry-After"]) == int(settings.AXES_COOLOFF_TIME.total_seconds())
    # Even the right password is refused from there: guessing gains nothing.
    assert_error(login(PASSWORD, **attacker), 429, "too_many_attempts")
    # The real user, elsewhere, is not locked out by someone else's guesses.
    assert login(PASSWORD, REMOTE_ADDR="10.7.0.2").status_code == 200


def test_one_address_trying_many_usernames_is_locked_out(settings):
    """Spraying one password over many accounts: each username is tried a few
    times only, but the address adds them all up (10x the limit)."""
    settings.AXES_FAILURE_LIMIT = 3
    attacker = {"REMOTE_ADDR": "10.9.0.1"}
    codes = [login("wrong", username=f"user{i}", **attacker).status_code for i in range(31)]
    assert codes[:29] == [400] * 29 and codes[29:] == [429, 429]
    get_user_model().objects.create_user("someone", password=PASSWORD)
    assert login(PASSWORD, username="someone", **attacker).status_code == 429
    assert login(PASSWORD, username="someone", REMOTE_ADDR="10.7.0.2").status_code == 200


def test_a_success_before_the_limit_resets_the_count(victim, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login("wrong")
    assert login(PASSWORD).status_code == 200
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login("wrong")
    assert login(PASSWORD).status_code == 200


def test_another_account_is_not_locked_by_someone_elses_failures(victim, settings):
    get_user_model().objects.create_user("bystander", password=PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        login("wrong")
    assert login(PASSWORD, username="bystander").status_code == 200


def test_the_admin_login_locks_out_too(settings):
    get_user_model().objects.create_superuser("boss", password=PASSWORD)
    client = Client(HTTP_X_FORWARDED_PROTO="https")
    form = {"username": "boss", "password": "wrong", "next": "/admin/"}
    limit = settings.AXES_FAILURE_LIMIT
    codes = [client.post("/admin/login/", form).status_code for _ in range(limit)]
    assert codes == [200] * (limit - 1) + [429]  # the form again, with an error; then locked
    locked = client.post("/admin/login/", {**form, "password": PASSWORD})
    assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
    assert locked["Retry-After"]
