"""The client's HTTP layer: retries, backoff with jitter, Retry-After, gzip."""

from __future__ import annotations

import gzip
import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from client import (
    ApiError,
    NetworkError,
    Redirected,
    RetryPolicy,
    SyncClient,
    UnexpectedResponse,
)
from client.http import Api

POLICY = RetryPolicy(attempts=4, base_delay=1.0, max_delay=8.0, max_retry_after=60.0)


def api(*answers: httpx.Response | Exception, seen: list | None = None) -> tuple[Api, list]:
    queue = list(answers)
    slept: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = Api(
        "https://sync.test",
        token="t",
        device_id="d",
        transport=httpx.MockTransport(handler),
        retry=POLICY,
        sleep=slept.append,
        rng=random.Random(1),
    )
    return client, slept


def error(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "detail": code}, headers=headers)


def test_5xx_and_network_errors_are_retried_with_growing_jittered_waits():
    client, slept = api(
        error(503, "error"),
        httpx.ConnectError("refused"),
        error(502, "error"),
        httpx.Response(200, json={"ok": True}),
    )
    assert client.request("GET", "/x").body == {"ok": True}
    assert len(slept) == 3
    for attempt, wait in enumerate(slept):
        assert 0 <= wait <= min(8.0, 2**attempt)  # full jitter under the exponential cap
    assert len(set(slept)) == 3  # jittered, not a fixed schedule
    assert client.stats.retries == 3 and client.stats.requests == 4


def test_it_gives_up_after_the_last_attempt():
    client, slept = api(*[httpx.ReadTimeout("slow")] * 4)
    with pytest.raises(NetworkError):
        client.request("GET", "/x")
    assert len(slept) == 3
    client, _ = api(*[error(500, "server_error")] * 4)
    with pytest.raises(ApiError) as caught:
        client.request("GET", "/x")
    assert caught.value.code == "server_error"


def test_429_waits_at_least_retry_after():
    client, slept = api(error(429, "throttled", **{"Retry-After": "7"}), httpx.Response(200))
    client.request("POST", "/x", json_body={})
    assert 7 <= slept[0] <= 7 + POLICY.base_delay
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    client, slept = api(error(429, "throttled", **{"Retry-After": later}), httpx.Response(200))
    client.request("GET", "/x")
    assert 28 <= slept[0] <= 31


def test_a_retry_after_too_long_to_sleep_through_goes_to_the_app():
    client, slept = api(error(429, "throttled", **{"Retry-After": "900"}))
    with pytest.raises(ApiError) as caught:
        client.request("POST", "/api/v1/auth/token/", json_body={})
    assert caught.value.code == "throttled" and caught.value.retry_after == 900
    assert slept == []


def test_other_4xx_are_not_retried_and_keep_the_error_body():
    body = {"code": "invalid", "detail": "Bad.", "errors": {"name": ["Required."]}}
    client, slept = api(httpx.Response(400, json=body))
    with pytest.raises(ApiError) as caught:
        client.request("POST", "/x", json_body={})
    assert (caught.value.status, caught.value.code, caught.value.errors) == (
        400,
        "invalid",
        {"name": ["Required."]},
    )
    assert slept == []


def test_a_call_can_have_its_own_timeout_and_retry_nothing_in_place():
    # A live pull: it waits longer than other calls, and a 429 (or a failure)
    # is for its caller to handle, not to sleep through.
    seen: list[httpx.Request] = []
    client, slept = api(
        error(429, "too_many_live_pulls", **{"Retry-After": "1"}),
        httpx.ConnectError("refused"),
        httpx.Response(200, json={}),
        seen=seen,
    )
    once = RetryPolicy(attempts=1)
    with pytest.raises(ApiError) as caught:
        client.request("GET", "/live", timeout=45.0, retry=once)
    assert caught.value.code == "too_many_live_pulls"
    with pytest.raises(NetworkError):
        client.request("GET", "/live", timeout=45.0, retry=once)
    assert slept == [] and client.stats.retries == 0
    assert seen[0].extensions["timeout"]["read"] == 45.0
    client.request("GET", "/x")  # other calls keep the client's own
    assert seen[2].extensions["timeout"]["read"] == 30.0


def test_a_proxy_error_page_is_still_an_error_with_a_code():
    client, _ = api(*[httpx.Response(502, text="<html>Bad gateway</html>")] * 4)
    with pytest.raises(ApiError) as caught:
        client.request("GET", "/x")
    assert caught.value.code == "error" and "502" in caught.value.detail


