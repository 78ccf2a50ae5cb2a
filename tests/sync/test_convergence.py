"""Randomised sessions: whatever happens, every device converges to the server.

Several users on several teams create, edit, move and delete objects, join and
leave teams, and the feed is compacted, while their devices pull pages of
random size at random moments. After a final pull, each device must hold
exactly the live objects its user may see, with the server's current data.
"""

from __future__ import annotations

import os
import random
import uuid

import pytest

from fieldwork.models import Customer
from fieldwork.services import team_member_add, team_member_remove
from sync import feed, registry
from sync.compaction import feed_compact
from tests.factories import TeamFactory, customer, delete, update

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"


class Device:
    def __init__(self, actor) -> None:
        self.actor = actor
        self.cursor: str | None = None
        self.state: dict[str, dict] = {}

    def apply(self, page: dict) -> None:
        for change in page["changes"]:
            if change["op"] == "upsert":
                self.state[change["id"]] = change["data"]
            else:
                self.state.pop(change["id"], None)
        self.cursor = page["cursor"]

    def pull_page(self, limit: int) -> bool:
        params = {"limit": limit, **({"cursor": self.cursor} if self.cursor else {})}
        page = self.actor.pull(**params)
        self.apply(page)
        return page["has_more"]

    def pull_all(self) -> None:
        while self.pull_page(50):
            pass


def server_view(user) -> dict[str, dict]:
    stype = registry.get(CUSTOMER)
    channels = feed.user_channels(user.pk)
    return {
        str(obj.pk): stype.encode(obj.__dict__)
        for obj in Customer.objects.filter(deleted_at__isnull=True)
        if stype.channels_of(obj.__dict__) & channels
    }


@pytest.mark.parametrize("seed", range(int(os.environ.get("CONVERGENCE_SEEDS", "10"))))
def test_every_device_converges(make_actor, seed):
    rng = random.Random(seed)
    actors = [make_actor() for _ in range(3)]
    devices = [Device(a) for a in actors] + [Device(make_actor(user=actors[0].user))]
    teams = [TeamFactory() for _ in range(2)]
    member = {(a.user.pk, t.pk): False for a in actors for t in teams}

    def visible_ids(actor) -> list[str]:
        return sorted(server_view(actor.user))

    for _ in range(120):
        actor = rng.choice(actors)
        action = rng.random()
        my_teams = [t for t in teams if member[(actor.user.pk, t.pk)]]
        if action < 0.25:
            team = rng.choice([None, *my_teams])
            m = customer(f"c{rng.random():.6f}", team=str(team.pk) if team else None)
            m["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            actor.push(m)
        elif action < 0.45:
            ids = visible_ids(actor)
            if ids:
                obj = Customer.objects.get(pk=rng.choice(ids))
                change = rng.choice(
                    [
                        {"name": f"n{rng.random():.6f}"},
                        {"phone": str(rng.randint(0, 999))},
                        {"team": str(t.pk) if (t := rng.choice([None, *my_teams])) else None},
                    ]
                )
                actor.push(update(CUSTOMER, str(obj.pk), obj.version, **change))
        elif action < 0.55:
            ids = visible_ids(actor)
            if ids:
                obj = Customer.objects.get(pk=rng.choice(ids))
                actor.push(delete(CUSTOMER, str(obj.pk), obj.version))
        elif action < 0.65:
            team = rng.choice(teams)
            if member[(actor.user.pk, team.pk)]:
                team_member_remove(team=team, user=actor.user)
            else:
                team_member_add(team=team, user=actor.user)
            member[(actor.user.pk, team.pk)] = not member[(actor.user.pk, team.pk)]
        elif action < 0.68:
            feed_compact()
        else:
            rng.choice(devices).pull_page(rng.randint(1, 4))

    for device in devices:
        device.pull_all()
        assert device.state == server_view(device.actor.user), f"seed {seed}"
