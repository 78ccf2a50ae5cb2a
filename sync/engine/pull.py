"""Reads shared by views and tasks: the pull page, conflicts, model discovery."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from django.db import transaction
from django.db.models import Q

from sync import registry
from sync.channels import own_channel
from sync.engine import feed
from sync.engine.batch import Batch
from sync.engine.cursor import BadCursor, Cursor, decode, versions
from sync.engine.feed import ORIGIN, Position
from sync.engine.scope import Scope
from sync.engine.versions import CURRENT, AppSchema, refetch
from sync.models import Change
from sync.registry import SyncedType
from syncbase import generic_plan, memo, reading
from syncbase.conf import sync_settings
from syncbase.errors import SyncError
from syncbase.reading import connection
from syncbase.renderers import render

# `remaining` is a progress-bar estimate: it counts up to this many feed rows
# exactly, and beyond that takes PostgreSQL's estimate of the rest. Counting a
# 100,000-row channel took 20-37 ms on the first page of every initial sync,
# counting 10,000 of them still 3-7 ms; 1,000 take a fraction of a millisecond.
REMAINING_EXACT = 1_000
# ...and never says more than this.
REMAINING_COUNT_CAP = 100_000


@dataclass
class PullPage:
    # Each change rendered once (its size counts against the page's byte
    # budget), and embedded in the response body as it is.
    changes: list[bytes] = field(default_factory=list)
    cursor: str = ""
    has_more: bool = False
    remaining: int = 0
    # The channels the page was read for (None: every object), for a live
    # pull to wait on; not part of the body.
    channels: frozenset[str] | None = None

    def body(self) -> dict[str, Any]:
        """The response body (docs/protocol.md, "Pull"), for the orjson renderer."""
        return {
            "changes": [orjson.Fragment(change) for change in self.changes],
            "cursor": self.cursor,
            "has_more": self.has_more,
            "remaining": self.remaining,
        }

    def decoded(self) -> list[dict[str, Any]]:
        """The changes as Python values (for callers in process)."""
        return [orjson.loads(change) for change in self.changes]


def resolve_models(labels: str | None) -> list[SyncedType] | None:
    if labels is None:
        return None
    types: list[SyncedType] = []
    unknown: list[str] = []
    for label in (x.strip().lower() for x in labels.split(",")):
        if not label:
            continue
        stype = registry.get(label)
        if stype is None:
            unknown.append(label)
        elif stype not in types:
            types.append(stype)
    if unknown or not types:
        raise SyncError(
            "unknown_model",
            f"Unknown model(s): {', '.join(unknown) or '(none given)'}; "
            "see GET /api/v1/sync/models/.",
            errors={"models": [f"Unknown model {u!r}." for u in unknown] or ["Empty list."]},
        )
    return types


def _decode_for(token: str, user_id: int, models: tuple[str, ...] | None) -> Cursor:
    try:
        cur = decode(token)
    except BadCursor:
        raise SyncError(
            "bad_cursor",
            "This cursor was not issued by this server; start an initial sync without a cursor.",
        ) from None
    if cur.u != user_id:
        raise SyncError(
            "bad_cursor",
            "This cursor was issued to another account; start an initial sync without a cursor.",
        )
    if cur.f:
        # A cursor a push handed out before any pull: it starts an initial
        # sync, which is the same whatever the filter, so it takes this one.
        cur = cur.evolve(m=models, f=False)
    if cur.m != models:
        raise SyncError(
            "bad_cursor",
            "This cursor was issued for a different `models` filter; use the same filter "
            "or start an initial sync for the new one.",
        )
    if cur.t < time.time() - sync_settings.SYNC_RETENTION.total_seconds():
        raise _resync()
    return cur


def _versions_checked(
    cur: Cursor, schema: AppSchema, held: tuple[tuple[str, int], ...], labels: Any, newest: int
) -> Cursor:
    """The cursor, taking in the versions the app now speaks (`held`) and the
    newest targeted re-sync; `410 resync_required` naming the models the
    device must fetch again first, with the cursor to go on with after."""
    models = refetch(
        held=dict(cur.v) if cur.v is not None else None,
        seen=cur.e,
        newest=newest,
        schema=schema,
        labels=labels,
    )
    moved = cur.evolve(v=held, e=max(newest, cur.e or 0))
    if models:
        raise SyncError(
            "resync_required",
            f"Fetch {', '.join(models)} again (an initial sync of ?models={','.join(models)}), "
            "after pushing your outbox; then go on with `cursor`. Your other models keep "
            "their place.",
            status_code=410,
            extra={"models": models, "cursor": moved.encode()},
        )
    return moved


def _downgraded(changes: list[bytes], schema: AppSchema) -> list[bytes]:
    """The page's upserts of models the app speaks at an older version, in that version's shape."""
    out = []
    for change in changes:
        decoded = orjson.loads(change)
        stype = registry.get(decoded["model"])
        if stype is not None and decoded["data"] is not None and stype.label in schema.behind:
            decoded["data"] = schema.downgrade(stype, decoded["data"])
            change = render(decoded)
        out.append(change)
    return out


def _check_purged(cur: Cursor, purged: Position) -> None:
    # Compaction dropped tombstones up to `purged`: a client positioned before
    # them may have missed a delete. During an initial sync only deletes after
    # its start (i) matter; backfills only need live rows, which are never purged.
    if purged > max(cur.s, cur.i or ORIGIN):
        raise _resync()


def _with_backfills(cur: Cursor, events: list[tuple[int, str]], channels: set[str]) -> Cursor:
    """Channels granted since this cursor: backfill what they held up to the
    cursor (later changes come with the main feed). Channels revoked: go through
    everything they hold, as far as the feed goes at each page, which pull
    turns into deletes (unbounded, since the main feed no longer reads them)."""
    if not events:
        return cur
    changed = dict.fromkeys(c for _, c in events)
    # A channel with a backfill still pending starts over: it may have turned
    # from revoked to granted (or back) since, and its earlier rows must be
    # sent again in their new light.
    backfill = [entry for entry in cur.b if entry[0] not in changed]
    for channel in changed:
        backfill.append((channel, cur.s if channel in channels else None, ORIGIN))
    return cur.evolve(b=tuple(backfill), g=events[-1][0], r=None)


def _resync() -> SyncError:
    return SyncError(
        "resync_required",
        "This cursor is older than the server keeps deletions for; discard local data "
        "and start an initial sync without a cursor.",
        status_code=410,
    )


def _feed() -> Any:
    """The feed's rows, in the database reads go to now (syncbase.reading)."""
    return Change.objects.using(reading.alias())


