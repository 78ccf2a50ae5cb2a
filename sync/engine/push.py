"""A device's push: the batch applied in its user's scope, and the cursor it may adopt."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sync import registry
from sync.choices import Op, Reason
from sync.engine import feed, metrics
from sync.engine.cursor import BadCursor, Cursor, decode
from sync.engine.mutations import Malformed, Mutation, MutationResult, Parsed, parse
from sync.engine.versions import CURRENT, AppSchema
from sync.engine.write import BatchOutcome, mutations_apply
from sync.models import Change
from sync.schema import TranslationError

logger = logging.getLogger(__name__)


# --- device pushes -------------------------------------------------------------------


@dataclass
class PushOutcome:
    results: list[MutationResult]
    cursor: str


def push_apply(
    *,
    user: Any,
    device: Any,
    mutations: Sequence[Any],
    cursor: str | None = None,
    schema: AppSchema = CURRENT,
) -> PushOutcome:
    """A device's push: apply the batch, then hand back a cursor it may adopt.
    `schema`: the versions the device's app speaks; its mutations are
    upgraded to the current shape, and the results' data downgraded back."""
    if schema.behind:
        mutations = [_upgraded(parse(raw), schema) for raw in mutations]
    outcome = mutations_apply(
        user=user, mutations=mutations, device_id=device.pk, reason=f"push from device {device.pk}"
    )
    metrics.push_counted(r.status for r in outcome.results)
    results = outcome.results
    if schema.behind:
        results = [_downgraded(m, r, schema) for m, r in zip(mutations, results, strict=True)]
    return PushOutcome(results, _push_cursor(user, device, cursor, outcome))


def _upgraded(item: Parsed, schema: AppSchema) -> Parsed:
    """A mutation from an older app, in the current shape (a value a step
    cannot translate rejects the mutation, saying why)."""
    if not isinstance(item, Mutation) or item.op == Op.DELETE:
        return item
    try:
        data = schema.upgrade(item.type, dict(item.data), creating=item.op == Op.CREATE)
    except TranslationError as exc:
        return Malformed(
            item.mutation_id,
            item.rejected({"data": [str(exc)]}, Reason.INVALID),
            item.label,
            item.id,
        )
    item.data = data
    return item


def _downgraded(item: Parsed, result: MutationResult, schema: AppSchema) -> MutationResult:
    """A result in the app's shape: its data, and the fields its errors name."""
    label = item.label if isinstance(item, Mutation | Malformed) else ""
    stype = registry.get(label)
    if stype is None or label not in schema.behind:
        return result
    if result.errors:
        return replace(result, errors=schema.error_fields(stype, result.errors))
    if result.data is None:
        return result
    return replace(result, data=schema.downgrade(stype, result.data))


def _push_cursor(user: Any, device: Any, token: str | None, outcome: BatchOutcome) -> str:
    """The device's pull cursor, moved past this push's own changes when nothing
    else happened in its channels in between (so it need not pull back its own
    writes). Never moves past a change of anyone else: always safe to adopt."""
    start = _device_cursor(user, device, token)
    own = outcome.feed_range
    if own is None or start.s >= own.end:
        return start.encode()  # nothing of ours to skip
    if outcome.side_effects:
        # The results do not describe everything written (a delete's cascade),
        # so the device must pull its own changes back.
        return start.encode()
    # A client in an initial sync (i) or a backfill (b) keeps exactly what that
    # brings, so its own writes must come with it.
    if start.b or start.i is not None:
        return start.encode()
    horizon = feed.horizon()
    if horizon.purged > start.s:
        # Behind compaction: its next pull must get a 410, not skip it.
        return start.encode()
    if horizon.frontier <= own.tx:
        # An older transaction is still in flight: it may yet commit rows that
        # come before ours, which the device must not skip.
        return start.encode()
    others = Change.objects.filter(
        feed.after(start.s), feed.before(own.start), channel__in=outcome.channels
    )
    if start.m is not None:
        others = others.filter(model__in=start.m)
    if others.exists():
        return start.encode()
    return start.evolve(s=own.end).encode()


def _device_cursor(user: Any, device: Any, token: str | None) -> Cursor:
    """The cursor the device sent, else the one it last finished a pull with,
    else a fresh initial-sync position."""
    for candidate in (token, device.last_cursor):
        if not candidate:
            continue
        try:
            cur = decode(candidate)
        except BadCursor:
            continue
        if cur.u == user.pk:
            return cur
    # No filter yet: the device's first pull binds it (see `Cursor.f`).
    horizon, grants = feed.horizon_and_grants(user.pk)
    return Cursor(g=grants.last_event, i=horizon.caught_up(), u=user.pk, f=True)