def test_gzip_is_asked_for_and_a_compressed_answer_is_decoded():
    payload = {"changes": [{"id": str(i)} for i in range(200)], "has_more": False}
    raw = json.dumps(payload).encode()
    seen: list[httpx.Request] = []
    client, _ = api(
        httpx.Response(
            200,
            content=gzip.compress(raw),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        ),
        httpx.Response(200, json=payload),  # a server that does not compress
        seen=seen,
    )
    assert client.request("GET", "/pull").body == payload
    assert client.request("GET", "/pull").body == payload
    assert all(r.headers["Accept-Encoding"] == "gzip" for r in seen)
    assert client.stats.compressed_responses == 1
    assert client.stats.bytes_on_wire < client.stats.bytes_decoded


def test_the_token_and_device_headers():
    seen: list[httpx.Request] = []
    client, _ = api(httpx.Response(200), httpx.Response(200), seen=seen)
    client.request("GET", "/api/v1/sync/pull/", device=True)
    client.request("GET", "/api/v1/sync/models/")
    assert seen[0].headers["Authorization"] == "Token t"
    assert seen[0].headers["X-Device-Id"] == "d"
    assert "X-Device-Id" not in seen[1].headers


@dataclass
class Canned:
    """A real HTTP server on 127.0.0.1 giving one canned answer to every
    request: what a client meets when something other than the sync server
    answers, or the server is not configured the way the client is."""

    url: str
    status: int = 200
    body: Any = None  # JSON, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)  # "{host}", "{path}" filled in
    seen: list[tuple[str, str]] = field(default_factory=list)

    def answer(self, status: int, body: Any = None, **headers: str) -> None:
        self.status, self.body, self.headers = status, body, headers


@pytest.fixture
def canned() -> Iterator[Canned]:
    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.seen.append((self.command, self.path))
            content = b"" if state.body is None else json.dumps(state.body).encode()
            self.send_response(state.status)
            for name, value in state.headers.items():
                self.send_header(name, value.format(host=self.headers["Host"], path=self.path))
            if content:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Canned(f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def device(canned: Canned, directory: Path) -> SyncClient:
    client = SyncClient(directory, base_url=canned.url, retry=POLICY, sleep=lambda _: None)
    client.use_token("alice", "t")
    return client


def test_a_redirect_to_https_is_a_clear_error_naming_the_url_to_use(canned, tmp_path):
    # A production server (DEBUG off) reached over plain HTTP: Django's
    # SECURE_SSL_REDIRECT answers every call 301 to the https address.
    canned.answer(301, Location="https://{host}{path}")
    client = device(canned, tmp_path / "phone")
    with pytest.raises(Redirected) as caught:
        client.login("alice", "pw")
    login = f"{canned.url}/api/v1/auth/token/"
    https = canned.url.replace("http:", "https:")
    assert caught.value.status == 301
    assert caught.value.location == f"{https}/api/v1/auth/token/"
    message = str(caught.value)
    assert f"POST {login} redirects (301) to {https}/api/v1/auth/token/" in message
    assert "wants https" in message
    assert f"SYNC_URL={https} " in message
    assert canned.seen == [("POST", "/api/v1/auth/token/")]  # neither followed nor retried

    with pytest.raises(Redirected) as caught:
        client.sync()  # registers the device first: a POST that answers 301 too
    assert caught.value.suggested_url == https
    client.close()


@pytest.mark.parametrize(
    ("status", "body", "error", "said"),
    [
        (204, None, UnexpectedResponse, "answered 204, not 200."),
        (202, {"code": "queued", "detail": "Later."}, UnexpectedResponse, "(queued: Later.)"),
        (418, {"code": "teapot", "detail": "Short."}, ApiError, "answered 418 teapot: Short."),
    ],
)
def test_a_status_the_call_does_not_expect_is_a_clear_error(
    canned, tmp_path, status, body, error, said
):
    canned.answer(status, body)
    client = device(canned, tmp_path / "phone")
    with pytest.raises(error) as caught:
        client.refresh_models()
    message = str(caught.value)
    assert f"GET {canned.url}/api/v1/sync/models/" in message
    assert f"answered {status}" in message and said in message
    assert caught.value.status == status
    assert canned.seen == [("GET", "/api/v1/sync/models/")]  # not retried
    client.close()