class ReplicaBehind(Exception):
    """The replica has not replayed as far as the cursor: read on the primary."""


def pull_page_read(**kwargs: Any) -> PullPage:
    """`pull_page` on the replica READ_DATABASE names, if any. A cursor the
    replica has not replayed as far as (a push's cursor while it lags, or one
    the primary handed out) is read on the primary instead: a device never
    reads an older state than its cursor promises, and a lagging replica
    costs the primary only the pulls that are ahead of it."""
    replica = sync_settings.READ_DATABASE
    if replica:
        with reading.reading_from(replica):
            try:
                return pull_page(**kwargs, on_replica=True)
            except ReplicaBehind:
                pass
    return pull_page(**kwargs)


def _replica_has(cur: Cursor, horizon: feed.Horizon) -> bool:
    """Whether every row at or below the cursor's positions is settled on
    this replica (a backfill in progress: read on the primary)."""
    settled = (horizon.frontier, 0)
    return not cur.b and cur.s <= settled and (cur.i or ORIGIN) <= settled


def pull_page(
    *,
    user_id: int,
    cursor: str | None,
    limit: int,
    models: Sequence[SyncedType] | None,
    everything: bool = False,
    on_replica: bool = False,
    schema: AppSchema = CURRENT,
) -> PullPage:
    """One page of the change feed for a user's channels, or, with `everything`
    (an unrestricted service account), for every object. `schema`: the
    versions the caller's app speaks (what it does not know is left out,
    what it knows older is downgraded)."""
    labels = tuple(sorted(t.label for t in models)) if models is not None else None
    cur = _decode_for(cursor, user_id, labels) if cursor is not None else None
    held = versions(schema.absolute())
    read_labels = labels
    if schema.unknown():
        everyone = labels if labels is not None else (t.label for t in registry.all_types())
        read_labels = tuple(sorted(set(everyone) - schema.unknown()))
    # Only rows of transactions that have ended for good are read: positions
    # handed out below this horizon are final (see sync.engine.feed). The user's
    # grants come in the same round trip, from the same snapshot; and, when
    # the page will most likely come from the main feed, the page too.
    events_after = cur.g if cur is not None else 0
    ahead = _read_ahead(user_id, cur, events_after, read_labels, limit, everything)
    if ahead is not None:
        horizon, grants = ahead.horizon, ahead.grants
    else:
        horizon, grants = feed.horizon_and_grants(user_id, events_after=events_after)
    if on_replica and cur is not None and not _replica_has(cur, horizon):
        raise ReplicaBehind
    if cur is not None:
        cur = _versions_checked(cur, schema, held, labels, horizon.resync)
    channels = None if everything else {own_channel(user_id), *grants.channels}
    if channels is not None:
        _remember_channels(user_id, frozenset(channels))
    if cur is None:
        start = horizon.caught_up()
        cur = Cursor(
            g=grants.last_event,
            i=start,
            m=labels,
            u=user_id,
            a=everything,
            v=held,
            e=horizon.resync,
        )
    else:
        _check_purged(cur, horizon.purged)
        if cur.a != everything:
            raise _resync()  # the caller's scope changed kind: start over
        if channels is not None:
            cur = _with_backfills(cur, list(grants.events), channels)
    by_model = Q(model__in=read_labels) if read_labels is not None else Q()
    in_scope = by_model & (Q(channel__in=channels) if channels is not None else Q())
    settled = horizon.settled()
    scope = Scope(None, frozenset(channels) if channels is not None else None)

    # Querysets are built only where one is needed: building and compiling
    # them was a fifth of the time of an incremental pull.
    def main_after(position: Position) -> Any:
        return _feed().filter(in_scope, settled, feed.after(position))

    if cur.b:
        channel, upto, pos = cur.b[0]
        backfill = _backfill_rows(by_model, channel, upto, pos).filter(settled)
        rows, states = _read(backfill, limit, scope)
        more_here = len(rows) > limit
        rows = rows[:limit]
        last = _position(rows[-1]) if rows else pos

        def page() -> Any:
            return backfill.filter(feed.upto(last))

        rest = ((channel, upto, last),) if more_here else ()
        nxt = cur.evolve(b=rest + cur.b[1:])
        has_more = bool(nxt.b) or main_after(cur.s).exists()
        main_from = cur.s
    else:
        if ahead is not None and ahead.channels == scope.channels:
            rows, states = ahead.page
        elif connection.vendor == "postgresql":
            rows, states = _read_rendered(
                _main_feed_sql(channels, read_labels, horizon, cur.s, limit), scope
            )
        else:
            rows, states = _read(main_after(cur.s), limit, scope)
        has_more = len(rows) > limit
        rows = rows[:limit]
        last = _position(rows[-1]) if rows else cur.s
        start = cur.s

        def page() -> Any:
            return main_after(start).filter(feed.upto(last))

        # A short read means the caller has everything below the frontier, so
        # the cursor moves there even if none of those rows were theirs: idle
        # clients then stay ahead of compaction.
        nxt = cur.evolve(s=last if has_more else max(last, horizon.caught_up(), cur.s))
        main_from = nxt.s
    # During an initial sync the client holds only what this sync brought: an
    # object that is gone, and whose change here predates the sync, was never
    # sent, so it needs no delete. Backfill pages still send every delete: a
    # revoked channel's objects may have come earlier in this same sync.
    staged = _materialise(rows, states, page, scope, initial=None if cur.b else cur.i)
    changes, cut = _within_budget(staged, sync_settings.SYNC_PULL_MAX_BYTES)
    if cut is not None:  # the page filled up: continue after its last change
        has_more = True
        if cur.b:
            channel, upto, _ = cur.b[0]
            nxt = cur.evolve(b=((channel, upto, cut), *cur.b[1:]))
        else:
            nxt = cur.evolve(s=cut)
            main_from = cut
    remaining = 0
    if not has_more:
        nxt = nxt.evolve(i=None, r=None).stamped()
    elif cur.r is not None and cur.r > len(rows):
        # An estimate is all the contract asks for: carry the first count along
        # instead of counting the rest of a large initial sync on every page.
        remaining = cur.r - len(rows)
        nxt = nxt.evolve(r=remaining)
    else:
        if connection.vendor != "postgresql":
            remaining = _estimate(main_after(main_from))
        else:
            # From the feed's origin (an initial sync's first page), the
            # estimate is of all the caller's rows less those this page read:
            # PostgreSQL estimates a channel's rows well (99,394 for 100,000),
            # but multiplies in a position's range as if it did not depend on
            # the channel (45,770), and a progress bar would then reach zero a
            # third of the way through.
            from_origin = cur.s == ORIGIN
            estimated = _feed().filter(in_scope, settled) if from_origin else main_after(main_from)
            less = (
                sum(1 for row in rows if _position(row) <= main_from)
                if from_origin and not cur.b
                else 0
            )
            counted = _main_feed_sql(channels, read_labels, horizon, main_from, REMAINING_EXACT - 1)
            remaining = _estimate(estimated, counted=counted, less=less)
        for channel, upto, pos in nxt.b:
            remaining += _estimate(_backfill_rows(by_model, channel, upto, pos).filter(settled))
        nxt = nxt.evolve(r=remaining)
    if schema.behind:
        changes = _downgraded(changes, schema)
    return PullPage(
        changes=changes,
        cursor=nxt.encode(),
        has_more=has_more,
        remaining=remaining,
        channels=scope.channels,
    )


