"""Randomised sessions: whatever happens, every device converges to the server.

Several users on several teams create customers, work orders and notes (each
model with its own conflict policy), edit them (also from stale versions),
move and delete them, join and leave teams, and the feed is compacted (also
past the retention window), while their devices push, adopt the cursor each
push returns, and pull pages of random size at random moments. After a final
pull, each device must hold exactly the live objects its user may see, with
the server's current data.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from fieldwork.models import Customer, Note, WorkOrder
from fieldwork.services import team_member_add, team_member_remove
from sync.compaction import feed_compact
from tests.factories import TeamFactory, delete, mutation, update
from tests.helpers import wire_datetime

pytestmark = pytest.mark.django_db

CUSTOMER, ORDER, NOTE = "fieldwork.customer", "fieldwork.workorder", "fieldwork.note"
SEEDS = int(os.environ.get("CONVERGENCE_SEEDS", "10"))


class Device:
    """A client as docs/protocol.md describes one: a local store and a cursor."""

    def __init__(self, actor) -> None:
        self.actor = actor
        self.cursor: str | None = None
        self.state: dict[tuple[str, str], dict] = {}
        self.brought: set[tuple[str, str]] | None = None  # during an initial sync

    def pull_page(self, limit: int) -> bool:
        params = {"limit": limit, **({"cursor": self.cursor} if self.cursor else {})}
        response = self.actor.client.get("/api/v1/sync/pull/", params)
        if response.status_code == 410:  # resync_required: start over
            self.state, self.cursor = {}, None
            return True
        assert response.status_code == 200, response.content
        page = response.json()
        if self.cursor is None:
            self.brought = set()
        for change in page["changes"]:
            key = (change["model"], change["id"])
            if change["op"] == "upsert":
                self.state[key] = change["data"]
                if self.brought is not None:
                    self.brought.add(key)
            else:
                self.state.pop(key, None)
        self.cursor = page["cursor"]
        if not page["has_more"] and self.brought is not None:
            # An initial sync is the whole truth: drop what it did not bring
            # (docs/protocol.md, "Initial sync").
            self.state = {k: v for k, v in self.state.items() if k in self.brought}
            self.brought = None
        return page["has_more"]

    def pull_all(self) -> None:
        while self.pull_page(50):
            pass

    def push(self, *mutations: dict) -> None:
        body = self.actor.push(*mutations, **({"cursor": self.cursor} if self.cursor else {}))
        for sent, result in zip(mutations, body["results"], strict=True):
            key = (sent["model"], result["id"])
            if result["status"] == "rejected":
                continue
            if result["data"] is None:
                self.state.pop(key, None)
            else:
                self.state[key] = result["data"]
        if self.cursor:
            self.cursor = body["cursor"]  # documented as always safe to adopt


# The oracle below is written from the demo domain's own facts, independently of
# the sync layer's scope and encoding code (sync.feed, SyncedType.channels_of and
# encode), so that a bug there cannot cancel out in the comparison.

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


def wire_data(label: str, obj) -> dict[str, Any]:
    return {
        name: wire_value(getattr(obj, f"{name}_id" if name in REFERENCES else name))
        for name in WIRE_FIELDS[label]
    }


def server_view(user, member: dict) -> dict[tuple[str, str], dict]:
    """The live objects `user` may see: their own, and their teams' objects."""
    teams = {
        team_id for (user_id, team_id), joined in member.items() if joined and user_id == user.pk
    }
    return {
        (label, str(obj.pk)): wire_data(label, obj)
        for label, model in MODELS.items()
        for obj in model.objects.filter(deleted_at__isnull=True)
        if obj.owner_id == user.pk or obj.team_id in teams
    }


EDITS = {
    CUSTOMER: lambda rng, team: rng.choice(
        [{"name": f"n{rng.random():.6f}"}, {"phone": str(rng.randint(0, 999))}, {"team": team}]
    ),
    ORDER: lambda rng, team: rng.choice(
        [
            {"status": rng.choice(["open", "scheduled", "in_progress", "done", "cancelled"])},
            {"title": f"t{rng.random():.6f}"},
            {"team": team},
        ]
    ),
    NOTE: lambda rng, team: rng.choice(
        [{"body": f"b{rng.random():.6f}"}, {"pinned": rng.random() < 0.5}, {"team": team}]
    ),
}


def _new(rng, model: str, data: dict) -> dict:
    m = mutation(model, data=data)
    m["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return m


@pytest.mark.parametrize("seed", range(SEEDS))
def test_every_device_converges(make_actor, seed):
    rng = random.Random(seed)
    actors = [make_actor() for _ in range(3)]
    devices = [Device(a) for a in actors] + [Device(make_actor(user=actors[0].user))]
    teams = [TeamFactory() for _ in range(2)]
    member = {(a.user.pk, t.pk): False for a in actors for t in teams}

    for _ in range(120):
        device = rng.choice(devices)
        user = device.actor.user
        my_teams = [t for t in teams if member[(user.pk, t.pk)]]
        team = rng.choice([None, *my_teams])
        team_id = str(team.pk) if team else None
        visible = sorted(server_view(user, member))
        action = rng.random()
        if action < 0.22:
            customers = [i for m, i in visible if m == CUSTOMER]
            orders = [i for m, i in visible if m == ORDER]
            model = rng.choice([CUSTOMER, ORDER, NOTE])
            if model == ORDER and customers:
                data = {"customer": rng.choice(customers), "title": "visit", "team": team_id}
                if orders and rng.random() < 0.4:
                    # Deleting the earlier visit clears this reference (SET_NULL).
                    data["follow_up_of"] = rng.choice(orders)
            elif model == NOTE and orders:
                data = {"work_order": rng.choice(orders), "body": "note", "team": team_id}
            else:
                model, data = CUSTOMER, {"name": f"c{rng.random():.6f}", "team": team_id}
            device.push(_new(rng, model, data))
        elif action < 0.45 and visible:
            model, object_id = rng.choice(visible)
            obj = MODELS[model].objects.get(pk=object_id)
            base = max(1, obj.version - rng.choice([0, 0, 1, 2]))  # sometimes offline edits
            device.push(update(model, object_id, base, **EDITS[model](rng, team_id)))
        elif action < 0.53 and visible:
            model, object_id = rng.choice(visible)
            obj = MODELS[model].objects.get(pk=object_id)
            device.push(delete(model, object_id, max(1, obj.version - rng.choice([0, 1]))))
        elif action < 0.63:
            team = rng.choice(teams)
            if member[(user.pk, team.pk)]:
                team_member_remove(team=team, user=user)
            else:
                team_member_add(team=team, user=user)
            member[(user.pk, team.pk)] = not member[(user.pk, team.pk)]
        elif action < 0.66:
            feed_compact()
        elif action < 0.67:
            # Tombstones past the retention window go: lagging cursors get 410.
            feed_compact(now=timezone.now() + settings.SYNC_RETENTION + timedelta(days=1))
        else:
            rng.choice(devices).pull_page(rng.randint(1, 4))

    for device in devices:
        device.pull_all()
        assert device.state == server_view(device.actor.user, member), f"seed {seed}"
