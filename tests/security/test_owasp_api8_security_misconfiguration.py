"""OWASP API8:2023 Security Misconfiguration.

The production configuration (DEBUG off, which is the default, a real
SECRET_KEY, ALLOWED_HOSTS) passes Django's deployment checks; responses carry
HSTS, nosniff and frame denial and cookies are secure; errors never show a
debug page or a traceback; and no cross-origin access is granted.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from sync.api import views
from tests.helpers import assert_error, https_client

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "sync.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://sync.example.com",
    # A shared cache, as production has (the check reads the setting; nothing connects).
    "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/1",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """manage.py in a fresh process, with the caller's environment (its
    DATABASE_URL / REDIS_URL, as production would have them) plus `env`."""
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    return subprocess.run(  # noqa: S603 - our own manage.py, fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_deployment_checks_pass_with_production_settings():
    run = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "System check identified no issues" in output
    assert "WARNINGS" not in output and "ERRORS" not in output


def test_the_deployment_checks_catch_the_development_secret_key():
    """Forgetting SECRET_KEY in production cannot pass unnoticed."""
    run = manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="0")
    assert run.returncode != 0
    assert "security.W009" in run.stdout + run.stderr


def test_debug_is_off_unless_asked_for():
    run = manage("shell", "-c", "from django.conf import settings; print(settings.DEBUG)")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "False"


# --- headers and cookies ------------------------------------------------------------------


def test_security_headers_on_api_responses(alice):
    assert django_settings.DEBUG is False  # the tests run the production defaults
    for response in (
        alice.client.get("/api/v1/sync/pull/"),
        alice.client.get("/api/v1/sync/nope/"),  # errors too
        https_client().get("/api/v1/devices/"),
    ):
        hsts = response["Strict-Transport-Security"]
        assert "max-age=" in hsts and int(hsts.split("max-age=")[1].split(";")[0]) >= 3600
        assert "includeSubDomains" in hsts
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "same-origin"


def test_plain_http_is_redirected_to_https():
    response = APIClient().get("/api/v1/sync/models/")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")


def test_session_and_csrf_cookies_are_secure_and_http_only():
    get_user_model().objects.create_superuser("boss", password="boss-pass-1234")
    browser = Client(HTTP_X_FORWARDED_PROTO="https")
    form = browser.get("/admin/login/")
    assert form["X-Frame-Options"] == "DENY"
    csrf = form.cookies["csrftoken"]
    assert csrf["secure"]
    response = browser.post(
        "/admin/login/",
        {"username": "boss", "password": "boss-pass-1234", "next": "/admin/"},
    )
    assert response.status_code == 302
    session = response.cookies["sessionid"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"


# --- errors ---------------------------------------------------------------------------------


def test_an_unexpected_error_is_json_without_a_traceback(alice, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(views, "pull_page_read", broken)
    response = alice.client.get("/api/v1/sync/pull/")
    body = assert_error(response, 500, "server_error")
    assert "hunter2" not in response.content.decode() and "RuntimeError" not in str(body)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/nope/", 404, "not_found"),
        ("/api/v2/sync/pull/", 404, "not_found"),
        ("/api/v1/sync/push/", 405, "method_not_allowed"),
    ],
)
def test_api_errors_are_json_never_a_debug_page(alice, path, status, code):
    response = alice.client.get(path)
    assert_error(response, status, code)
    assert "URLconf" not in response.content.decode()
    # Made JSON after the security middlewares ran: their headers are kept.
    assert response["Strict-Transport-Security"].startswith("max-age=")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_a_bad_host_is_a_json_400_with_nosniff():
    response = https_client().get("/api/v1/sync/models/", HTTP_HOST="evil.example")
    assert_error(response, 400, "bad_request")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_a_write_to_a_path_without_its_slash_is_a_json_404_with_nosniff(alice):
    response = alice.client.post("/api/v1/sync/push", {"mutations": []}, format="json")
    assert_error(response, 404, "not_found")
    assert response["X-Content-Type-Options"] == "nosniff"


def test_pages_outside_the_api_show_no_debug_details():
    response = Client(HTTP_X_FORWARDED_PROTO="https").get("/no-such-page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "URLconf" not in page and "Traceback" not in page and "DEBUG" not in page


# --- cross-origin access ------------------------------------------------------------------


def test_no_cross_origin_access_is_granted(alice):
    assert "corsheaders" not in django_settings.INSTALLED_APPS
    origin = {"HTTP_ORIGIN": "https://evil.example"}
    preflight = alice.client.options(
        "/api/v1/sync/push/",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type",
        **origin,
    )
    for response in (
        preflight,
        alice.client.get("/api/v1/sync/pull/", **origin),
        alice.client.get("/api/v1/devices/", **origin),
        https_client().post("/api/v1/auth/token/", {}, format="json", **origin),
    ):
        cors = [h for h in response.headers if h.lower().startswith("access-control-")]
        assert cors == [], cors
