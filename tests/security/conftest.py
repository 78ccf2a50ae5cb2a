"""Shared state for the OWASP tests: objects, conflicts and staff clients."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from tests.conftest import Actor
from tests.factories import customer, update

CUSTOMER = "fieldwork.customer"


def raise_conflict(actor: Actor, name: str = "Acme") -> tuple[dict[str, Any], dict[str, Any]]:
    """An open conflict of `actor` on a new customer; returns (customer, result)."""
    c = customer(name, phone="1")
    actor.push_one(c)
    actor.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    result = actor.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    assert result["status"] == "conflict", result
    return c, result


def session_client(user: Any) -> Client:
    """A browser session of `user` (the admin's way in), over HTTPS."""
    client = Client(HTTP_X_FORWARDED_PROTO="https")
    client.force_login(user)
    return client


@pytest.fixture
def staff_user_with() -> Any:
    """Staff (is_staff) holding exactly the given permission codenames."""

    def make(*codenames: str, username: str = "clerk") -> Any:
        user = get_user_model().objects.create_user(
            username, password="clerk-pass-1234", is_staff=True
        )
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        return user

    return make
