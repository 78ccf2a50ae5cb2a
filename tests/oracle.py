"""What a user may see, computed from the demo domain's own facts.

Written independently of the sync layer's scope and encoding code (sync.engine.feed,
SyncedType.channels_of and encode), so that a bug there cannot cancel out when
a test compares a device's store with it (tests/CONVENTIONS: an oracle that
calls the code under test catches nothing). Used by the in-process
convergence test and by the end-to-end tests over HTTP.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from django.db.models import Q

from fieldwork.models import Customer, Note, WorkOrder
from tests.helpers import wire_datetime

CUSTOMER, ORDER, NOTE = "fieldwork.customer", "fieldwork.workorder", "fieldwork.note"
MODELS = {CUSTOMER: Customer, ORDER: WorkOrder, NOTE: Note}
# The wire fields of each model (fieldwork/sync_registration.py), plus the system
# fields every synced model carries.
SYSTEM_FIELDS = ["owner", "created_at", "updated_at"]
WIRE_FIELDS = {
    CUSTOMER: ["name", "email", "phone", "address", "team", *SYSTEM_FIELDS],
    ORDER: [
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
        *SYSTEM_FIELDS,
    ],
    NOTE: ["work_order", "body", "pinned", "team", *SYSTEM_FIELDS],
}
# Foreign keys travel as the referenced id.
REFERENCES = {"owner", "team", "customer", "work_order", "follow_up_of"}


def wire_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return wire_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value  # None, str, int, float and bool are JSON as they are


def wire_data(label: str, obj: Any) -> dict[str, Any]:
    """An object (or a history row of one) as the wire carries it."""
    return {
        name: wire_value(getattr(obj, f"{name}_id" if name in REFERENCES else name))
        for name in WIRE_FIELDS[label]
    }


Member = Mapping[tuple[Any, Any], bool]  # (user id, team id) → a member, as the test made them


def server_state(user: Any, member: Member) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
    """The live objects `user` may see (their own and their teams'), with versions."""
    teams = {
        team_id for (user_id, team_id), joined in member.items() if joined and user_id == user.pk
    }
    return {
        (label, str(obj.pk)): (obj.version, wire_data(label, obj))
        for label, model in MODELS.items()
        for obj in model.objects.filter(
            Q(owner_id=user.pk) | Q(team_id__in=teams), deleted_at__isnull=True
        )
    }


def server_view(user: Any, member: Member) -> dict[tuple[str, str], dict[str, Any]]:
    """The live objects `user` may see, as the wire carries them."""
    return {key: data for key, (_, data) in server_state(user, member).items()}
