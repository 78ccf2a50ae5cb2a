"""The client's exceptions: one per thing an app reacts to differently."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any


class ClientError(Exception):
    """Base of everything this package raises on purpose."""


class NetworkError(ClientError):
    """The server could not be reached, or kept failing, after every retry.

    Nothing local is lost: the outbox keeps its entries (and their mutation
    ids), so the next sync sends the same mutations again.
    """


class ApiError(ClientError):
    """The server answered with an error body `{"code", "detail", "errors"?}`."""

    def __init__(
        self, status: int, body: dict[str, Any], *, method: str = "", url: str = ""
    ) -> None:
        self.status = status
        self.body = body
        self.method = method
        self.url = url
        self.code: str = str(body.get("code") or "error")
        self.detail: str = str(body.get("detail") or f"HTTP {status}")
        self.errors: dict[str, list[str]] | None = body.get("errors")
        self.retry_after: float | None = None
        self.headers: Mapping[str, str] = {}  # the response's
        where = f"{method} {url} answered " if method and url else ""
        super().__init__(f"{where}{status} {self.code}: {self.detail}")


class UpgradeRequired(ApiError):
    """`426 upgrade_required`: this app version may no longer pull (docs/protocol.md,
    "Too old: drain first, then stop").

    Its pushes are still accepted, so `sync()` has pushed the outbox before
    the pull that raised this (`report` is that sync's report, with the push
    results); the local data stays readable. Show the upgrade message (with
    `upgrade_url` when there is one) and stop syncing until the app is
    upgraded: every pull will be refused the same way.
    """

    def __init__(
        self, status: int, body: dict[str, Any], *, method: str = "", url: str = ""
    ) -> None:
        super().__init__(status, body, method=method, url=url)
        self.minimum_version: str = str(body.get("minimum_version") or "")
        self.platform: str = str(body.get("platform") or "")
        self.upgrade_url: str | None = body.get("upgrade_url") or None
        self.report: Any = None  # the SyncReport of the sync that pushed first


class UnexpectedResponse(ClientError):
    """The server answered with a status this call does not expect: a 2xx
    other than the call's, or a redirect (`Redirected`). Not the sync server's
    protocol, so retrying will not help: the URL, or something answering in
    the server's place (a proxy, a captive portal, another server), needs a
    look. `code` and `detail` are the body's when it is JSON and has them.
    """

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        body: Any = None,
        *,
        expected: Collection[int] = (),
        message: str | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        self.expected = tuple(expected)
        self.code: str | None = None
        self.detail: str | None = None
        if isinstance(body, dict):
            self.code = str(body["code"]) if body.get("code") else None
            self.detail = str(body["detail"]) if body.get("detail") else None
        if message is None:
            wanted = " or ".join(str(s) for s in self.expected)
            message = f"{method} {url} answered {status}" + (f", not {wanted}" if wanted else "")
            said = ": ".join(part for part in (self.code, self.detail) if part)
            if said:
                message += f" ({said})"
            message += ". Is this the sync server's address, with nothing answering in its place?"
        super().__init__(message)


class Redirected(UnexpectedResponse):
    """The server answered a redirect (3xx), which the client does not follow.

    Usually a server that wants https (Django's SECURE_SSL_REDIRECT, on in
    production) called over http: every call answers `301` to the https
    address. The client's server URL has to change; following the redirect
    would only hide that, and the token has already gone out unencrypted.
    `location` is where it points (absolute), `suggested_url` the server URL to
    use instead when it can be told.
    """

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        location: str | None,
        suggested_url: str | None = None,
    ) -> None:
        self.location = location
        self.suggested_url = suggested_url
        if location is None:
            message = f"{method} {url} answered a redirect ({status}) without a Location."
        else:
            message = f"{method} {url} redirects ({status}) to {location}."
        if location is not None and url.startswith("http:") and location.startswith("https:"):
            message += " The server probably wants https (it redirects plain HTTP)."
        if suggested_url:
            message += f" Use SYNC_URL={suggested_url} (the client's server URL)."
        else:
            message += " Set SYNC_URL (the client's server URL) to the server's own address."
        super().__init__(method, url, status, message=message)


class NotLoggedIn(ClientError):
    """No token, or the server refused it (401): the user must log in again."""


class ValidationError(ClientError):
    """A local edit the server would reject; nothing was queued.

    `errors` maps each field (or `non_field_errors`) to messages, in the shape
    of a push's `rejected` result, so an app can show both the same way.
    """

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        listed = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        super().__init__(listed)


class NotFound(ClientError):
    """No such object in the local store (or it is deleted locally)."""


class StaleResolution(ClientError):
    """Resolving a conflict against a version the object has moved on from (412).

    The current state has been stored locally; `current` is it
    (`{"model", "id", "version", "data"}`). Show it and resolve again.
    """

    def __init__(self, current: dict[str, Any] | None) -> None:
        self.current = current
        super().__init__("The object changed since; look at its current state and resolve again.")


class ConflictSettled(ClientError):
    """The conflict was already resolved, superseded or dismissed (409)."""

    def __init__(self, status: str) -> None:
        self.status = status
        super().__init__(f"The conflict is already {status}.")


class UnsentChanges(ClientError):
    """Logging out with edits the server has not taken: they would be lost."""
