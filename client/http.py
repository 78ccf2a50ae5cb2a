"""HTTP for the client: JSON bodies, gzip, and retries with backoff and jitter.

Every call the client makes is safe to repeat, which is what makes blind
retries correct here: a pull with the same cursor returns the same or newer
states, a push with the same `mutation_id`s returns the first results and
applies nothing twice, a device registration is an upsert, and resolving a
conflict twice answers `409 conflict_settled` the second time.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from client.errors import ApiError, NetworkError, Redirected, UnexpectedResponse

# Worth another try: the request may not have been processed, or the server
# asked us to come back (429). Any other 4xx would fail the same way again.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "syncserver-reference-client/1"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (AWS Architecture Blog, "Exponential
    Backoff And Jitter"): sleep a random time in [0, min(cap, base * 2**n)].

    Jitter matters for a fleet of phones: after an outage they all come back at
    once, and without it their retries would arrive in synchronised waves.
    """

    attempts: int = 6  # tries in all, the first included
    base_delay: float = 0.5  # seconds
    max_delay: float = 30.0
    # A Retry-After longer than this (an account lockout, say) is not slept
    # through: the error goes to the app, which can tell the user.
    max_retry_after: float = 120.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


@dataclass
class TransferStats:
    """What went over the wire, for the curious (the CLI's status, the demo)."""

    requests: int = 0
    retries: int = 0
    bytes_on_wire: int = 0  # response bodies as received (compressed or not)
    bytes_decoded: int = 0  # the same bodies once decompressed
    compressed_responses: int = 0


@dataclass
class Response:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class Api:
    """A JSON client for one server, with the token and device headers set."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        device_id: str | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.token = token
        self.device_id = device_id
        self.retry = retry or RetryPolicy()
        self.stats = TransferStats()
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            transport=transport,
            timeout=timeout,
            # A redirect is an error (`Redirected`), not followed: it means the
            # client's server URL is wrong (http for an https server, most
            # often), and following it would hide that while every call paid
            # two round trips and sent its token in the clear first.
            follow_redirects=False,
            headers={
                "Accept": "application/json",
                # Asked for explicitly: the server compresses only when told it
                # may. httpx undoes gzip by the response's Content-Encoding, so
                # a server that does not compress (yet) works just the same.
                "Accept-Encoding": "gzip",
                "User-Agent": USER_AGENT,
            },
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        device: bool = False,
        expect: int | Collection[int] = 200,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Response:
        """Send one request, retrying network errors, 5xx and 429.

        Returns the answer when its status is `expect` (one status or
        several); raises `ApiError` for 4xx and 5xx (after the retries for the
        retryable ones), `Redirected` for a 3xx, `UnexpectedResponse` for any
        other status, and `NetworkError` when the server could not be reached
        on any try.

        `timeout` (seconds) replaces the client's for this call: a live pull
        is answered only after its wait. `retry` replaces the retry policy for
        this call: `RetryPolicy(attempts=1)` retries nothing in place, for a
        caller that handles failures itself (`SyncClient.follow` falls back to
        polling on a 429 rather than sleeping through it).
        """
        policy = retry or self.retry
        expected = (expect,) if isinstance(expect, int) else tuple(expect)
        headers = {}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        if device and self.device_id:
            headers["X-Device-Id"] = self.device_id
        content = None
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            self.stats.requests += 1
            try:
                raw = self._http.request(
                    method,
                    path,
                    content=content,
                    params=params,
                    headers=headers,
                    timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
                )
            except httpx.TransportError as exc:
                # Connect refused, timeout, connection reset, or a response cut
                # off: the request may or may not have been processed. Both are
                # fine to repeat (module docstring).
                if attempt + 1 >= policy.attempts:
                    raise NetworkError(f"{method} {path}: {exc!r}") from exc
                self._wait(policy.backoff(attempt, self._rng))
                attempt += 1
                continue
            self._count(raw)
            if raw.status_code in expected:
                return Response(raw.status_code, _json(raw), raw.headers)
            if raw.status_code < 400:
                raise self._unexpected(method, raw, expected)
            error = ApiError(
                raw.status_code, _error_body(raw), method=method, url=str(raw.request.url)
            )
            error.retry_after = _retry_after(raw.headers.get("Retry-After"))
            if raw.status_code not in RETRY_STATUSES or attempt + 1 >= policy.attempts:
                raise error
            delay = policy.backoff(attempt, self._rng)
            if error.retry_after is not None:
                if error.retry_after > policy.max_retry_after:
                    raise error
                # Never earlier than asked; a little jitter on top so that the
                # devices told the same second do not all come back on it.
                delay = error.retry_after + self._rng.uniform(0, policy.base_delay)
            self._wait(delay)
            attempt += 1

    def _unexpected(
        self, method: str, raw: httpx.Response, expected: tuple[int, ...]
    ) -> UnexpectedResponse:
        """A status below 400 the call does not expect: a redirect, or a
        success of the wrong kind (204 with no body for a call that reads one)."""
        url = raw.request.url
        if not 300 <= raw.status_code < 400:
            return UnexpectedResponse(
                method, str(url), raw.status_code, _json(raw), expected=expected
            )
        location = raw.headers.get("Location")
        if location is None:
            return Redirected(method, str(url), raw.status_code, None)
        target = url.join(location)
        moved = _moved_base(self._http.base_url, url, target)
        return Redirected(method, str(url), raw.status_code, str(target), moved)

    def _wait(self, seconds: float) -> None:
        self.stats.retries += 1
        self._sleep(seconds)

    def _count(self, raw: httpx.Response) -> None:
        self.stats.bytes_on_wire += raw.num_bytes_downloaded
        self.stats.bytes_decoded += len(raw.content)
        if raw.headers.get("Content-Encoding", "identity") != "identity":
            self.stats.compressed_responses += 1


def _json(raw: httpx.Response) -> Any:
    if not raw.content:
        return None
    try:
        return raw.json()
    except ValueError:
        return None


def _moved_base(base: httpx.URL, url: httpx.URL, target: httpx.URL) -> str | None:
    """The server URL to use instead, when the redirect keeps the path (and so
    only moves the server: another scheme, host or port), else None."""
    if target.path != url.path or (target.scheme, target.netloc) == (url.scheme, url.netloc):
        return None
    moved = base.copy_with(scheme=target.scheme, netloc=target.netloc)
    return str(moved).rstrip("/")


def _error_body(raw: httpx.Response) -> dict[str, Any]:
    body = _json(raw)
    if isinstance(body, dict) and "code" in body:
        return body
    # Not our server's error shape: a proxy's HTML page, an empty 502.
    return {"code": "error", "detail": f"HTTP {raw.status_code} {raw.reason_phrase}"}


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` is either seconds or an HTTP date (RFC 9110, 10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
