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

import os
import random
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from fieldwork.services import team_member_add, team_member_remove
from sync.engine.compaction import feed_compact
from sync.models import Conflict
from tests.factories import TeamFactory, delete, mutation, update
from tests.oracle import CUSTOMER, MODELS, NOTE, ORDER, server_view

pytestmark = pytest.mark.django_db

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
            if result["status"] == "conflict" and sent["op"] == "update" and result["data"]:
                # An edit of a field nobody else changed is never lost to a
                # conflict on another field: it is in the answer's state.
                at_stake = set(Conflict.objects.get(pk=result["conflict_id"]).fields)
                if Conflict.objects.get(pk=result["conflict_id"]).policy != "manual":
                    for field, value in sent["data"].items():
                        if field not in at_stake:
                            assert result["data"][field] == value, (field, sent, result)
            if result["data"] is None:
                self.state.pop(key, None)
            else:
                self.state[key] = result["data"]
        if self.cursor:
            self.cursor = body["cursor"]  # documented as always safe to adopt


EDITS = {
    CUSTOMER: lambda rng, team: rng.choice(
        [
            {"name": f"n{rng.random():.6f}"},
            {"phone": str(rng.randint(0, 999))},
            {"team": team},
            # Two fields at once: one may clash while the other goes through.
            {"name": f"n{rng.random():.6f}", "address": f"a{rng.random():.6f}"},
        ]
    ),
    ORDER: lambda rng, team: rng.choice(
        [
            {"status": rng.choice(["open", "scheduled", "in_progress", "done", "cancelled"])},
            {"title": f"t{rng.random():.6f}"},
            {"team": team},
            {"title": f"t{rng.random():.6f}", "priority": rng.choice(["low", "high"])},
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
