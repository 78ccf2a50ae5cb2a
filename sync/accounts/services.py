"""Issuing and revoking API tokens; service accounts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from sync.channels import user_channels
from sync.engine.grants import channel_grant, channel_revoke
from sync.models import ServiceAccount, Token
from syncbase.conf import sync_settings


def token_issue(
    *,
    user: Any,
    name: str = "",
    ttl: dt.timedelta | None = None,
    sliding: bool = False,
    created_by: Any = None,
) -> tuple[Token, str]:
    """A new token for `user`; returns it and its secret, which is not stored
    (only its digest is) and cannot be shown again."""
    return Token.objects.create(
        user,
        expiry=ttl,
        name=name[:100],
        sliding=sliding,
        created_by=created_by,
    )


def token_login(*, user: Any, request: HttpRequest | None = None) -> str:
    """A login's token (a device signing in): expires after AUTH_TOKEN_TTL
    without use. A user keeps at most AUTH_TOKENS_PER_USER login tokens; the
    least recently used go first.

    It is a login like the admin's: `user_logged_in` records it (last_login)
    and clears the account's failed attempts (django-axes)."""
    if request is not None:
        user_logged_in.send(sender=user.__class__, request=request, user=user)
    with transaction.atomic():
        _, secret = token_issue(
            user=user, name="login", ttl=sync_settings.AUTH_TOKEN_TTL, sliding=True
        )
        logins = Token.objects.filter(user=user, sliding=True).order_by("-last_used_at", "-created")
        extra = list(logins.values_list("pk", flat=True)[sync_settings.AUTH_TOKENS_PER_USER :])
        if extra:
            Token.objects.filter(pk__in=extra).delete()
    return secret


def token_revoke(*, token: Token) -> None:
    """Revoked tokens are deleted: nothing can authenticate with them again."""
    token.delete()


def token_logout(*, token: Token, everywhere: bool = False) -> int:
    """Log out: revoke the token used (a device signing out), or every token
    of its user (`everywhere`: a lost phone, a changed password). Returns how
    many were revoked."""
    tokens = (
        Token.objects.filter(user_id=token.user_id)
        if everywhere
        else Token.objects.filter(pk=token.pk)
    )
    revoked, _ = tokens.delete()
    return revoked


def tokens_purge(*, older_than: dt.timedelta = dt.timedelta(days=30)) -> int:
    """Delete tokens that expired more than `older_than` ago (periodic)."""
    deleted, _ = Token.objects.filter(expiry__lt=timezone.now() - older_than).delete()
    return deleted


def service_account_create(
    *, username: str, description: str = "", restricted: bool = False
) -> ServiceAccount:
    with transaction.atomic():
        user = get_user_model().objects.create_user(username=username)
        user.set_unusable_password()  # it authenticates with tokens only
        user.save(update_fields=["password"])
        return ServiceAccount.objects.create(
            user=user, description=description, restricted=restricted
        )


def service_account_channels_set(*, account: ServiceAccount, channels: set[str]) -> None:
    """Grant exactly `channels` to a restricted account (through the grant
    service, so its `since` listing backfills or deletes like a device's pull)."""
    own = {f"user:{account.user_id}"}
    current = user_channels(account.user_id) - own
    for channel in sorted(channels - current - own):
        channel_grant(user=account.user, channel=channel)
    for channel in sorted(current - channels):
        channel_revoke(user=account.user, channel=channel)