# The page's plan is made once per connection (syncbase.generic_plan) and kept
# while the tables grow, until their statistics change (ANALYZE, which
# autovacuum runs). Made while a model's table was empty or small, PostgreSQL
# would read it whole for every feed row once it has grown. A page has one
# right plan at any size, the channel's index range and then one primary-key
# probe per row, so the planner is left no other.
PAGE_PLANNER = {
    "enable_seqscan": "off",
    "enable_bitmapscan": "off",
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
}


# Each user's channels as the last pull in this process found them (bounded,
# `syncbase.memo`), for `_read_ahead`'s guess.
_CHANNELS_SEEN: dict[int, frozenset[str]] = {}
CHANNELS_SEEN_MAX = 10_000


class ReadAhead(NamedTuple):
    horizon: feed.Horizon
    grants: feed.Grants
    channels: frozenset[str] | None  # the guess the page was read for
    page: tuple[list[Row], States]


def _remember_channels(user_id: int, channels: frozenset[str]) -> None:
    memo.remember(_CHANNELS_SEEN, user_id, channels, CHANNELS_SEEN_MAX)


def _read_ahead(
    user_id: int,
    cur: Cursor | None,
    events_after: int,
    labels: tuple[str, ...] | None,
    limit: int,
    everything: bool,
) -> ReadAhead | None:
    """The horizon with grants, and the main feed's next page read after it
    in the same round trip, for the channels the caller had at its last pull
    (PostgreSQL; None when there is no guess or the page is a backfill's).

    The page reads below the frontier that statement found, as a page read
    after it would (`feed.SHARED_FRONTIER`). It is the page `pull_page`
    would read only if the caller's channels are still the guessed ones and
    no grant event sends it to a backfill; otherwise `pull_page` reads again
    (one statement more, as many as without the guess). Waiting for the
    horizon's answer before sending the page was one round trip per page."""
    if connection.vendor != "postgresql" or (cur is not None and cur.b):
        return None
    guessed = None if everything else _CHANNELS_SEEN.get(user_id)
    if not everything and guessed is None:
        return None
    start = cur.s if cur is not None else ORIGIN
    page_sql, page_params = _main_feed_sql(
        set(guessed) if guessed is not None else None, labels, feed.SHARED_FRONTIER, start, limit
    )
    horizon_rows, page_rows = generic_plan.fetchall_each(
        feed.horizon_and_grants_sharing(user_id, events_after),
        _rendered_sql((page_sql, page_params), Scope(None, guessed)),
        planner=PAGE_PLANNER,
    )
    horizon, grants = feed.horizon_and_grants_from(horizon_rows[0])
    return ReadAhead(horizon, grants, guessed, _rendered_rows(page_rows))


