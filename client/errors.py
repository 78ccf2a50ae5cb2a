"""The client's exceptions: one per thing an app reacts to differently."""

from __future__ import annotations

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

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.code: str = str(body.get("code") or "error")
        self.detail: str = str(body.get("detail") or f"HTTP {status}")
        self.errors: dict[str, list[str]] | None = body.get("errors")
        self.retry_after: float | None = None
        super().__init__(f"{status} {self.code}: {self.detail}")


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
