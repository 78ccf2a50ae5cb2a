from __future__ import annotations

from typing import Any

from django.db import transaction

from fieldwork.models import Team, TeamMembership
from sync.engine.grants import channel_grant, channel_revoke


def team_member_add(*, team: Team, user: Any) -> None:
    """Join a team: the user's devices receive the team's objects on their next pull."""
    with transaction.atomic():
        TeamMembership.objects.get_or_create(team=team, user=user)
        channel_grant(user=user, channel=team.channel)


def team_member_remove(*, team: Team, user: Any) -> None:
    """Leave a team: the team's objects arrive as deletes on the user's devices."""
    with transaction.atomic():
        TeamMembership.objects.filter(team=team, user=user).delete()
        channel_revoke(user=user, channel=team.channel)