def _estimate(rows: Any, *, counted: tuple[str, list[Any]] | None = None, less: int = 0) -> int:
    """How many feed rows remain: exact up to REMAINING_EXACT, counted by
    `counted` (a statement reading them in feed order, REMAINING_EXACT at
    most; default: `rows` so read), then the planner's estimate of `rows`
    (from the table's statistics, in well under a millisecond; a large
    channel is among their most common values) less `less`, never below what
    was counted nor above REMAINING_COUNT_CAP.

    On PostgreSQL the count and the estimate are asked together, in one
    round trip: the first page of every initial sync asks for both, and
    building two querysets and waiting for each answer in turn made it 2.2
    ms slower than the pages after it. The count reads in feed order so that
    it is an index range that stops after REMAINING_EXACT rows: unordered,
    PostgreSQL chose a sequential scan expecting to meet the rows early in
    the table, and read the whole table when they were at its end (8.4 ms a
    first page at 213,000 feed rows)."""
    if connection.vendor != "postgresql":
        return rows[:REMAINING_EXACT].count()
    if counted is None:
        sql, params = rows.order_by("tx", "seq").values_list("seq").query.sql_with_params()
        counted = f"{sql} LIMIT {REMAINING_EXACT:d}", params
    sql, params = rows.values_list("seq").query.sql_with_params()
    # Statements compiled by Django or written by `_main_feed_sql`; every
    # value is a parameter.
    (exact,), plan = generic_plan.fetchall_together(
        (f"SELECT count(*) FROM ({counted[0]}) AS counted", counted[1]),  # noqa: S608
        (f"EXPLAIN (FORMAT json) {sql}", params),
    )
    if exact[0] < REMAINING_EXACT:
        return exact[0]
    (explained,) = plan[0]
    if isinstance(explained, str | bytes):
        explained = json.loads(explained)
    guess = int(explained[0]["Plan"]["Plan Rows"]) - less
    return min(max(exact[0], guess), REMAINING_COUNT_CAP)


