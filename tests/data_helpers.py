"""Service accounts and their clients for the back-office API tests."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from sync.accounts.services import (
    service_account_channels_set,
    service_account_create,
    token_issue,
)


def service_client(
    name: str = "erp",
    *,
    perms: tuple[str, ...] = ("view", "add", "change", "delete"),
    models: tuple[str, ...] = ("customer", "workorder", "note", "equipment"),
    channels: set[str] | None = None,
) -> tuple[Any, APIClient]:
    """A service account with these model permissions (on fieldwork models),
    restricted to `channels` if given, and a client sending its token."""
    account = service_account_create(username=name, restricted=channels is not None)
    codenames = [f"{p}_{m}" for p in perms for m in models]
    account.user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="fieldwork", codename__in=codenames)
    )
    if channels is not None:
        service_account_channels_set(account=account, channels=channels)
    _, secret = token_issue(user=account.user, name=f"{name} token")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}", HTTP_X_FORWARDED_PROTO="https")
    return account, client


def data_url(label: str, object_id: Any = None, suffix: str = "") -> str:
    url = f"/api/v1/data/{label}/"
    if object_id is not None:
        url += f"{object_id}/"
    return url + suffix
