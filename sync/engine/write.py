"""The only code that writes synced data: one door for every writer.

- `mutations_apply`: mutations in the protocol's push form, applied in a
  scope (a device user's channels, staff's everything, a service account's
  grant), merging stale writes under the model's policy or refusing them.
- `push_apply`: a device's push (limits, and a cursor it may adopt).
- `conflict_resolve` / `conflict_dismiss`: settling a queued conflict, by the
  user who raised it or by staff, written as a new version like any push.
- `channel_grant` / `channel_revoke`: who belongs to which channel.

A batch is applied in one transaction with a fixed number of queries (see
`sync.engine.batch`). If the bulk write hits a database error (a unique clash with a
concurrent push, a deadlock victim), the batch is replayed one mutation per
transaction, so one bad mutation never rolls back the others.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction

from sync.choices import OnStale
from sync.engine import feed
from sync.engine.batch import CHANGED, Batch, run
from sync.engine.mutations import Malformed, Mutation, MutationResult, Parsed, parse
from sync.engine.scope import Scope
from sync.models import MutationRecord, SyncedModel
from sync.registry import SyncedType
from syncbase.conf import sync_settings
from syncbase.errors import SyncError

logger = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    results: list[MutationResult]
    feed_range: feed.Written | None
    # The channels the batch wrote in (set when feed_range is; empty for a
    # scope over everything).
    channels: frozenset[str] = frozenset()
    # It also wrote objects its mutations did not name (a cascade).
    side_effects: bool = False


def check_batch_size(mutations: Sequence[Any]) -> None:
    """At most SYNC_PUSH_MAX_MUTATIONS in one batch, whoever sends it."""
    limit = sync_settings.SYNC_PUSH_MAX_MUTATIONS
    if len(mutations) > limit:
        raise SyncError(
            "too_many_mutations",
            f"At most {limit} mutations per request; send the rest in another.",
            status_code=413,
        )


def mutations_apply(
    *,
    user: Any,
    mutations: Sequence[Any],
    scope: Scope | None = None,
    device_id: uuid.UUID | None = None,
    reason: str = "",
    on_stale: str = OnStale.MERGE,
) -> BatchOutcome:
    """Apply mutations (protocol push form, or parsed `Mutation`s) in order, as
    `user` within `scope` (default: the user's own channels); one result each.

    `on_stale=OnStale.REFUSE` answers a write based on an older version with
    status `stale` and the current state instead of merging it.
    """
    check_batch_size(mutations)
    scope = scope or Scope.of_user(user)
    items = [m if isinstance(m, Mutation | Malformed) else parse(m) for m in mutations]

    def attempt(batch_items: Sequence[Parsed]) -> BatchOutcome:
        with transaction.atomic():
            if device_id is not None:
                _one_device_at_a_time(device_id)
            batch = Batch(scope=scope, device_id=device_id, reason=reason, on_stale=on_stale)
            results = run(batch, batch_items)
        return BatchOutcome(
            results, batch.feed_range, scope.channels or frozenset(), batch.side_effects
        )

    try:
        return attempt(items)
    except DatabaseError:
        logger.warning(
            "Batch of %d mutations failed as a whole; applying one by one",
            len(items),
            exc_info=True,
        )
    results: list[MutationResult] = []
    for m in items:
        try:
            outcome = attempt([m])
        except IntegrityError as exc:
            if isinstance(m, Malformed):
                # Only its record could clash: a concurrent retry stored the same rejection.
                results.append(m.result)
                continue
            result = m.rejected({"non_field_errors": [_integrity_message(exc)]})
            _record_alone(scope=scope, device_id=device_id, m=m, result=result)
            results.append(result)
            continue
        results.extend(outcome.results)
    # Applied over several transactions, others' changes may sit between ours:
    # report no feed range, so the push cursor is not moved past them.
    return BatchOutcome(results, None)


# The first key of the advisory locks this module takes (the second is the device's).
_DEVICE_PUSH_LOCKS = 0x53594E43  # "SYNC"


def _one_device_at_a_time(device_id: uuid.UUID) -> None:
    """Pushes of one device are applied one after the other: two tabs of a
    browser, or a retry racing the request it retries, replaying the same
    outbox never interleave. A transaction-scoped advisory lock (released at
    commit, so it works through PgBouncer in transaction mode); other
    devices' pushes are not held up. SQLite writes one transaction at a time
    anyway."""
    if connection.vendor != "postgresql":
        return
    key = int.from_bytes(device_id.bytes[:4], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_DEVICE_PUSH_LOCKS, key])


def _integrity_message(exc: IntegrityError) -> str:
    text = str(exc).splitlines()[0] if str(exc) else "constraint violated"
    return f"The database refused this change: {text}"


def _record_alone(
    *, scope: Scope, device_id: uuid.UUID | None, m: Mutation, result: MutationResult
) -> None:
    try:
        with transaction.atomic():
            MutationRecord.objects.create(
                user_id=scope.user_id,
                mutation_id=m.mutation_id,
                device_id=device_id,
                model=m.label,
                object_id=m.id,
                status=result.status,
                result=result.as_dict(),
                digest=m.digest(),
            )
    except IntegrityError:
        logger.info("Mutation %s was recorded concurrently", m.mutation_id)


# --- staff writes (the admin) ---------------------------------------------------------


def object_write(*, user: Any, mutation: Mapping[str, Any], reason: str) -> MutationResult:
    """A staff member's create, update or delete of any object, in the push form
    (without a mutation_id): applied like a device's push, stale edits merged
    under the model's policy, with `user` in the history."""
    outcome = mutations_apply(
        user=user,
        mutations=[{**mutation, "mutation_id": str(uuid.uuid4())}],
        scope=Scope.everything(user),
        reason=reason,
    )
    return outcome.results[0]


def object_restore(
    *,
    user: Any,
    stype: SyncedType,
    object_id: uuid.UUID,
    expected_version: int,
    values: Mapping[str, Any],
    reason: str,
) -> dict[str, Any]:
    """Bring a deleted object back with `values` (wire form; e.g. a version from
    its history) as a new version. 412 if it moved on from `expected_version`."""
    scope = Scope.everything(user)
    with transaction.atomic():
        batch = Batch(scope=scope, reason=reason)
        batch.lock(stype, [object_id])
        current = batch.current((stype.label, object_id))
        if current is None:
            raise SyncError("not_found", f"No {stype.label} with this id.", status_code=404)
        if current.version != expected_version:
            raise SyncError(
                "stale",
                f"The object is at version {current.version} now, not {expected_version}.",
                status_code=412,
                extra={"object": object_body(stype, current)},
            )
        if not current.is_deleted:
            raise SyncError(
                "not_deleted", "Only a deleted object can be restored.", status_code=409
            )
        batch.load_references([(stype, values)])
        decoded, errors = batch.decode(stype, values, full=False)
        if errors:
            raise SyncError("invalid", "Some values are not valid; see errors.", errors=errors)
        after = batch.write(
            stype, current, batch.with_values(stype, current, decoded, restore=True), CHANGED
        )
        batch.flush()
    return object_body(stype, after)


def object_body(stype: SyncedType, obj: SyncedModel) -> dict[str, Any]:
    return {
        "model": stype.label,
        "id": str(obj.pk),
        "version": obj.version,
        "data": None if obj.is_deleted else stype.encode(obj.__dict__),
    }