COLUMNS = ("tx", "seq", "model", "object_id", "version")
# (tx, seq, model, object id as text, version). On PostgreSQL the id comes as
# text: a page of 1,000 rows spent more time building and printing UUID
# objects than PostgreSQL spent finding the rows.
Row = tuple[int, int, str, str, int]
# An object's current (version, visible, upsert change as the response carries it).
State = tuple[int, bool, bytes]
States = dict[tuple[str, str], State]


def _read(rows: Any, limit: int, scope: Scope) -> tuple[list[Row], States]:
    """Up to `limit` + 1 feed rows of a queryset, in feed order, and the current
    state of the objects they name, for the models PostgreSQL renders (others
    are left to `_materialise`)."""
    rows = rows.order_by("tx", "seq")
    if connection.vendor == "postgresql":
        return _read_rendered(
            rows.values_list(*COLUMNS)[: limit + 1].query.sql_with_params(), scope
        )
    return [
        (tx, seq, model, str(object_id), version)
        for tx, seq, model, object_id, version in rows.values_list(*COLUMNS)[: limit + 1]
    ], {}


def _main_feed_sql(
    channels: set[str] | None,
    labels: tuple[str, ...] | None,
    horizon: feed.Horizon | feed.SharedFrontier,
    after: Position,
    limit: int,
) -> tuple[str, list[Any]]:
    """The statement (PostgreSQL) reading the next `limit` + 1 rows of the main
    feed after `after`: the rows `main_after(after)` of `pull_page` selects,
    in feed order, written out once instead of built as a queryset per pull
    (the same rows: tests/sync/test_wire_sql.py).

    Each channel is read on its own, as a range of the (channel, tx, seq)
    index that comes in feed order and stops after `limit` + 1 rows, and the
    channels' rows are then merged: asked for several channels at once
    (`channel IN (…)`, or `= ANY(…)` even for one), PostgreSQL reads every
    row of those channels after the position and sorts them, on every page
    (a 1,000,000-object sync took 186 s instead of 27 s)."""
    settled, settled_params = horizon.settled_sql()
    later, later_params = feed.after_sql(after)
    where = [settled, later]
    params: list[Any] = [*settled_params, *later_params]
    if labels is not None:
        where.append(f"model IN ({', '.join(['%s'] * len(labels))})" if labels else "false")
        params += sorted(labels)
    columns, table = ", ".join(COLUMNS), Change._meta.db_table
    # The limit is written into the statement (an int from _limit): its
    # generic plan (syncbase.generic_plan) is then made for the rows it reads.
    top = f"LIMIT {limit + 1:d}"
    if channels is None:
        # The whole feed, in the order of its partial index on (tx, seq),
        # whose condition (seq > 0, true of every row) is stated here and
        # nowhere else (see sync.models.Change). Names from the models; every
        # value is a parameter.
        where.append("seq > 0")
        sql = f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)} ORDER BY tx, seq {top}"  # noqa: S608
        return sql, params
    one = (
        f"(SELECT {columns} FROM {table} "  # noqa: S608
        f"WHERE channel = %s AND {' AND '.join(where)} ORDER BY tx, seq {top})"
    )
    branches, branch_params = [], []
    for channel in sorted(channels):
        branches.append(one)
        branch_params += [channel, *params]
    if len(branches) == 1:
        return one, branch_params
    sql = (
        f"SELECT {columns} FROM ({' UNION ALL '.join(branches)}) AS channels "  # noqa: S608
        f"ORDER BY tx, seq {top}"
    )
    return sql, branch_params


