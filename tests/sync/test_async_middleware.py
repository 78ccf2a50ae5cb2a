"""Under ASGI (live pulls) every middleware runs as a coroutine, and the chain
answers as it does under WSGI: the request log line, compression both ways,
JSON errors under /api/, static files."""

from __future__ import annotations

import gzip
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.contrib.staticfiles import finders
from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient

from sync.accounts.services import token_issue
from tests.factories import UserFactory, customer
from tests.helpers import assert_error, same_page

pytestmark = pytest.mark.django_db

PULL = "/api/v1/sync/pull/"
TOKEN = "/api/v1/auth/token/"


def asgi(method: str, path: str, **kwargs: Any) -> Any:
    """One request through Django's ASGI handler (AsyncClient), from a sync test:
    thread-sensitive code (the views, the database) runs on this thread, in
    the test's transaction."""

    async def send() -> Any:
        return await getattr(AsyncClient(), method)(path, secure=True, **kwargs)

    return async_to_sync(send)()


class SyncOnlyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


def adapted_under_asgi(caplog) -> list[str]:
    """The middlewares Django adapts for ASGI, calling the rest of the chain
    through async_to_sync from a thread: with DEBUG it logs each."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        handler = ASGIHandler()
    # Once one middleware is sync, Django keeps every sync-capable one outside
    # it sync too: the outermost is then sync, in a thread for the whole request.
    outermost = handler._middleware_chain.__wrapped__  # inside the exception conversion
    adapted = [r.getMessage() for r in caplog.records if "adapted for middleware" in r.getMessage()]
    assert (adapted == []) == iscoroutinefunction(outermost), (adapted, outermost)
    return adapted


def test_under_asgi_no_middleware_is_adapted(settings, caplog):
    settings.DEBUG = True  # Django logs adaptations only then
    assert adapted_under_asgi(caplog) == []
    # What the assertion would catch:
    dummy = f"{__name__}.SyncOnlyMiddleware"
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, dummy]
    [adapted] = adapted_under_asgi(caplog)
    assert adapted.endswith(f"adapted for middleware {dummy}.")


def test_the_request_is_logged_once_with_its_id_status_and_duration(caplog):
    with caplog.at_level(logging.INFO):
        response = asgi("get", "/api/v1/nowhere/", headers={"X-Request-Id": "lb-7f3a.2"})
    assert response["X-Request-Id"] == "lb-7f3a.2"
    [line] = [r for r in caplog.records if r.name == "sync.request"]
    assert (line.method, line.path, line.status) == ("GET", "/api/v1/nowhere/", 404)
    assert line.request_id == "lb-7f3a.2"
    assert isinstance(line.duration_ms, float) and line.duration_ms > 0
    # The 404 is not logged a second time by Django's handler.
    assert [r for r in caplog.records if r.name == "django.request"] == []


def test_an_unknown_api_url_is_a_json_404():
    assert_error(asgi("get", "/api/v1/nowhere/"), 404, "not_found")


def test_responses_are_compressed(alice, monkeypatch):
    alice.push(*[customer(f"Customer {i}", address=f"{i} Main Street") for i in range(50)])
    plain = alice.client.get(PULL)
    # The second request falls in a later second, as it sometimes does in CI.
    later = time.time() + 1.5
    monkeypatch.setattr(time, "time", lambda: later)
    _, secret = token_issue(user=alice.user, name="asgi")
    packed = asgi(
        "get",
        PULL,
        headers={
            "Authorization": f"Token {secret}",
            "X-Device-Id": str(alice.device_id),
            "Accept-Encoding": "gzip",
        },
    )
    assert packed.status_code == 200
    assert packed["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in packed["Vary"]
    page = orjson.loads(gzip.decompress(packed.content))
    assert len(page["changes"]) == 50
    assert same_page(page, plain.json())


def test_a_gzip_request_body_is_decompressed_before_the_view_parses_it():
    user = UserFactory()
    body = orjson.dumps({"username": user.username, "password": uuid.uuid4().hex})
    response = asgi(
        "post",
        TOKEN,
        data=gzip.compress(body),
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )
    # Not parse_error: the view read the credentials, and they are wrong.
    assert_error(response, 400, "invalid_credentials")


# The production path: WhiteNoise lists the files once, at startup. Development's
# (autorefresh, DEBUG's default): each URL is looked up on disk.
@pytest.mark.parametrize("autorefresh", [False, True], ids=["listed", "autorefresh"])
def test_a_static_file_is_served(settings, autorefresh):
    # Tests run without collectstatic (no STATIC_ROOT): the apps' own files,
    # through the staticfiles finders.
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = autorefresh
    response = asgi("get", "/static/admin/css/base.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    served = b"".join(response.streaming_content)
    assert served == Path(finders.find("admin/css/base.css")).read_bytes()
