"""Reads shared by views and tasks: the pull page, conflicts, model discovery."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from . import feed, registry
from .batch import Batch
from .cursor import BadCursor, Cursor, decode
from .errors import SyncError
from .feed import ORIGIN, Position
from .models import Change, Conflict, GrantEvent
from .registry import SyncedType
from .renderers import rendered_size
from .scope import Scope, user_channels

# `remaining` counts at most this many feed rows: it is a progress-bar estimate,
# and counting further would make every page of a huge initial sync slower.
REMAINING_COUNT_CAP = 100_000


@dataclass
class PullPage:
    changes: list[dict[str, Any]] = field(default_factory=list)
    cursor: str = ""
    has_more: bool = False
    remaining: int = 0


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


def _start_cursor(user_id: int, models: tuple[str, ...] | None, start: Position) -> Cursor:
    return Cursor(g=feed.last_grant_event(user_id), i=start, m=models, u=user_id)


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
    if cur.t < time.time() - settings.SYNC_RETENTION.total_seconds():
        raise _resync()
    # Compaction dropped tombstones up to `purged`: a client positioned before
    # them may have missed a delete. During an initial sync only deletes after
    # its start (i) matter; backfills only need live rows, which are never purged.
    if feed.purged_through() > max(cur.s, cur.i or ORIGIN):
        raise _resync()
    return cur


def _grant_events(cur: Cursor, user_id: int) -> list[tuple[int, str]]:
    return list(
        GrantEvent.objects.filter(user_id=user_id, id__gt=cur.g)
        .order_by("id")
        .values_list("id", "channel")
    )


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


def pull_page(
    *,
    user_id: int,
    cursor: str | None,
    limit: int,
    models: Sequence[SyncedType] | None,
    everything: bool = False,
) -> PullPage:
    """One page of the change feed for a user's channels, or, with `everything`
    (an unrestricted service account), for every object."""
    labels = tuple(sorted(t.label for t in models)) if models is not None else None
    # Only rows of transactions that have ended for good are read: positions
    # handed out below this horizon are final (see sync.feed).
    horizon = feed.horizon()
    # Grant events are read before the channels: a grant or revoke committing in
    # between is then seen in the channels now and as a new event next time,
    # which backfills (or deletes) it; the other order could miss it for good.
    channels: set[str] | None = None
    if cursor is None:
        cur = _start_cursor(user_id, labels, horizon.caught_up()).evolve(a=everything)
        if not everything:
            channels = user_channels(user_id)
    else:
        cur = _decode_for(cursor, user_id, labels)
        if cur.a != everything:
            raise _resync()  # the caller's scope changed kind: start over
        if not everything:
            events = _grant_events(cur, user_id)
            channels = user_channels(user_id)
            cur = _with_backfills(cur, events, channels)
    by_model = Q(model__in=labels) if labels is not None else Q()
    in_scope = by_model & (Q(channel__in=channels) if channels is not None else Q())
    settled = horizon.settled()
    main = Change.objects.filter(in_scope, settled, feed.after(cur.s))
    if cur.b:
        channel, upto, pos = cur.b[0]
        backfill = _backfill_rows(by_model, channel, upto, pos).filter(settled)
        rows = list(backfill.order_by("tx", "seq").values_list(*COLUMNS)[: limit + 1])
        more_here = len(rows) > limit
        rows = rows[:limit]
        last = _position(rows[-1]) if rows else pos
        page = backfill.filter(feed.upto(last))
        rest = ((channel, upto, last),) if more_here else ()
        nxt = cur.evolve(b=rest + cur.b[1:])
        has_more = bool(nxt.b) or main.exists()
    else:
        rows = list(main.order_by("tx", "seq").values_list(*COLUMNS)[: limit + 1])
        has_more = len(rows) > limit
        rows = rows[:limit]
        last = _position(rows[-1]) if rows else cur.s
        page = main.filter(feed.upto(last))
        # A short read means the caller has everything below the frontier, so
        # the cursor moves there even if none of those rows were theirs: idle
        # clients then stay ahead of compaction.
        nxt = cur.evolve(s=last if has_more else max(last, horizon.caught_up(), cur.s))
        main = main.filter(feed.after(nxt.s))
    scope = Scope(None, frozenset(channels) if channels is not None else None)
    # During an initial sync the client holds only what this sync brought: an
    # object that is gone, and whose change here predates the sync, was never
    # sent, so it needs no delete. Backfill pages still send every delete: a
    # revoked channel's objects may have come earlier in this same sync.
    staged = _materialise(rows, page, scope, initial=None if cur.b else cur.i)
    changes, cut = _within_budget(staged, settings.SYNC_PULL_MAX_BYTES)
    if cut is not None:  # the page filled up: continue after its last change
        has_more = True
        if cur.b:
            channel, upto, _ = cur.b[0]
            nxt = cur.evolve(b=((channel, upto, cut), *cur.b[1:]))
        else:
            nxt = cur.evolve(s=cut)
            main = Change.objects.filter(in_scope, settled, feed.after(cut))
    remaining = 0
    if not has_more:
        nxt = nxt.evolve(i=None, r=None).stamped()
    elif cur.r is not None and cur.r > len(rows):
        # An estimate is all the contract asks for: carry the first count along
        # instead of counting the rest of a large initial sync on every page.
        remaining = cur.r - len(rows)
        nxt = nxt.evolve(r=remaining)
    else:
        remaining = main[:REMAINING_COUNT_CAP].count()
        for channel, upto, pos in nxt.b:
            rest_rows = _backfill_rows(by_model, channel, upto, pos).filter(settled)
            remaining += rest_rows[:REMAINING_COUNT_CAP].count()
        nxt = nxt.evolve(r=remaining)
    return PullPage(changes=changes, cursor=nxt.encode(), has_more=has_more, remaining=remaining)


COLUMNS = ("tx", "seq", "model", "object_id", "version", "op")
Row = tuple[int, int, str, uuid.UUID, int, int]


def _position(row: Row) -> Position:
    return (row[0], row[1])


def _backfill_rows(by_model: Q, channel: str, upto: Position | None, pos: Position) -> Any:
    rows = Change.objects.filter(by_model, feed.after(pos), channel=channel)
    return rows if upto is None else rows.filter(feed.upto(upto))


def _materialise(
    rows: list[Row],
    page: Any,
    scope: Scope,
    *,
    initial: Position | None,
) -> list[tuple[Position, dict[str, Any]]]:
    """Feed rows → the latest state of each object, once, in order of its last
    change, each with the feed position of that change.

    `page` is the feed queryset that selected `rows`; objects are fetched with it
    as a subquery rather than an IN list of up to 1,000 ids, which PostgreSQL
    answers about twice as fast as it parses the literal list.
    """
    latest: dict[tuple[str, uuid.UUID], tuple[Position, int]] = {}
    for tx, seq, label, object_id, version, _ in rows:
        key = (label, object_id)
        latest.pop(key, None)  # re-insert so dict order is order of the last change
        latest[key] = ((tx, seq), version)
    states: dict[tuple[str, uuid.UUID], dict[str, Any]] = {}
    for label in dict.fromkeys(label for label, _ in latest):
        stype = registry.get(label)
        if stype is None:
            continue
        names = stype.row_attnames
        in_page = page.filter(model=label).values("object_id")
        # values_list + zip: the same dicts as values(), noticeably cheaper per row.
        for values in stype.model._default_manager.filter(pk__in=in_page).values_list(*names):
            states[(label, values[0])] = dict(zip(names, values, strict=True))
    out: list[tuple[Position, dict[str, Any]]] = []
    for (label, object_id), (position, version) in latest.items():
        stype = registry.get(label)
        if stype is None:
            continue  # a model that is no longer registered
        row = states.get((label, object_id))
        if row is not None and row["deleted_at"] is None and scope.sees(stype, row):
            out.append(
                (
                    position,
                    {
                        "model": label,
                        "id": str(object_id),
                        "op": "upsert",
                        "version": row["version"],
                        "data": stype.encode_for_render(row),
                    },
                )
            )
            continue
        # Not visible (deleted, or out of the caller's scope). During an initial
        # sync a delete that happened before it started cannot concern the client.
        if initial is not None and position <= initial:
            continue
        out.append(
            (
                position,
                {
                    "model": label,
                    "id": str(object_id),
                    "op": "delete",
                    "version": row["version"] if row is not None else version,
                    "data": None,
                },
            )
        )
    return out


def _within_budget(
    staged: list[tuple[Position, dict[str, Any]]], budget: int
) -> tuple[list[dict[str, Any]], Position | None]:
    """The changes that fit in `budget` bytes as rendered, and, if some did not,
    the feed position to continue after. Changes are in order of their last
    feed position, so everything up to that position has gone out or belongs to
    an object whose newer change comes later. The first change always goes,
    however large: a page is never empty."""
    changes: list[dict[str, Any]] = []
    total = 0
    for i, (_, change) in enumerate(staged):
        size = rendered_size(change)
        if changes and total + size > budget:
            return changes, staged[i - 1][0]
        changes.append(change)
        total += size
    return changes, None


def conflicts_for_user(*, user_id: int, status: str | None) -> Any:
    qs = (
        Conflict.objects.filter(user_id=user_id)
        .select_related("resolved_by")
        .order_by("-created_at")
    )
    if status:
        qs = qs.filter(status=status)
    return qs


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
