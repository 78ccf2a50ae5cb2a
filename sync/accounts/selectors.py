"""What an API caller may see in the back-office data API."""

from __future__ import annotations

from typing import Any

from sync.engine.scope import Scope
from sync.models import ServiceAccount


def data_scope(user: Any) -> Scope:
    """An unrestricted service account (or a superuser) sees every object; a
    restricted one, and anybody else, what their channels hold."""
    if user.is_superuser:
        return Scope.everything(user)
    account = ServiceAccount.objects.filter(user_id=user.pk).only("restricted").first()
    if account is not None and not account.restricted:
        return Scope.everything(user)
    return Scope.of_user(user)


def is_service_account(user: Any) -> bool:
    return ServiceAccount.objects.filter(user_id=user.pk).exists()
