"""One structured log line per request (syncbase.request_log), and nothing twice."""

from __future__ import annotations

import json
import logging
import re

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from syncbase.request_log import JsonFormatter
from tests.conftest import make_client
from tests.factories import customer

pytestmark = pytest.mark.django_db

PUSH = "/api/v1/sync/push/"


def request_lines(caplog, path: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sync.request" and r.path == path]


def mentioning(caplog, path: str) -> list[logging.LogRecord]:
    """Every record, from any logger, about this path."""
    return [r for r in caplog.records if path in r.getMessage() or getattr(r, "path", None) == path]


def test_a_push_is_one_line_with_its_request_id_user_device_and_outcome(alice, caplog):
    with caplog.at_level(logging.INFO):
        response = alice.client.post(
            PUSH,
            {"mutations": [customer("ok"), customer("")]},
            format="json",
            HTTP_X_REQUEST_ID="lb-7f3a.1",
        )
    assert response.status_code == 200
    assert response["X-Request-Id"] == "lb-7f3a.1"
    [line] = mentioning(caplog, PUSH)
    assert line.name == "sync.request" and line.levelno == logging.INFO
    assert line.request_id == "lb-7f3a.1"
    assert (line.method, line.path, line.status) == ("POST", PUSH, 200)
    assert line.user_id == alice.user.pk
    assert line.device_id == str(alice.device_id)
    assert (line.mutations, line.applied, line.rejected) == (2, 1, 1)
    assert isinstance(line.duration_ms, float) and line.duration_ms > 0
    assert "mutations=2 applied=1 rejected=1" in line.getMessage()


def test_the_mutations_that_were_not_applied_are_named_at_debug(alice, caplog):
    bad = customer("")
    with caplog.at_level(logging.DEBUG):
        response = alice.client.post(PUSH, {"mutations": [customer("ok"), bad]}, format="json")
    [detail] = [r for r in caplog.records if r.getMessage().startswith("push not applied")]
    assert detail.levelno == logging.DEBUG
    assert detail.getMessage() == f"push not applied: {bad['mutation_id']}:rejected"
    # Every record of the request carries its id, not only the request line.
    assert detail.request_id == response["X-Request-Id"]


@pytest.mark.parametrize(
    "given",
    ["has space", "x" * 129, 'quote"d', "line\nbreak", ""],
    ids=["space", "too-long", "quote", "newline", "empty"],
)
def test_an_insane_request_id_is_replaced(given, caplog):
    with caplog.at_level(logging.INFO):
        response = Client().get("/api/v1/nowhere/", HTTP_X_REQUEST_ID=given, secure=True)
    generated = response["X-Request-Id"]
    assert generated != given and re.fullmatch(r"[0-9a-f]{32}", generated)
    [line] = request_lines(caplog, "/api/v1/nowhere/")
    assert line.request_id == generated


def test_a_line_break_in_the_path_cannot_forge_a_log_line(caplog):
    with caplog.at_level(logging.INFO):
        Client().get("/api/v1/x%0A2026-01-01 INFO forged/", secure=True)
    [line] = request_lines(caplog, "/api/v1/x\n2026-01-01 INFO forged/")
    assert "\n" not in line.getMessage() and "x\\x0a2026" in line.getMessage()


def test_a_404_is_logged_once_without_a_traceback(caplog):
    with caplog.at_level(logging.DEBUG):
        response = Client().get("/api/v1/nowhere/", secure=True)
    assert response.status_code == 404
    [line] = mentioning(caplog, "/api/v1/nowhere/")
    assert line.name == "sync.request" and line.status == 404 and line.exc_info is None


def test_an_admin_403_is_logged_once_without_a_traceback(caplog):
    staff = get_user_model().objects.create_user("clerk", password="pw-123456789", is_staff=True)
    client = Client()
    client.force_login(staff)
    path = "/admin/sync/conflict/"
    with caplog.at_level(logging.DEBUG):
        response = client.get(path, secure=True)
    assert response.status_code == 403  # staff without the view permission
    [line] = mentioning(caplog, path)
    assert line.name == "sync.request" and line.status == 403
    assert line.user_id == staff.pk
    assert all(r.exc_info is None for r in caplog.records)


def test_a_server_error_keeps_its_traceback(alice, caplog, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("sync.api.views.conflicts_for_user", broken)
    with caplog.at_level(logging.INFO):
        response = alice.client.get("/api/v1/sync/conflicts/")
    assert response.status_code == 500
    [line] = request_lines(caplog, "/api/v1/sync/conflicts/")
    assert line.levelno == logging.ERROR and line.status == 500
    assert any(r.exc_info for r in caplog.records), "the bug's traceback is logged"


def test_health_probes_succeeding_are_only_logged_at_debug(caplog):
    with caplog.at_level(logging.INFO):
        Client().get("/healthz")
    assert request_lines(caplog, "/healthz") == []
    with caplog.at_level(logging.DEBUG):
        Client().get("/healthz")
    assert len(request_lines(caplog, "/healthz")) == 1


def test_a_session_user_is_not_loaded_only_for_the_log(django_assert_num_queries, caplog):
    # A page that never looks at the user: logging it must not cost queries.
    with caplog.at_level(logging.INFO), django_assert_num_queries(0):
        Client().get("/api/v1/nowhere/", secure=True)
    [line] = request_lines(caplog, "/api/v1/nowhere/")
    assert line.user_id is None and line.device_id is None


def test_an_invalid_device_header_is_not_logged_as_a_device(alice, caplog):
    client = make_client(alice.user)  # without alice's device header
    with caplog.at_level(logging.INFO):
        client.get("/api/v1/sync/pull/", HTTP_X_DEVICE_ID="not-a-uuid\nforged=1")
    [line] = request_lines(caplog, "/api/v1/sync/pull/")
    assert line.status == 400 and line.device_id is None


def test_json_format_is_one_object_per_line_with_the_request_fields(alice, caplog):
    with caplog.at_level(logging.INFO):
        alice.push(customer("ok"))
    [record] = request_lines(caplog, PUSH)
    text = JsonFormatter().format(record)
    assert "\n" not in text
    body = json.loads(text)
    assert body["level"] == "INFO" and body["logger"] == "sync.request"
    assert body["message"].startswith(f"POST {PUSH} 200 ")
    assert body["method"] == "POST" and body["path"] == PUSH and body["status"] == 200
    assert body["user_id"] == alice.user.pk and body["device_id"] == str(alice.device_id)
    assert body["applied"] == 1 and isinstance(body["duration_ms"], float)
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    assert body["time"].endswith("+00:00")


def test_the_configured_format_follows_log_format():
    handler = settings.LOGGING["handlers"]["console"]
    assert handler["formatter"] == settings.LOG_FORMAT
    assert settings.LOG_FORMAT in settings.LOGGING["formatters"]
    plain = logging.Formatter(settings.LOGGING["formatters"]["plain"]["format"])
    record = logging.getLogger("x").makeRecord("x", logging.INFO, "f", 1, "hello", (), None)
    assert "[-] hello" in plain.format(record)  # outside a request: no id