def _read_rendered(feed_rows: tuple[str, Any], scope: Scope) -> tuple[list[Row], States]:
    """`_read` on PostgreSQL: the feed rows (a statement and its parameters)
    and their objects in one statement.

    For each model PostgreSQL renders (`SyncedType.change_sql`), the page's
    feed rows of that model are joined to its table by primary key (one index
    probe per row), and the database decides visibility (`Scope.visible_sql`)
    and writes each change as the response carries it: building a Python
    object for every value, then encoding it again, was most of a page's
    time; one round trip per model, plus the feed's, most of the rest. Rows of
    other models come with no state."""
    # Planned once per connection (syncbase.generic_plan): planning it for each
    # page's values cost half as much as running it.
    sql, params = _rendered_sql(feed_rows, scope)
    return _rendered_rows(generic_plan.fetchall(sql, params, planner=PAGE_PLANNER))


def _rendered_sql(feed_rows: tuple[str, Any], scope: Scope) -> tuple[str, list[Any]]:
    """`_read_rendered`'s statement and its parameters."""
    feed_sql, feed_params = feed_rows
    params: list[Any] = list(feed_params)
    rendered = [t for t in registry.all_types() if t.change_sql is not None]
    branches = []
    for stype in rendered:
        table = connection.ops.quote_name(stype.model._meta.db_table)
        visible, visible_params = scope.visible_sql(stype, table)
        # Names from the registry; every value is a parameter.
        branches.append(
            f"SELECT f.tx, f.seq, f.model, f.object_id::text, f.version, {table}.version, "  # noqa: S608
            f"{visible}, {stype.change_sql} "
            f"FROM f LEFT JOIN {table} ON {table}.id = f.object_id WHERE f.model = %s"
        )
        params += [*visible_params, stype.label]
    branches.append(
        "SELECT f.tx, f.seq, f.model, f.object_id::text, f.version, NULL, NULL, NULL "
        "FROM f WHERE f.model <> ALL(%s)"
    )
    params.append([t.label for t in rendered])
    sql = f"WITH f AS MATERIALIZED ({feed_sql}) {' UNION ALL '.join(branches)} ORDER BY 1, 2"
    return sql, params


def _rendered_rows(rows: list[tuple[Any, ...]]) -> tuple[list[Row], States]:
    """The feed rows and the objects' states from `_rendered_sql`'s rows."""
    found: list[Row] = []
    states: States = {}
    for tx, seq, model, object_id, version, current, visible, change in rows:
        found.append((tx, seq, model, object_id, version))
        if current is not None:
            states[(model, object_id)] = (current, visible, change.encode())
    return found, states


def _position(row: Row) -> Position:
    return (row[0], row[1])


def _backfill_rows(by_model: Q, channel: str, upto: Position | None, pos: Position) -> Any:
    rows = _feed().filter(by_model, feed.after(pos), channel=channel)
    return rows if upto is None else rows.filter(feed.upto(upto))


def _states(stype: SyncedType, page: Any, scope: Scope) -> Iterator[tuple[str, State]]:
    """(id, state) of the objects of one model that `page` (the feed queryset
    of the page) names, with their values read and encoded here: on SQLite,
    and for models whose fields need Python."""
    names = stype.row_attnames
    objects = stype.model._default_manager.using(reading.alias()).filter(
        pk__in=page.filter(model=stype.label).values("object_id")
    )
    # values_list + zip: the same dicts as values(), noticeably cheaper per row.
    for values in objects.values_list(*names):
        row = dict(zip(names, values, strict=True))
        change = {
            "model": stype.label,
            "id": str(values[0]),
            "op": "upsert",
            "version": row["version"],
            "data": stype.encode_for_render(row),
        }
        seen = row["deleted_at"] is None and scope.sees(stype, row)
        yield change["id"], (row["version"], seen, render(change))


