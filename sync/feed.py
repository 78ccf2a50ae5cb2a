"""Writing to the change feed and reading its positions."""

from __future__ import annotations

from django.db import connection
from django.db.models import BigIntegerField, Max, Subquery
from django.db.models.functions import Coalesce, Greatest

from .models import Change, FeedState, GrantEvent

# Key of the transaction-scoped advisory lock that serialises the tail of every
# transaction that appends to the feed (any 64-bit constant of our own).
FEED_LOCK_KEY = 0x53594E43_46454544  # "SYNCFEED"


def lock_tail() -> None:
    """Take the feed lock until this transaction ends.

    Sequence numbers are handed out at insert, but transactions commit in any
    order: without this lock a reader could see seq 11 committed while seq 10
    is still in flight, move its cursor to 11 and skip 10 forever. Holding one
    advisory lock from the first feed insert until commit makes seq order equal
    commit order, so everything below a visible seq is visible too. Callers take
    it as late as possible (the feed insert is the last write of a push), so it
    is held only for that insert and the commit. On SQLite the database-wide
    write lock (BEGIN IMMEDIATE, see settings) already serialises writers.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FEED_LOCK_KEY])


def append(rows: list[Change]) -> tuple[int, int] | None:
    """Append `rows` under the feed lock; returns the (first, last) seq written.

    Must run inside the writing transaction, after its other writes.
    """
    if not rows:
        return None
    lock_tail()
    Change.objects.bulk_create(rows)
    return rows[0].seq, rows[-1].seq


def head() -> int:
    """The feed position cursors move to once they have read everything.

    The highest seq present, but never below the purge mark: compaction may
    drop the newest rows (old tombstones), and a head moved back below
    `purged_seq` would start every initial sync behind the purge, to be
    answered 410 from its next page on, for as long as nothing new is written.
    One query: it runs for every pull page.
    """
    purged = FeedState.objects.filter(pk=1).values("purged_seq")[:1]
    top = Change.objects.aggregate(
        m=Greatest(
            Coalesce(Max("seq"), 0, output_field=BigIntegerField()),
            Coalesce(Subquery(purged), 0, output_field=BigIntegerField()),
        )
    )
    return top["m"] or 0


def purged_through() -> int:
    """The highest seq of a tombstone compaction has dropped (0 if none)."""
    return FeedState.objects.filter(pk=1).values_list("purged_seq", flat=True).first() or 0


def last_grant_event(user_id: int) -> int:
    return GrantEvent.objects.filter(user_id=user_id).aggregate(m=Max("id"))["m"] or 0
