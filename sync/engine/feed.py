"""Writing to the change feed and reading its positions, with no global lock.

The trap: a row's number is handed out at insert, but transactions commit in
any order, so a reader could see row 11 committed while row 10 is still in
flight, move its cursor past 10 and skip it forever.

The way out without serialising writers: every row records the id of the
transaction that wrote it (`pg_current_xact_id()`), and a row's position is
`(tx, seq)`. A reader only takes rows whose transaction is older than every
transaction still in flight (the *frontier*, from the reader's snapshot).
Those transactions have all ended, so no row will ever appear below the
frontier again: positions a reader hands out are final, whatever order
writers commit in. The price is that a committed row waits while an older
transaction is still running (writes are short: the feed rows are the last
thing a write transaction inserts).

SQLite serialises writers itself (BEGIN IMMEDIATE, see settings): there every
row's tx is 0, so positions are plain insert order and nothing is in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Max, Q

from sync.models import Change, ChannelGrant, FeedState, GrantEvent, Resync
from syncbase import bulk
from syncbase.reading import connection

Position = tuple[int, int]  # (tx, seq)
ORIGIN: Position = (0, 0)
# Where the database serialises writers, every transaction has ended.
NOTHING_IN_FLIGHT = 1 << 62

# Key of the transaction-scoped advisory lock that numbers grant events in
# commit order (any 64-bit constant of our own). Grants are rare.
GRANT_LOCK_KEY = 0x53594E43_47524E54  # "SYNCGRNT"


@dataclass(frozen=True)
class Written:
    """Where one transaction's rows went: all of them at `tx`, seq first..last."""

    tx: int
    first: int
    last: int

    @property
    def start(self) -> Position:
        return (self.tx, self.first)

    @property
    def end(self) -> Position:
        return (self.tx, self.last)


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def current_tx() -> int:
    """This transaction's id (assigning one if it has none yet)."""
    if not _postgres():
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        return int(cursor.fetchone()[0])


# The oldest transaction still in flight, other than the caller's own, from
# the statement's snapshot alone (so a hot standby computes it too: it builds
# its snapshots from the primary's running transactions). Its xip lists the
# transactions in flight below its xmax; every id from xmax up is as good as
# in flight, except the caller's own. So: the oldest of xip; else, for a
# caller without an id (a request that pulls), xmax; else the first id from
# xmax below its own that is still in progress (pg_xact_status), or its own
# plus one when there is none (its rows are its to read). That range is
# looked through up to 10,000 ids (a test, or a command that writes and
# reads in one transaction, has few): past them the caller's own rows wait,
# as any other transaction's would. Ids are cluster-wide: a transaction in
# another database of the same cluster holds the feed back too
# (docs/scaling.md).
_HORIZON_SQL = """
SELECT
  COALESCE(
    (SELECT min(x::text::bigint) FROM pg_snapshot_xip(pg_current_snapshot()) AS x),
    (SELECT CASE
              WHEN s.own IS NULL THEN s.xmax
              WHEN s.own < s.xmax THEN s.xmax
              ELSE COALESCE(
                (SELECT min(x)
                   FROM generate_series(s.xmax, LEAST(s.own - 1, s.xmax + 9999)) AS x
                  WHERE pg_xact_status(x::text::xid8) = 'in progress'),
                LEAST(s.own, s.xmax + 10000) + 1)
            END
       FROM (SELECT pg_current_xact_id_if_assigned()::text::bigint AS own,
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax) AS s)
  ) AS frontier,
  pg_current_xact_id_if_assigned()::text::bigint,
  CASE WHEN pg_current_xact_id_if_assigned() IS NULL THEN NULL
       ELSE (SELECT max(seq) FROM sync_change) END,
  -- compaction's mark, read in the same round trip (see purged_through)
  (SELECT purged_tx FROM sync_feedstate WHERE id = 1),
  (SELECT purged_seq FROM sync_feedstate WHERE id = 1),
  -- the newest targeted re-sync (sync.models.Resync; sync.engine.versions)
  (SELECT max(id) FROM sync_resync)
"""

# A reader's grants, read with the horizon (same statement, same snapshot):
# its newest grant event, the channels granted to it now, and its grant events
# after a given one (ids and channels, in id order).
_GRANTS_SQL = """,
  (SELECT max(id) FROM sync_grantevent WHERE user_id = %(user)s),
  ARRAY(SELECT channel FROM sync_channelgrant WHERE user_id = %(user)s),
  ARRAY(SELECT id FROM sync_grantevent WHERE user_id = %(user)s AND id > %(after)s ORDER BY id),
  ARRAY(SELECT channel FROM sync_grantevent WHERE user_id = %(user)s AND id > %(after)s
        ORDER BY id)
"""


