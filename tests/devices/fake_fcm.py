"""A local stand-in for Google's OAuth token endpoint and FCM's HTTP v1 send
endpoint, so firebase-admin's real messaging code runs down to HTTP with no
network. firebase-admin 7 sends with `requests` through google-auth's
AuthorizedSession: it exchanges the service account's key for a token at the
key's own `token_uri` (served here), then POSTs each message to
`_MessagingService.FCM_URL` (pointed here before the first send)."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PROJECT = "sync-test-project"


def fcm_error(status: int, grpc_status: str, fcm_code: str | None = None) -> dict[str, Any]:
    details = (
        [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}]
        if fcm_code
        else []
    )
    return {
        "error": {
            "code": status,
            "status": grpc_status,
            "message": grpc_status.lower(),
            "details": details,
        }
    }


UNREGISTERED = (404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), {})
UNAVAILABLE = (503, fcm_error(503, "UNAVAILABLE", "UNAVAILABLE"), {})
QUOTA = (429, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), {})


def quota(retry_after: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return (429, QUOTA[1], {"Retry-After": retry_after})


INVALID_TOKEN = (
    400,
    {
        "error": {
            "code": 400,
            "status": "INVALID_ARGUMENT",
            "message": "The registration token is not a valid FCM registration token",
            "details": [
                {
                    "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                    "errorCode": "INVALID_ARGUMENT",
                }
            ],
        }
    },
    {},
)


class FakeFCM:
    """Records every message; answers per token from a script (default: success).

    `messages` has every send attempt, `delivered` only those answered 200.
    `hold(token)` keeps the next send to `token` waiting (the sender is then
    mid-request, for as long as a test needs) until `release()`, and then
    answers it UNAVAILABLE: a held message is never delivered.
    """

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.delivered: list[dict[str, Any]] = []
        self.held: list[dict[str, Any]] = []
        # (token, time.monotonic()) of each send as it arrived: bench/live.py.
        self.arrivals: list[tuple[str, float]] = []
        self.token_requests = 0
        self._holds: dict[str, threading.Event] = {}
        self._release = threading.Event()
        self.script: dict[str, deque[tuple[int, dict[str, Any], dict[str, str]]]] = defaultdict(
            deque
        )
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/token":
                    with fake._lock:
                        fake.token_requests += 1
                    self._answer(
                        200, {"access_token": "fake", "expires_in": 3600, "token_type": "Bearer"}
                    )
                    return
                if self.path != f"/v1/projects/{PROJECT}/messages:send":
                    self._answer(404, fcm_error(404, "NOT_FOUND"))
                    return
                message = json.loads(body)["message"]
                with fake._lock:
                    fake.messages.append(message)
                    fake.arrivals.append((message.get("token", ""), time.monotonic()))
                    arrived = fake._holds.pop(message.get("token", ""), None)
                    queued = fake.script.get(message.get("token", ""))
                    scripted = queued.popleft() if queued and arrived is None else None
                if arrived is not None:
                    with fake._lock:
                        fake.held.append(message)
                    arrived.set()
                    fake._release.wait(60)
                    self._answer(*UNAVAILABLE)
                elif scripted is None:
                    with fake._lock:
                        fake.delivered.append(message)
                    self._answer(200, {"name": f"projects/{PROJECT}/messages/{len(fake.messages)}"})
                else:
                    self._answer(*scripted)

            def _answer(
                self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        class Server(ThreadingHTTPServer):
            # send_each opens up to 500 connections at once.
            request_queue_size = 1024

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeFCM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, token: str, *responses: tuple[int, dict[str, Any], dict[str, str]]) -> None:
        """The next sends to `token` get these responses, in order; then success."""
        with self._lock:
            self.script[token].extend(responses)

    def sent_to(self, token: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m.get("token") == token]

    def delivered_to(self, token: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.delivered if m.get("token") == token]

    def hold(self, token: str) -> threading.Event:
        """Keep the next send to `token` waiting; the event is set once it arrives."""
        arrived = threading.Event()
        with self._lock:
            self._holds[token] = arrived
        return arrived

    def release(self) -> None:
        self._release.set()

    def service_account(self) -> dict[str, Any]:
        """A service-account key whose token exchange goes to this fake."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "fake-key-id",
            "private_key": pem,
            "client_email": f"push@{PROJECT}.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": f"{self.url}/token",
        }


def running() -> Iterator[FakeFCM]:
    fake = FakeFCM().start()
    try:
        yield fake
    finally:
        fake.stop()
