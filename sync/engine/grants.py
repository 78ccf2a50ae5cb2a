"""Who belongs to which channel: grants and revocations, and the wake-up of
the user whose channels changed."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from sync.channels import own_channel
from sync.engine import feed
from sync.models import ChannelGrant, GrantEvent
from sync.notify.wakeups import wakeup_record

logger = logging.getLogger(__name__)


# --- channels ------------------------------------------------------------------------


def channel_grant(*, user: Any, channel: str) -> bool:
    """Add `user` to `channel`; their next pull brings the channel's existing objects."""
    with transaction.atomic():
        _, created = ChannelGrant.objects.get_or_create(user_id=user.pk, channel=channel)
        if created:
            feed.lock_grants()  # grant events are numbered in commit order
            GrantEvent.objects.create(user_id=user.pk, channel=channel, granted=True)
            _wake_user(user)  # their devices have the channel's objects to pull
    return created


def channel_revoke(*, user: Any, channel: str) -> bool:
    """Remove `user` from `channel`; their next pull deletes what they no longer see."""
    with transaction.atomic():
        deleted, _ = ChannelGrant.objects.filter(user_id=user.pk, channel=channel).delete()
        if deleted:
            feed.lock_grants()
            GrantEvent.objects.create(user_id=user.pk, channel=channel, granted=False)
            _wake_user(user)  # their devices have deletes to pull
    return bool(deleted)


def _wake_user(user: Any) -> None:
    wakeup_record(channels=[own_channel(user.pk)], origin_device_id=None, seq=feed.head())
