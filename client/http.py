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
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from client.errors import ApiError, NetworkError, Redirected, UnexpectedResponse, UpgradeRequired

# Worth another try: the request may not have been processed, or the server
# asked us to come back (429). Any other 4xx would fail the same way again.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "syncserver-reference-client/1"

# The handshake every sync call makes (docs/protocol.md, "App versions and
# schema changes"): which app, which schema, and how far behind its outbox is.
APP_VERSION = "X-App-Version"
SCHEMA_VERSION = "X-Schema-Version"
OUTBOX_PENDING = "X-Outbox-Pending"
OUTBOX_OLDEST_AGE = "X-Outbox-Oldest-Age"


def schema_header(schema: Mapping[str, int]) -> str:
    """`X-Schema-Version`'s value: `label=version`, comma-separated."""
    return ",".join(f"{label}={int(version)}" for label, version in sorted(schema.items()))


@dataclass(frozen=True)
class Deprecation:
    """What a response's `Deprecation` (RFC 9745), `Sunset` (RFC 8594) and
    `Link; rel="deprecation"` headers say: this app version is deprecated
    since `deprecated_at`, stops pulling at `sunset_at` (when known), and the
    new one is at `url` (when given). For a "please update by …" notice."""

    deprecated_at: datetime | None
    sunset_at: datetime | None = None
    url: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Deprecation | None:
        """None when the response carries no `Deprecation` header."""
        raw = headers.get("Deprecation")
        if raw is None:
            return None
        return cls(
            deprecated_at=_deprecated_at(raw),
            sunset_at=_http_date(headers.get("Sunset")),
            url=_deprecation_link(headers.get("Link")),
        )

    def wire(self) -> dict[str, str | None]:
        """As kept in the store (JSON)."""
        return {
            "deprecated_at": self.deprecated_at.isoformat() if self.deprecated_at else None,
            "sunset_at": self.sunset_at.isoformat() if self.sunset_at else None,
            "url": self.url,
        }

    @classmethod
    def from_wire(cls, kept: Mapping[str, str | None]) -> Deprecation:
        def when(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        return cls(when(kept.get("deprecated_at")), when(kept.get("sunset_at")), kept.get("url"))


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
    """A JSON client for one server, with the token and device headers set,
    and the handshake (app version, schema, outbox) on every call."""

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
        app_version: str | None = None,
        schema: Mapping[str, int] | None = None,
        outbox: Callable[[], tuple[int, int]] | None = None,
        link_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.token = token
        # For links elsewhere than the server (presigned S3 URLs): the network
        # by default; a test's own transport otherwise.
        self.link_transport = link_transport
        self.device_id = device_id
        # The handshake: the app's version, the schema it was built against
        # (None: the current one, no header), and `outbox()` → (pending edits,
        # age in seconds of the oldest), read afresh for every request.
        self.app_version = app_version
        self.schema = dict(schema) if schema is not None else None
        self.outbox = outbox
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
        links = getattr(self, "_links_http", None)
        if links is not None:
            links.close()

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
        headers: Mapping[str, str | None] | None = None,
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
        polling on a 429 rather than sleeping through it). `headers` add to
        (or, None, take away) the ones sent: a push of outbox entries queued
        under another schema says so in its own `X-Schema-Version`.
        A `426 upgrade_required` raises `UpgradeRequired`.
        """
        policy = retry or self.retry
        expected = (expect,) if isinstance(expect, int) else tuple(expect)
        sent: dict[str, str | None] = {**self.handshake(), **(headers or {})}
        if self.token:
            sent["Authorization"] = f"Token {self.token}"
        if device and self.device_id:
            sent["X-Device-Id"] = self.device_id
        content = None
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode()
            sent["Content-Type"] = "application/json"
        request_headers = {name: value for name, value in sent.items() if value is not None}
        attempt = 0
        while True:
            self.stats.requests += 1
            try:
                raw = self._http.request(
                    method,
                    path,
                    content=content,
                    params=params,
                    headers=request_headers,
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
            body = _error_body(raw)
            kind = UpgradeRequired if body.get("code") == "upgrade_required" else ApiError
            error = kind(raw.status_code, body, method=method, url=str(raw.request.url))
            error.headers = raw.headers
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

    def transfer(
        self, method: str, url: str, *, content: bytes | None = None, timeout: float = 120.0
    ) -> httpx.Response:
        """Bytes to or from a link the server gave (a presigned S3 URL, or the
        server's own signed part or file URL): no token is sent (the link is
        the credential, and S3 refuses a second one). Network errors and 5xx
        are retried like API calls; any other refusal is `ApiError`."""
        same_server = url.startswith(str(self._http.base_url).rstrip("/") + "/")
        http = self._http if same_server else self._links()
        attempt = 0
        while True:
            self.stats.requests += 1
            try:
                raw = http.request(
                    method,
                    url,
                    content=content,
                    headers={"User-Agent": USER_AGENT},
                    timeout=timeout,
                )
            except httpx.TransportError as exc:
                if attempt + 1 >= self.retry.attempts:
                    raise NetworkError(f"{method} {_no_query(url)}: {exc!r}") from exc
                self._wait(self.retry.backoff(attempt, self._rng))
                attempt += 1
                continue
            if raw.status_code < 300:
                return raw
            if raw.status_code in RETRY_STATUSES and attempt + 1 < self.retry.attempts:
                delay = self.retry.backoff(attempt, self._rng)
                asked = _retry_after(raw.headers.get("Retry-After"))
                if asked is not None and asked <= self.retry.max_retry_after:
                    delay = max(delay, asked)
                self._wait(delay)
                attempt += 1
                continue
            body = (
                _error_body(raw)
                if same_server
                else {"code": "storage_refused", "detail": raw.text[:300]}
            )
            raise ApiError(raw.status_code, body, method=method, url=_no_query(url))

    def _links(self) -> httpx.Client:
        links = getattr(self, "_links_http", None)
        if links is None:
            links = self._links_http = httpx.Client(
                transport=self.link_transport, follow_redirects=False
            )
        return links

    def handshake(self) -> dict[str, str]:
        """The headers that say which app, which schema, and how its outbox
        stands (docs/protocol.md, "The handshake"). The outbox ones go out
        even when it is empty (`0`): the server's "App versions" page counts
        the devices that have nothing left to push."""
        out: dict[str, str] = {}
        if self.app_version:
            out[APP_VERSION] = self.app_version
        if self.schema is not None:
            out[SCHEMA_VERSION] = schema_header(self.schema)
        if self.outbox is not None:
            pending, oldest_age = self.outbox()
            out[OUTBOX_PENDING] = str(pending)
            out[OUTBOX_OLDEST_AGE] = str(oldest_age if pending else 0)
        return out

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


def _no_query(url: str) -> str:
    """A link without its query: the signature stays out of messages and logs."""
    return url.split("?", 1)[0]


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


def _deprecated_at(value: str) -> datetime | None:
    """RFC 9745: `@` and a Unix time (`@1796083200`). Anything else (an
    earlier draft's HTTP date, or `true`) is taken as best it can be."""
    value = value.strip()
    if value.startswith("@"):
        try:
            return datetime.fromtimestamp(int(value[1:]), UTC)
        except (ValueError, OverflowError, OSError):
            return None
    return _http_date(value)


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_LINK = re.compile(r"<([^>]*)>([^,]*)")


def _deprecation_link(value: str | None) -> str | None:
    """The target of the `Link` whose `rel` is `deprecation`."""
    for target, params in _LINK.findall(value or ""):
        rels = re.search(r"""rel\s*=\s*"?([^";]+)"?""", params)
        if rels and "deprecation" in rels.group(1).split():
            return target
    return None


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