@dataclass(frozen=True)
class Grants:
    """A user's grants as one snapshot saw them: a grant or revoke committing
    meanwhile is in all of these or in none (then it comes as a new event
    next time, which backfills or deletes it); never in `channels` only, which
    would lose its backfill for good."""

    last_event: int  # the newest grant event (0: none)
    channels: frozenset[str]  # granted now (not the user's own channel)
    events: tuple[tuple[int, str], ...] = ()  # (id, channel) after the one asked for


@dataclass(frozen=True)
class Horizon:
    """What a reader may take from the feed right now.

    `frontier`: the oldest transaction id still in flight in the cluster,
    other than the reader's own: every row with a lower tx has ended for good.
    `own`: the reader's own transaction id, when it has one: a request that
    pulls runs in autocommit and has none, but a test (or a command) that
    writes and reads in one transaction reads its own rows, and may write more
    of them after, with the same tx and higher seqs.
    `purged`: compaction's mark (`purged_through()`) when the horizon was read.
    `resync`: the newest targeted re-sync's id then (0: none yet).
    """

    frontier: int
    own: int | None = None
    own_last_seq: int = 0
    purged: Position = ORIGIN
    resync: int = 0

    def settled(self) -> Q:
        """Rows whose transaction has ended for good (or is the reader's)."""
        return Q(tx__lt=self.frontier)

    def settled_sql(self) -> tuple[str, list[int]]:
        """`settled` as SQL on the feed's columns, with its parameters."""
        return "tx < %s", [self.frontier]

    def caught_up(self) -> Position:
        """The position of a reader that has every settled row."""
        if self.own is not None and self.frontier > self.own:
            return (self.own, self.own_last_seq)  # its own later rows still come
        return (self.frontier, 0)


def horizon() -> Horizon:
    """What a reader may take from the feed right now."""
    return _read_horizon(None, 0)[0]


def horizon_and_grants(user_id: int, *, events_after: int = 0) -> tuple[Horizon, Grants]:
    """The horizon, and the user's grants (with their events after
    `events_after`), read in the same round trip, from the same snapshot."""
    return _with_grants(*_read_horizon(user_id, events_after))


def _with_grants(found: Horizon, grants: Grants | None) -> tuple[Horizon, Grants]:
    if grants is None:  # always read when asked for; narrows the type
        raise RuntimeError("the horizon was read without the grants asked for")
    return found, grants


class SharedFrontier:
    """The frontier that `horizon_and_grants_sharing` read, as a later
    statement of the same transaction sees it (a setting local to the
    transaction): that statement then reads the rows a `Horizon` read just
    before it would let it read, without waiting for the horizon's answer."""

    setting = "sync.frontier"

    def settled_sql(self) -> tuple[str, list[int]]:
        return f"tx < current_setting('{self.setting}')::bigint", []


SHARED_FRONTIER = SharedFrontier()


def horizon_and_grants_sharing(user_id: int, events_after: int) -> tuple[str, dict[str, int]]:
    """`horizon_and_grants` as a statement (PostgreSQL) that also shares its
    frontier with the later statements of its transaction (`SHARED_FRONTIER`),
    so that they can go to PostgreSQL in the same round trip. Its first column
    is the shared value; `horizon_and_grants_from` reads the rest."""
    sql = (
        f"SELECT set_config('{SharedFrontier.setting}', h.frontier::text, true), h.* "  # noqa: S608
        f"FROM ({_HORIZON_SQL}{_GRANTS_SQL}) AS h"
    )
    return sql, {"user": user_id, "after": events_after}


def horizon_and_grants_from(row: Sequence[Any]) -> tuple[Horizon, Grants]:
    """What a `horizon_and_grants_sharing` statement found."""
    return _with_grants(*_horizon_from(row[1:]))


