"""A response, with the page or push results it carries, is freed as soon as
the server lets go of it, without waiting for the cyclic garbage collector
(`syncbase.middleware.ReleaseResponseMiddleware`). A worker that kept them for
the next full collection held tens of MB of old pull pages."""

from __future__ import annotations

import contextlib
import gc
import io
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from sync.accounts.services import token_issue
from tests.factories import customer

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def same_connection() -> Iterator[None]:
    """The test's transaction stays open through a request (as Django's test
    client keeps it)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """Only reference counting frees objects while a test runs."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _call(actor: Any, method: str, path: str, query: str = "", body: bytes = b"") -> Any:
    """One request through Django's WSGI handler, as gunicorn makes it: the
    response it returns is what the server iterates, sends and closes."""
    _, secret = token_issue(user=actor.user, name="release")
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "443",
        "HTTP_HOST": "testserver",
        "HTTP_X_FORWARDED_PROTO": "https",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Token {secret}",
        "HTTP_X_DEVICE_ID": str(actor.device_id),
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "https",
        "wsgi.errors": sys.stderr,
    }
    statuses: list[str] = []
    with same_connection():
        response = WSGIHandler()(environ, lambda status, headers, *_: statuses.append(status))
    assert statuses == ["200 OK"], b"".join(response)
    return response


def _sent_and_dropped(response: Any) -> tuple[dict[str, Any], weakref.ref]:
    """Sent and closed as the server does; a weak reference to the response
    (which holds the view's data and the rendered body) once dropped."""
    body = orjson.loads(b"".join(response))
    with same_connection():
        response.close()
    ref = weakref.ref(response)
    del response
    return body, ref


def test_a_pull_page_is_freed_once_sent(alice, no_cyclic_gc):
    alice.push(*(customer(f"c{i}") for i in range(5)))
    body, response = _sent_and_dropped(_call(alice, "GET", "/api/v1/sync/pull/"))
    assert len(body["changes"]) == 5
    assert response() is None


def test_push_results_are_freed_once_sent(alice, no_cyclic_gc):
    payload = orjson.dumps({"mutations": [customer("c")]})
    body, response = _sent_and_dropped(_call(alice, "POST", "/api/v1/sync/push/", body=payload))
    assert [r["status"] for r in body["results"]] == ["applied"]
    assert response() is None
