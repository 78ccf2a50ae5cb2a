"""Randomised sessions: whatever happens, every device converges to the server.

Several users on several teams create, edit (also from stale versions), move
and delete objects, join and leave teams, and the feed is compacted (also
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

from fieldwork.models import Customer
from fieldwork.services import team_member_add, team_member_remove
from sync import feed, registry
from sync.compaction import feed_compact
from tests.factories import TeamFactory, customer, delete, update

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"
SEEDS = int(os.environ.get("CONVERGENCE_SEEDS", "10"))


class Device:
    """A client as docs/protocol.md describes one: a local store and a cursor."""

    def __init__(self, actor) -> None:
        self.actor = actor
        self.cursor: str | None = None
        self.state: dict[str, dict] = {}
        self.brought: set[str] | None = None  # during an initial sync

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
            if change["op"] == "upsert":
                self.state[change["id"]] = change["data"]
                if self.brought is not None:
                    self.brought.add(change["id"])
            else:
                self.state.pop(change["id"], None)
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
        for result in body["results"]:
            if result["status"] == "rejected":
                continue
            if result["data"] is None:
                self.state.pop(result["id"], None)
            else:
                self.state[result["id"]] = result["data"]
        if self.cursor:
            self.cursor = body["cursor"]  # documented as always safe to adopt


def server_view(user) -> dict[str, dict]:
    stype = registry.get(CUSTOMER)
    channels = feed.user_channels(user.pk)
    return {
        str(obj.pk): stype.encode(obj.__dict__)
        for obj in Customer.objects.filter(deleted_at__isnull=True)
        if stype.channels_of(obj.__dict__) & channels
    }


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
        visible = sorted(server_view(user))
        action = rng.random()
        if action < 0.22:
            team = rng.choice([None, *my_teams])
            m = customer(f"c{rng.random():.6f}", team=str(team.pk) if team else None)
            m["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            device.push(m)
        elif action < 0.45 and visible:
            obj = Customer.objects.get(pk=rng.choice(visible))
            team = rng.choice([None, *my_teams])
            change = rng.choice(
                [
                    {"name": f"n{rng.random():.6f}"},
                    {"phone": str(rng.randint(0, 999))},
                    {"team": str(team.pk) if team else None},
                ]
            )
            base = max(1, obj.version - rng.choice([0, 0, 1, 2]))  # sometimes offline edits
            device.push(update(CUSTOMER, str(obj.pk), base, **change))
        elif action < 0.53 and visible:
            obj = Customer.objects.get(pk=rng.choice(visible))
            device.push(delete(CUSTOMER, str(obj.pk), max(1, obj.version - rng.choice([0, 1]))))
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
        assert device.state == server_view(device.actor.user), f"seed {seed}"
