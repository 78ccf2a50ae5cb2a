"""Token authentication for every API caller: device users and service accounts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.utils import timezone
from knox.auth import TokenAuthentication as KnoxAuthentication
from rest_framework import exceptions

from .models import Token

# last_used_at (and a sliding expiry) is written at most this often per token,
# so authentication stays a read on the hot paths.
TOUCH_EVERY = dt.timedelta(minutes=5)


class TokenAuthentication(KnoxAuthentication):
    """Knox's authentication, with three differences:

    - an expired token is refused as expired and kept (staff see it in the
      admin; a periodic task purges old ones) instead of being deleted on use;
    - no sweep of the user's other tokens on every request (knox does one
      query per request for it; the periodic purge does it once);
    - it records when a token was last used, and moves a login token's expiry
      forward while it is in use.
    """

    def authenticate_credentials(self, token: bytes) -> tuple[Any, Token]:
        # Our tokens are hexadecimal. Knox decodes whatever was sent as UTF-8
        # and looks its prefix up in the database: a byte that is not UTF-8
        # (headers are Latin-1) or a NUL (which PostgreSQL refuses in a query)
        # made that a 500. Neither can be a token.
        if not token.isascii() or b"\x00" in token:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(token)

    def _cleanup_token(self, auth_token: Any) -> bool:
        return False  # expiry is checked in validate_user; old tokens are purged by a task

    def validate_user(self, auth_token: Token) -> tuple[Any, Token]:
        if auth_token.expired:
            raise exceptions.AuthenticationFailed(
                "Token expired; log in again or ask for a new one."
            )
        user, token = super().validate_user(auth_token)
        now = timezone.now()
        if token.last_used_at is None or token.last_used_at < now - TOUCH_EVERY:
            values: dict[str, Any] = {"last_used_at": now}
            if token.sliding and token.expiry is not None:
                values["expiry"] = now + settings.AUTH_TOKEN_TTL
            Token.objects.filter(pk=token.pk).update(**values)
        return user, token

    def renew_token(self, auth_token: Any) -> None:
        return None  # sliding expiry is handled with last_used_at above
