"""Inputs found by fuzzing: each once made the API answer 5xx or non-JSON."""

from __future__ import annotations

import io
import uuid

import orjson
import pytest
from django.test import Client

import sync.engine.cursor as cursor_module
from config.wsgi import application
from fieldwork.models import Customer
from sync.engine.cursor import Cursor
from tests.factories import customer, update, work_order
from tests.helpers import assert_error, https_client

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"


def raw_push(actor, body: bytes):
    return actor.client.post("/api/v1/sync/push/", body, content_type="application/json")


def test_number_too_large_for_a_double_is_a_400_and_nothing_is_written(alice):
    c = customer()
    body = (
        b'{"mutations": [{"mutation_id": "%s", "model": "fieldwork.workorder", "op": "create",'
        b' "id": "%s", "data": {"customer": "%s", "title": "t", "estimated_hours": 1%s}}]}'
        % (str(uuid.uuid4()).encode(), str(uuid.uuid4()).encode(), c["id"].encode(), b"0" * 400)
    )
    assert_error(raw_push(alice, body), 400, "parse_error")


def test_datetime_that_overflows_in_utc_is_rejected(alice):
    c = customer()
    alice.push(c)
    results = alice.push(
        work_order(c["id"], due_at="9999-12-31T23:59:59-05:00"),
        work_order(c["id"], due_at="0001-01-01T00:00:00+05:00"),
        work_order(c["id"], due_at="2026-12-01T10:00:00+01:00"),
    )["results"]
    assert [r["status"] for r in results] == ["rejected", "rejected", "applied"]
    assert "due_at" in results[0]["errors"]
    assert results[2]["data"]["due_at"] == "2026-12-01T09:00:00Z"


@pytest.mark.parametrize(
    "fragment",
    [
        b'"data": {"name": "\\ud800"}',
        b'"data": {"\\udc00": 1}',
    ],
)
def test_lone_surrogates_are_a_400_and_nothing_is_applied(alice, fragment):
    good = customer("good")
    bad = (
        b'{"mutation_id": "%s", "model": "fieldwork.customer", "op": "create", "id": "%s", %s}'
        % (str(uuid.uuid4()).encode(), str(uuid.uuid4()).encode(), fragment)
    )
    body = b'{"mutations": [%s, %s]}' % (orjson.dumps(good), bad)
    assert_error(raw_push(alice, body), 400, "parse_error")
    assert not Customer.objects.exists()


def test_nul_characters_are_rejected_per_mutation(alice):
    results = alice.push(customer("a\x00b"), customer("fine"))["results"]
    assert [r["status"] for r in results] == ["rejected", "applied"]
    assert "NUL" in results[0]["errors"]["name"][0]


@pytest.mark.postgres
@pytest.mark.parametrize("where", ["id", "field name"])
def test_nul_in_an_echoed_value_is_rejected_not_a_500(alice, where):
    """Found by schemathesis: a rejected result echoes the client's id (when not
    a UUID) and names unknown fields; with a NUL in either, storing the result
    for replays failed in PostgreSQL's jsonb and the whole push answered 500."""
    bad = customer()
    if where == "id":
        bad["id"] = "a\x00b"
    else:
        bad["data"]["na\x00me"] = "x"
    good = customer("fine")
    results = alice.push(bad, good)["results"]
    assert [r["status"] for r in results] == ["rejected", "applied"]
    echoed = results[0]["id"] if where == "id" else next(iter(results[0]["errors"]))
    assert "\x00" not in echoed and echoed.startswith("a" if where == "id" else "na")
    # The rejection was recorded like any other: a retry replays it.
    assert alice.push(bad)["results"][0] == results[0]
    assert Customer.objects.filter(pk=good["id"]).exists()


def test_infinite_and_nan_literals_are_a_400(alice):
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"mutations": [], "x": %s}' % literal
        assert_error(raw_push(alice, body), 400, "parse_error")


def test_deeply_nested_body_is_a_400():
    body = b"[" * 100_000 + b"]" * 100_000
    response = https_client().post("/api/v1/auth/token/", body, content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_very_long_limit_is_a_400(alice):
    assert alice.pull(expect=400, limit="9" * 5000)["code"] == "bad_limit"


def test_too_many_query_parameters_is_a_400(alice):
    query = "&".join(f"p{i}=1" for i in range(1001))
    response = alice.client.get(f"/api/v1/sync/models/?{query}")
    assert_error(response, 400, "bad_request")


def test_forged_cursor_with_infinite_position_is_a_400(alice, monkeypatch):
    token = Cursor(u=alice.user.pk).encode()
    # Forged: not a text this process issued (encode remembers its own).
    cursor_module._DECODED.clear()
    original = cursor_module.signing.loads

    def loads_with_infinity(*args, **kwargs):
        payload = original(*args, **kwargs)
        return {**payload, "s": float("inf")}

    monkeypatch.setattr(cursor_module.signing, "loads", loads_with_infinity)
    assert alice.pull(expect=400, cursor=token)["code"] == "bad_cursor"


def test_bad_host_is_json_even_before_the_https_redirect(settings):
    settings.SECURE_SSL_REDIRECT = True
    response = Client().get("/api/v1/sync/pull/", HTTP_HOST="evil.example")
    assert_error(response, 400, "bad_request")


def test_charset_that_is_not_a_text_encoding_is_a_json_400():
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/v1/sync/models/",
        "QUERY_STRING": "x=1",
        "CONTENT_TYPE": "text/plain; charset=rot13",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "443",
        "HTTP_HOST": "localhost",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "https",
    }
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(application(environ, start_response))
    assert seen["status"].startswith("400")
    assert seen["headers"]["Content-Type"] == "application/json"
    assert b'"code": "bad_request"' in body


def test_conflicts_list_survives_odd_client_data(alice):
    c = customer("Acme", phone="1")
    alice.push(c)
    alice.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    result = alice.push_one(update(CUSTOMER, c["id"], 1, phone="\u2603 snow"))
    assert result["status"] == "conflict"
    response = alice.client.get("/api/v1/sync/conflicts/")
    assert response.status_code == 200
    assert response.json()[0]["client_data"] == {"phone": "\u2603 snow"}


@pytest.mark.parametrize(
    "cursor",
    [
        Cursor(u=7),
        Cursor(s=(12, 3), g=4, i=(10, 1), m=("fieldwork.customer",), r=99, u=7, t=5),
        Cursor(b=(("user:7", None, (1, 2)), ("team:3", (9, 9), (0, 0))), u=7, a=True, f=True),
    ],
)
def test_a_cursor_this_process_issued_reads_as_it_would_from_its_text(cursor):
    """encode() remembers the cursor for decode(); what decode() hands back
    must be what reading the text afresh gives."""
    text = cursor.encode()
    assert cursor_module.decode(text) is cursor
    cursor_module._DECODED.clear()
    assert cursor_module.decode(text) == cursor
