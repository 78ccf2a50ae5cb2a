"""Registers the demo models for sync, one conflict policy each to show them off."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sync
from fieldwork.models import Customer, Equipment, Note, WorkOrder
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
        "photo",
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


# Equipment's schema history: apps built against versions 1 to 3 are still in
# the field (docs/protocol.md, "App versions and schema changes").


def split_location(location: object) -> dict[str, str]:
    """Version 1-2's `location` ("North wing, boiler room") as version 3's
    `building` and `room`: the building is what comes before the first comma."""
    text = location if isinstance(location, str) else ""
    building, _, room = text.partition(",")
    return {"building": building.strip(), "room": room.strip()}


def join_location(parts: Mapping[str, Any]) -> str:
    """`building` and `room` as version 1-2's `location`."""
    return ", ".join(p for p in (parts.get("building"), parts.get("room")) if p)


KIND_WORDS = [
    ("heat pump", "heat_pump"),
    ("boiler", "boiler"),
    ("air con", "air_conditioner"),
    ("water heater", "water_heater"),
]


def kind_from_name(payload: Mapping[str, Any]) -> str:
    """Version 4's required `kind`, for a create from an older app: what its name says."""
    name = str(payload.get("name") or "").lower()
    return next((kind for word, kind in KIND_WORDS if word in name), "other")


sync.register(
    Equipment,
    fields=[
        "customer",
        "name",
        "serial_number",
        "building",
        "room",
        "kind",
        "installed_on",
        "team",
    ],
    scope=SCOPE,
    policy="merge",
    history=[
        sync.Renamed(2, "serial", "serial_number"),
        sync.Split(
            3, "location", into=("building", "room"), split=split_location, join=join_location
        ),
        sync.Added(4, "kind", default=kind_from_name),
    ],
)
