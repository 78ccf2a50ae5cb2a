"""Scope: who may see an object and where a write may place it."""

from __future__ import annotations

import dataclasses
import types
import uuid

import pytest

from sync import registry
from sync.channels import own_channel, user_channels
from sync.engine.grants import channel_grant, channel_revoke
from sync.engine.scope import FOREIGN, OUTSIDE, Scope
from tests.factories import UserFactory

CUSTOMER = registry.get("fieldwork.customer")
TEAM_A, TEAM_B = uuid.UUID(int=0xA), uuid.UUID(int=0xB)
AUTHOR = types.SimpleNamespace(pk=7)


def row(owner: int = 7, team: uuid.UUID | None = None, deleted: bool = False) -> dict:
    return {"owner_id": owner, "team_id": team, "deleted_at": "2026-01-01" if deleted else None}


def mine(*channels: str) -> Scope:
    return Scope.within(AUTHOR, {"user:7", *channels})


@pytest.mark.parametrize(
    ("scope", "obj", "sees"),
    [
        (mine(), row(owner=7), True),
        (mine(), row(owner=8), False),
        (mine(), row(owner=8, team=TEAM_A), False),
        (mine(f"team:{TEAM_A}"), row(owner=8, team=TEAM_A), True),
        (mine(f"team:{TEAM_A}"), row(owner=8, team=TEAM_B), False),
        (Scope.within(AUTHOR, set()), row(owner=7), False),
        (Scope.everything(AUTHOR), row(owner=8, team=TEAM_B), True),
    ],
)
def test_sees(scope, obj, sees):
    assert scope.sees(CUSTOMER, obj) is sees


@pytest.mark.parametrize(
    ("scope", "before", "after", "errors"),
    [
        # a create in the author's own channel, or a team they are in
        (mine(), None, row(owner=7), None),
        (mine(f"team:{TEAM_A}"), None, row(owner=7, team=TEAM_A), None),
        # a team the author is not in
        (mine(), None, row(owner=7, team=TEAM_A), {"team": [FOREIGN]}),
        # out of every channel of the author
        (mine(), None, row(owner=8), {"owner": [OUTSIDE], "team": [OUTSIDE]}),
        # a teammate's object keeps its owner's channel, which is not the author's
        (
            mine(f"team:{TEAM_A}"),
            row(owner=8, team=TEAM_A),
            row(owner=8, team=TEAM_A),
            None,
        ),
        # ... but may not leave the team the author shares with it
        (
            mine(f"team:{TEAM_A}"),
            row(owner=8, team=TEAM_A),
            row(owner=8, team=None),
            {"owner": [OUTSIDE], "team": [OUTSIDE]},
        ),
        # restoring a teammate's deleted object puts it back where it was
        (
            mine(f"team:{TEAM_A}"),
            row(owner=8, team=TEAM_A, deleted=True),
            row(owner=8, team=TEAM_A),
            None,
        ),
        # staff place objects anywhere
        (Scope.everything(AUTHOR), None, row(owner=8, team=TEAM_B), None),
    ],
)
def test_placement_errors(scope, before, after, errors):
    assert scope.placement_errors(CUSTOMER, before, after) == errors


def test_everything_sets_owner_unless_told_not_to():
    assert Scope.everything(AUTHOR).sets_owner is True
    assert Scope.everything(AUTHOR, sets_owner=False).sets_owner is False
    assert mine().sets_owner is False


def test_a_scope_without_a_user_cannot_write():
    with pytest.raises(ValueError, match="no user"):
        _ = Scope.within(None, set()).user_id


@pytest.mark.django_db
def test_user_channels_are_the_own_channel_and_the_grants():
    user = UserFactory()
    assert user_channels(user.pk) == {f"user:{user.pk}"} == {own_channel(user.pk)}
    channel_grant(user=user, channel="team:x")
    assert Scope.of_user(user).channels == {f"user:{user.pk}", "team:x"}
    channel_revoke(user=user, channel="team:x")
    assert Scope.of_user(user).channels == {f"user:{user.pk}"}


def test_a_scope_cannot_be_widened_once_made():
    scope = mine()
    with pytest.raises(dataclasses.FrozenInstanceError):
        scope.channels = None  # type: ignore[misc]
    assert scope.channels == {"user:7"}