def _read_horizon(grants_of: int | None, events_after: int) -> tuple[Horizon, Grants | None]:
    if not _postgres():
        # One writer at a time, every row at tx 0: a reader is caught up at the
        # last row written, and later rows come after it; or at compaction's
        # mark if it dropped the newest rows (old tombstones): a cursor placed
        # below it would get a 410 resync_required at every initial sync.
        purged = purged_through()
        resync = Resync.objects.aggregate(newest=Max("id"))["newest"] or 0
        return (
            Horizon(
                NOTHING_IN_FLIGHT,
                own=0,
                own_last_seq=max(head(), purged[1]),
                purged=purged,
                resync=resync,
            ),
            _grants(grants_of, events_after) if grants_of is not None else None,
        )
    sql, params = _HORIZON_SQL, {}
    if grants_of is not None:
        sql, params = sql + _GRANTS_SQL, {"user": grants_of, "after": events_after}
    with connection.cursor() as cursor:
        cursor.execute(sql, params or None)
        return _horizon_from(cursor.fetchone())


def _horizon_from(row: Sequence[Any]) -> tuple[Horizon, Grants | None]:
    frontier, own, last, purged_tx, purged_seq, resync, *more = row
    purged = (int(purged_tx), int(purged_seq)) if purged_tx is not None else ORIGIN
    grants = None
    if more:
        last_event, channels, ids, events = more
        grants = Grants(last_event or 0, frozenset(channels), tuple(zip(ids, events, strict=True)))
    if own is None:
        return Horizon(int(frontier), purged=purged, resync=resync or 0), grants
    last_seq = max(int(last or 0), purged[1])
    return Horizon(int(frontier), int(own), last_seq, purged, resync or 0), grants


def _grants(user_id: int, events_after: int) -> Grants:
    """`Grants` read with the ORM, where writers are serialised anyway."""
    events = GrantEvent.objects.filter(user_id=user_id, id__gt=events_after).order_by("id")
    return Grants(
        last_grant_event(user_id),
        frozenset(ChannelGrant.objects.filter(user_id=user_id).values_list("channel", flat=True)),
        tuple(events.values_list("id", "channel")),
    )


def after(position: Position) -> Q:
    """Rows after `position`. The plain `tx >= t` lets the (channel, tx, seq)
    index bound the scan; the OR alone would not."""
    tx, seq = position
    return Q(tx__gte=tx) & (Q(tx__gt=tx) | Q(seq__gt=seq))


def after_sql(position: Position) -> tuple[str, list[int]]:
    """`after` as SQL on the feed's columns, with its parameters."""
    tx, seq = position
    return "tx >= %s AND (tx > %s OR seq > %s)", [tx, tx, seq]


def upto(position: Position) -> Q:
    """Rows at or before `position`."""
    tx, seq = position
    return Q(tx__lte=tx) & (Q(tx__lt=tx) | Q(seq__lte=seq))


def before(position: Position) -> Q:
    """Rows strictly before `position`."""
    tx, seq = position
    return Q(tx__lte=tx) & (Q(tx__lt=tx) | Q(seq__lt=seq))


def append(rows: list[dict[str, Any]]) -> Written | None:
    """Insert this transaction's feed rows (each the values of a `Change`
    without its position: channel, model, object_id, version, op, created_at);
    no lock, no wait for other writers."""
    if not rows:
        return None
    if not _postgres():
        made = Change.objects.bulk_create([Change(**row) for row in rows])  # tx 0: serialised
        return Written(0, made[0].seq, made[-1].seq)
    # The transaction's id and the rows' numbers in one round trip, then the
    # rows in one COPY (syncbase.bulk). Numbers are handed out in increasing
    # order, so the rows keep their order within the transaction.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_current_xact_id()::text::bigint, "
            "ARRAY(SELECT nextval(pg_get_serial_sequence(%s, 'seq')) FROM generate_series(1, %s))",
            [Change._meta.db_table, len(rows)],
        )
        tx, seqs = cursor.fetchone()
    seqs.sort()
    bulk.insert_values(
        Change,
        [{**row, "tx": tx, "seq": seq} for row, seq in zip(rows, seqs, strict=True)],
        with_pk=True,
    )
    return Written(tx, seqs[0], seqs[-1])


def head() -> int:
    """The highest seq written (a mark for push messages, not a position)."""
    return Change.objects.aggregate(m=Max("seq"))["m"] or 0


def purged_through() -> Position:
    """The highest position of a tombstone compaction has dropped."""
    row = FeedState.objects.filter(pk=1).values_list("purged_tx", "purged_seq").first()
    return (int(row[0]), int(row[1])) if row else ORIGIN


def lock_grants() -> None:
    """Number grant events in commit order: a reader that saw event N has seen
    every earlier one. Held until the granting transaction ends."""
    if _postgres():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [GRANT_LOCK_KEY])


def last_grant_event(user_id: int) -> int:
    return GrantEvent.objects.filter(user_id=user_id).aggregate(m=Max("id"))["m"] or 0
