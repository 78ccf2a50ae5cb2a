"""Devices running the reference client (client/), for the tests that drive the
server through it: in process (tests/client) or against gunicorn (tests/e2e).

`FaultyNetwork` wraps the real transport with the faults a phone meets: an
answer lost after the server processed the request, a canned error before it
reaches the server, and a hook that runs while a pull's answer is on its way
(to make local edits "during" the pull).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from client import RetryPolicy, SyncClient
from sync.accounts.services import token_issue

# Retries without waiting: the backoff itself is tested on its own.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


class FaultyNetwork(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.lose_push_answers = 0  # how many push answers to lose, once processed
        self.canned: list[httpx.Response | Exception] = []  # answered before the server
        self.after_pull: Callable[[], None] | None = None  # runs once, mid-pull
        self.on_pull_page: Callable[[dict[str, Any]], None] | None = None
        self.pushed: list[str] = []  # mutation ids of every push the server received
        self.requests: list[httpx.Request] = []
        # A request it says yes to is lost on the way (the connection drops).
        self.drop: Callable[[httpx.Request], bool] | None = None
        # Processed by the server, its answer lost; once per request it says yes to.
        self.lose_answer: Callable[[httpx.Request], bool] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.drop is not None and self.drop(request):
            raise httpx.WriteError("connection dropped while sending", request=request)
        if self.canned:
            canned = self.canned.pop(0)
            if isinstance(canned, Exception):
                raise canned
            return canned
        response = self.inner.handle_request(request)
        if self.lose_answer is not None and self.lose_answer(request):
            self.lose_answer = None
            response.close()
            raise httpx.ReadError("connection reset before the answer arrived", request=request)
        path = request.url.path
        if path.endswith("/sync/push/"):
            self.pushed += [m["mutation_id"] for m in json.loads(request.content)["mutations"]]
            if self.lose_push_answers:
                self.lose_push_answers -= 1
                response.close()
                raise httpx.ReadError("connection reset before the answer arrived", request=request)
        elif path.endswith("/sync/pull/"):
            if self.on_pull_page is not None and response.status_code == 200:
                response.read()
                self.on_pull_page(json.loads(response.content))
            if self.after_pull is not None:
                hook, self.after_pull = self.after_pull, None
                hook()
        return response


class Device:
    """One installation of the app: a state directory, a client, a network."""

    def __init__(
        self, directory: Path, user: Any, network: FaultyNetwork, base_url: str, **options: Any
    ) -> None:
        self.directory = directory
        self.user = user
        self.network = network
        self.base_url = base_url
        self.options = options
        self.client = self._open()
        self.client.use_token(user.username, token_issue(user=user, name=directory.name)[1])
        self.client.register_device(platform="android", name=directory.name)

    def _open(self) -> SyncClient:
        return SyncClient(
            self.directory,
            base_url=self.base_url,
            transport=self.network,
            retry=FAST_RETRY,
            sleep=lambda _: None,
            **self.options,
        )

    def restart(self) -> None:
        """The app is killed and started again: everything comes from disk."""
        self.client.close()
        self.client = self._open()

    def state(self) -> dict[tuple[str, str], tuple[int, dict[str, Any] | None]]:
        """The server copies this device holds: (model, id) → (version, data)."""
        return {key: (c.version, c.data) for key, c in self.client.store.server_copies().items()}
