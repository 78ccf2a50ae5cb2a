"""Keeping the change feed small: a periodic service (see `sync.tasks`)."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from sync.models import Change, FeedState, MutationRecord
from syncbase.conf import sync_settings

# Rows are deleted in seq windows of this size, so no transaction holds many
# row locks or runs long next to live pushes.
WINDOW = 50_000


def feed_compact(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Keep only the newest change per object and channel, drop tombstones older
    than SYNC_RETENTION and stored push results older than SYNC_MUTATION_LOG_RETENTION.

    Dropping a superseded row is invisible to readers: the newer row of the same
    object and channel has a higher seq, so any cursor before the old row still
    reaches it. Dropping a tombstone is not, so the highest dropped position
    is recorded and pull answers older cursors with 410 resync_required.
    """
    now = now or timezone.now()
    cutoff = now - sync_settings.SYNC_RETENTION
    top = Change.objects.aggregate(m=Max("seq"))["m"] or 0
    superseded = tombstones = 0
    newer = Change.objects.filter(
        channel=OuterRef("channel"),
        model=OuterRef("model"),
        object_id=OuterRef("object_id"),
        seq__gt=OuterRef("seq"),
    )
    for start in range(0, top, WINDOW):
        window = Change.objects.filter(seq__gt=start, seq__lte=start + WINDOW)
        with transaction.atomic():
            superseded += window.filter(Exists(newer)).delete()[0]
    expired = Change.objects.filter(op=Change.Op.DELETE, created_at__lt=cutoff, seq__lte=top)
    with transaction.atomic():
        state, _ = FeedState.objects.select_for_update().get_or_create(pk=1)
        highest = expired.order_by("-tx", "-seq").values_list("tx", "seq").first()
        if highest is not None:
            tombstones = expired.delete()[0]
            # Feed positions are (tx, seq) pairs (sync.engine.feed); keep the larger.
            purged = max((state.purged_tx, state.purged_seq), (highest[0], highest[1]))
            state.purged_tx, state.purged_seq = purged
        # The furthest point reached, never moved back (by a clock stepping back
        # or a run with an earlier `now`): `sync_check` excuses the tombstones
        # missing from before compacted_at - SYNC_RETENTION.
        state.compacted_at = max(state.compacted_at or now, now)
        state.save()
    records, _ = MutationRecord.objects.filter(
        created_at__lt=now - sync_settings.SYNC_MUTATION_LOG_RETENTION
    ).delete()
    return {"superseded": superseded, "tombstones": tombstones, "mutation_records": records}
