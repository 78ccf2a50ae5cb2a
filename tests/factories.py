"""Factories for non-synced rows, and helpers that build synced data through the
real push path (synced objects are never created behind the service's back)."""

from __future__ import annotations

import uuid
from typing import Any

import factory
from django.contrib.auth import get_user_model

from fieldwork.models import Team


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-123456789")


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")


def mutation(
    model: str,
    op: str = "create",
    object_id: Any = None,
    data: dict[str, Any] | None = None,
    base_version: int | None = None,
    mutation_id: Any = None,
) -> dict[str, Any]:
    return {
        "mutation_id": str(mutation_id or uuid.uuid4()),
        "model": model,
        "op": op,
        "id": str(object_id or uuid.uuid4()),
        "base_version": base_version,
        "data": data if data is not None else ({} if op != "delete" else None),
    }


def customer(name: str = "Acme", **data: Any) -> dict[str, Any]:
    return mutation("fieldwork.customer", data={"name": name, **data})


def work_order(customer_id: str, title: str = "Fix boiler", **data: Any) -> dict[str, Any]:
    return mutation("fieldwork.workorder", data={"customer": customer_id, "title": title, **data})


def update(model: str, object_id: str, base_version: int, **data: Any) -> dict[str, Any]:
    return mutation(model, "update", object_id, data, base_version)


def delete(model: str, object_id: str, base_version: int) -> dict[str, Any]:
    return mutation(model, "delete", object_id, None, base_version)


def team_of(*users: Any) -> Team:
    """A team with these members (memberships granted through the service)."""
    from fieldwork.services import team_member_add

    team = TeamFactory()
    for user in users:
        team_member_add(team=team, user=user)
    return team