def _materialise(
    rows: list[Row],
    states: States,
    page: Callable[[], Any],
    scope: Scope,
    *,
    initial: Position | None,
) -> list[tuple[Position, bytes]]:
    """Feed rows → the latest state of each object, once, in order of its last
    change, each rendered as the response will carry it, with the feed
    position of that change. `states`: what `_read` found already; `page`:
    makes the feed queryset that selected `rows`, for the rest.
    """
    latest: dict[tuple[str, str], tuple[Position, int]] = {}
    for tx, seq, label, object_id, version in rows:
        key = (label, object_id)
        latest.pop(key, None)  # re-insert so dict order is order of the last change
        latest[key] = ((tx, seq), version)
    rendered_by_db = connection.vendor == "postgresql"
    for label in {label for label, _ in latest}:
        stype = registry.get(label)
        if stype is None or (rendered_by_db and stype.change_sql is not None):
            continue
        for object_id, found in _states(stype, page(), scope):
            states[(label, object_id)] = found
    out: list[tuple[Position, bytes]] = []
    for key, (position, version) in latest.items():
        state = states.get(key)
        if state is not None:
            current, seen, upsert = state
            if seen:
                out.append((position, upsert))
                continue
            version = current
        elif registry.get(key[0]) is None:
            continue  # a model that is no longer registered
        # Not visible (deleted, or out of the caller's scope). During an initial
        # sync a delete that happened before it started cannot concern the client.
        if initial is not None and position <= initial:
            continue
        change = {"model": key[0], "id": key[1], "op": "delete", "version": version}
        out.append((position, render({**change, "data": None})))
    return out


def _within_budget(
    staged: list[tuple[Position, bytes]], budget: int
) -> tuple[list[bytes], Position | None]:
    """The changes that fit in `budget` bytes as rendered, and, if some did not,
    the feed position to continue after. Changes are in order of their last
    feed position, so everything up to that position has gone out or belongs to
    an object whose newer change comes later. The first change always goes,
    however large: a page is never empty."""
    changes: list[bytes] = []
    total = 0
    for i, (_, change) in enumerate(staged):
        if changes and total + len(change) > budget:
            return changes, staged[i - 1][0]
        changes.append(change)
        total += len(change)
    return changes, None


def values_errors(
    *, scope: Scope, stype: SyncedType, data: dict[str, Any], full: bool
) -> dict[str, list[str]]:
    """What a write of `data` (wire form) would be refused for, field by field,
    checked exactly as the write service will check it (types, choices, lengths,
    references in scope); reads only. For forms that want to show errors before
    submitting a write."""
    batch = Batch(scope=scope)
    batch.load_references([(stype, data)])
    return batch.decode(stype, data, full=full)[1]


@dataclass
class DeletionPreview:
    deleted: list[tuple[SyncedType, Any]]  # the objects named, then what cascades
    cleared: list[tuple[SyncedType, Any, str]]  # objects whose reference is cleared
    blocking: list[tuple[SyncedType, Any]]  # objects that stop the delete


def deletion_preview(*, scope: Scope, stype: SyncedType, objects: Sequence[Any]) -> DeletionPreview:
    """What deleting `objects` would do, by the same rules as the delete itself
    (`Batch.plan_delete`): for a confirmation page. Locks the rows it reads
    until the caller's transaction ends."""
    preview = DeletionPreview([], [], [])
    with transaction.atomic():
        batch = Batch(scope=scope)
        batch.lock(stype, [o.pk for o in objects])
        batch.load_dependants([(stype, o.pk) for o in objects])
        seen: set[tuple[str, Any]] = set()
        for obj in objects:
            current = batch.current((stype.label, obj.pk))
            if current is None or current.is_deleted:
                continue
            plan = batch.plan_delete(stype, current)
            for key, (doomed_type, doomed) in plan.doomed.items():
                if key not in seen:
                    seen.add(key)
                    preview.deleted.append((doomed_type, doomed))
            preview.cleared += [(t, o, a) for t, o, a, _ in plan.cleared]
            preview.blocking += plan.blocking
    return preview
