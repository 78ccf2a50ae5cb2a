"""Writing to the change feed and reading its positions."""

from __future__ import annotations

from django.db import connection
from django.db.models import Max

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
    return Change.objects.aggregate(m=Max("seq"))["m"] or 0


def purged_through() -> int:
    """The highest seq of a tombstone compaction has dropped (0 if none)."""
    return FeedState.objects.filter(pk=1).values_list("purged_seq", flat=True).first() or 0


def last_grant_event(user_id: int) -> int:
    return GrantEvent.objects.filter(user_id=user_id).aggregate(m=Max("id"))["m"] or 0
