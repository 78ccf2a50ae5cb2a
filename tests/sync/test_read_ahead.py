"""A pull reads its page in the round trip of the horizon, for the channels
the caller had at its last pull (sync.engine.pull, `_read_ahead`). A guess
that no longer holds must never show a page of the wrong channels."""

from __future__ import annotations

import pytest

from fieldwork.services import team_member_add, team_member_remove
from tests.factories import customer, team_of

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def names(changes: list[dict]) -> list[str]:
    return sorted(c["data"]["name"] for c in changes if c["op"] == "upsert")


def test_a_sync_after_joining_a_team_reads_the_teams_objects_too(alice, bob):
    team = team_of(bob.user)
    bob.push(customer("Team's", team=str(team.pk)))
    alice.push(customer("Alice's"))
    assert names(alice.pull_all()[0]) == ["Alice's"]  # her channels: her own
    team_member_add(team=team, user=alice.user)
    assert names(alice.pull_all()[0]) == ["Alice's", "Team's"]  # a new initial sync


def test_a_sync_after_leaving_a_team_no_longer_shows_its_objects(alice, bob):
    team = team_of(alice.user, bob.user)
    bob.push(customer("Team's", team=str(team.pk)))
    alice.push(customer("Alice's"))
    assert names(alice.pull_all()[0]) == ["Alice's", "Team's"]
    team_member_remove(team=team, user=alice.user)
    assert names(alice.pull_all()[0]) == ["Alice's"]


def test_pages_after_the_first_come_right_with_the_guess(alice, bob):
    team = team_of(alice.user, bob.user)
    made = [customer(f"Team {i}", team=str(team.pk)) for i in range(5)]
    bob.push(*made)
    alice.push(*[customer(f"Own {i}") for i in range(5)])
    first, cursor = alice.pull_all(limit=3)
    assert len(first) == 10
    bob.push(customer("Later", team=str(team.pk)))
    later, _ = alice.pull_all(cursor=cursor, limit=3)
    assert names(later) == ["Later"]


def test_the_remembered_channels_stay_bounded(make_actor, monkeypatch):
    from sync.engine import pull as selectors

    monkeypatch.setattr(selectors, "CHANNELS_SEEN_MAX", 2)
    actors = [make_actor() for _ in range(5)]
    for i, actor in enumerate(actors):
        actor.push(customer(f"Customer {i}"))
        assert names(actor.pull_all()[0]) == [f"Customer {i}"]
        assert len(selectors._CHANNELS_SEEN) <= 2
    assert actors[-1].user.pk in selectors._CHANNELS_SEEN
