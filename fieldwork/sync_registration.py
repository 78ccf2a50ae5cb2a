"""Registers the demo models for sync, one conflict policy each to show them off."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sync
from fieldwork.models import Customer, Note, WorkOrder
from sync.merge import Resolution

SCOPE = {"user": "owner", "team": "team"}

# How far along a work order is; when two people move it concurrently, the one
# further along wins (a technician marking it done beats a dispatcher scheduling it).
STATUS_RANK = {"open": 0, "scheduled": 1, "in_progress": 2, "done": 3, "cancelled": 4}


def resolve_work_order(
    base: Mapping[str, Any] | None,
    server: Mapping[str, Any],
    client: Mapping[str, Any],
    fields: list[str],
) -> Resolution:
    if fields != ["status"]:
        return Resolution(needs_person=True)
    winner = max(server["status"], client["status"], key=STATUS_RANK.__getitem__)
    return Resolution(values={"status": winner})


sync.register(
    Customer,
    fields=["name", "email", "phone", "address", "team"],
    scope=SCOPE,
    policy="merge",
)
sync.register(
    WorkOrder,
    fields=[
        "customer",
        "title",
        "description",
        "status",
        "priority",
        "scheduled_for",
        "due_at",
        "estimated_hours",
        "follow_up_of",
        "team",
    ],
    scope=SCOPE,
    resolver=resolve_work_order,
)
sync.register(
    Note,
    fields=["work_order", "body", "pinned", "team"],
    scope=SCOPE,
    policy="client_wins",
)
