"""Checking the invariants the write path promises (`manage.py sync_check`).

Every write goes through `sync.engine.batch`, which bumps an object's version and
writes its history row and its feed rows in the same transaction. This module
reads the database back and reports where that is not so, one `Problem` each:

- history: an object's `version` is the newest version in its history, every
  version 1..n has exactly one history row, and the row of version n holds the
  object's current values (a write that bypassed the service shows up here);
- feed: for each of the object's current channels, the newest feed row is its
  current version (an upsert, or a delete for a deleted object); in every
  other channel it ever was in, the newest row is a delete (members must learn
  that it left); no row is ahead of the object, repeated, or out of order;
  no row names a missing object or an unknown model;
- conflicts: no open conflict names an unregistered model or a missing object;
- references: no live object points, through a synced reference, at a synced
  object that is deleted or gone;
- push results: no stored result claims a version the object never reached.

What compaction may remove (`sync.engine.compaction`), and so is not a problem:
- a row with a newer row of the same object in the same channel (superseded).
  Only the newest row per object and channel is what a reader relies on, so
  rows of older versions are not checked at all;
- a delete row older than SYNC_RETENTION once compaction has purged tombstones
  (`FeedState.purged_seq` > 0). A delete row is written at the object's
  `updated_at`, so a missing tombstone is excused when that is before the last
  compaction's cutoff (`compacted_at` - SYNC_RETENTION).

Queries are bounded per model: objects are read in chunks of `chunk_size` by
primary key, with three or four queries per chunk for their history and feed
rows, never one per object.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Exists, Max, Min, OuterRef

from sync import registry
from sync.choices import ConflictStatus, Status
from sync.models import Change, Conflict, FeedState, MutationRecord
from sync.registry import SyncedType
from syncbase.conf import sync_settings

CHUNK = 1000

HISTORY = "history"
FEED = "feed"
CONFLICT = "conflict"
REFERENCE = "reference"
RECORD = "push_result"

UPSERT, DELETE = Change.Op.UPSERT, Change.Op.DELETE
_OP_NAME: dict[int, str] = {UPSERT: "upsert", DELETE: "delete"}


@dataclass(frozen=True, order=True)
class Problem:
    check: str
    model: str
    object_id: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.model} {self.object_id}" if self.object_id else self.model
        return f"[{self.check}] {where}: {self.detail}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        c = self.counts
        return (
            f"{c['models']} models, {c['objects']} objects, {c['history_rows']} history rows, "
            f"{c['feed_rows']} feed rows, {c['open_conflicts']} open conflicts, "
            f"{c['references']} references, {c['push_results']} push results"
        )


def integrity_check(*, chunk_size: int = CHUNK) -> Report:
    """Check every registered model; the report lists each problem found."""
    report = Report()
    types = registry.all_types()
    report.counts["models"] = len(types)
    state = FeedState.objects.filter(pk=1).values("purged_seq", "compacted_at").first()
    expired_before = None
    if state and state["purged_seq"] > 0 and state["compacted_at"] is not None:
        expired_before = state["compacted_at"] - sync_settings.SYNC_RETENTION
    for stype in types:
        for rows in _chunks(stype, chunk_size):
            report.counts["objects"] += len(rows)
            _check_history(stype, rows, report)
            _check_feed(stype, rows, expired_before, report)
        _check_orphan_feed_rows(stype, report)
        _check_conflicts(stype, report)
        _check_references(stype, report)
    _check_unknown_models(types, report)
    _check_push_results(chunk_size, report)
    report.problems.sort()
    return report


def _chunks(stype: SyncedType, size: int) -> Iterator[list[dict[str, Any]]]:
    """The model's rows in primary-key order, `size` at a time (keyset pages)."""
    rows_of = stype.model._default_manager.order_by("pk").values(*stype.row_attnames)
    last = None
    while True:
        page = rows_of if last is None else rows_of.filter(pk__gt=last)
        rows = list(page[:size])
        if rows:
            yield rows
        if len(rows) < size:
            return
        last = rows[-1]["id"]


# --- history ------------------------------------------------------------------------


def _check_history(stype: SyncedType, rows: Sequence[dict[str, Any]], report: Report) -> None:
    history = stype.model.history.model._default_manager
    ids = [r["id"] for r in rows]
    stats = {
        s["id"]: s
        for s in history.filter(id__in=ids)
        .order_by()
        .values("id")
        .annotate(
            rows=Count("history_id"),
            versions=Count("version", distinct=True),
            low=Min("version"),
            top=Max("version"),
        )
    }
    # The rows at each object's current version (others of the same version
    # numbers come along and are skipped); the last one written wins.
    current: dict[uuid.UUID, dict[str, Any]] = {}
    wanted = {(r["id"], r["version"]) for r in rows}
    for h in (
        history.filter(id__in=ids, version__in={r["version"] for r in rows})
        .order_by("history_id")
        .values(*stype.row_attnames)
    ):
        if (h["id"], h["version"]) in wanted:
            current[h["id"]] = h
    gappy = []
    for row in rows:
        n, s = row["version"], stats.get(row["id"])
        report.counts["history_rows"] += s["rows"] if s else 0
        if s is None:
            _add(report, HISTORY, stype, row, f"no history at all (version {n})")
            continue
        if s["top"] != n:
            _add(report, HISTORY, stype, row, f"version {n} but newest history is {s['top']}")
        if s["versions"] != max(n, s["top"]) or s["low"] != 1:
            gappy.append(row["id"])
        if s["rows"] != s["versions"]:
            _add(report, HISTORY, stype, row, "a version has several history rows")
        h = current.get(row["id"])
        if h is not None and not _same_state(stype, h, row):
            _add(
                report,
                HISTORY,
                stype,
                row,
                f"current values differ from history at version {n} (written without history?)",
            )
    if gappy:
        found: dict[uuid.UUID, set[int]] = defaultdict(set)
        for object_id, version in history.filter(id__in=gappy).values_list("id", "version"):
            found[object_id].add(version)
        for row in rows:
            if row["id"] in found:
                top = max(row["version"], *found[row["id"]])
                missing = sorted(set(range(1, top + 1)) - found[row["id"]])
                if missing:
                    _add(report, HISTORY, stype, row, f"history misses versions {_spans(missing)}")


def _same_state(stype: SyncedType, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if (a["deleted_at"] is None) != (b["deleted_at"] is None):
        return False
    return stype.encode(a) == stype.encode(b)


# --- change feed -----------------------------------------------------------------------


def _check_feed(
    stype: SyncedType,
    rows: Sequence[dict[str, Any]],
    expired_before: dt.datetime | None,
    report: Report,
) -> None:
    by_object: dict[uuid.UUID, dict[str, list[tuple[int, int, int]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for object_id, channel, version, op, seq in Change.objects.filter(
        model=stype.label, object_id__in=[r["id"] for r in rows]
    ).values_list("object_id", "channel", "version", "op", "seq"):
        by_object[object_id][channel].append((seq, version, op))
        report.counts["feed_rows"] += 1
    for row in rows:
        n = row["version"]
        deleted = row["deleted_at"] is not None
        expected_op = DELETE if deleted else UPSERT
        channels = stype.channels_of(row)
        feed = by_object.get(row["id"], {})
        for channel in sorted(channels | set(feed)):
            entries = sorted(feed.get(channel, []))
            _check_channel_order(stype, row, channel, entries, report)
            newest = entries[-1] if entries else None
            if channel in channels:
                if newest is not None and newest[1:] == (n, expected_op):
                    continue
                tombstone_purged = (
                    deleted and expired_before is not None and row["updated_at"] < expired_before
                )
                if newest is None and tombstone_purged:
                    continue  # an expired tombstone, compacted away
                found = (
                    "it has none"
                    if newest is None
                    else f"its newest is the {_OP_NAME[newest[2]]} of version {newest[1]}"
                )
                _add(
                    report,
                    FEED,
                    stype,
                    row,
                    f"no {_OP_NAME[expected_op]} of version {n} in {channel} ({found})",
                )
            elif newest is not None and newest[2] != DELETE:
                _add(
                    report,
                    FEED,
                    stype,
                    row,
                    f"{channel} still has an upsert of version {newest[1]} as its newest row, "
                    "but the object is no longer there" + (" (deleted)" if deleted else ""),
                )


def _check_channel_order(
    stype: SyncedType,
    row: Mapping[str, Any],
    channel: str,
    entries: Sequence[tuple[int, int, int]],
    report: Report,
) -> None:
    """Rows of one object in one channel: versions rise with seq, none repeats,
    none is ahead of the object."""
    previous: int | None = None
    for seq, version, _ in entries:
        if version > row["version"]:
            _add(
                report,
                FEED,
                stype,
                row,
                f"{channel} has version {version} (#{seq}) but the object is at {row['version']}",
            )
        if previous is not None and version <= previous:
            what = "twice" if version == previous else f"after version {previous}"
            _add(report, FEED, stype, row, f"{channel} has version {version} (#{seq}) {what}")
        previous = version


def _check_orphan_feed_rows(stype: SyncedType, report: Report) -> None:
    model = stype.model._default_manager
    for object_id, n in (
        Change.objects.filter(model=stype.label)
        .filter(~Exists(model.filter(pk=OuterRef("object_id"))))
        .values("object_id")
        .annotate(n=Count("seq"))
        .values_list("object_id", "n")
    ):
        report.problems.append(
            Problem(FEED, stype.label, str(object_id), f"{n} feed row(s) but no such object")
        )


def _check_unknown_models(types: Sequence[SyncedType], report: Report) -> None:
    labels = [t.label for t in types]
    for label, n in (
        Change.objects.exclude(model__in=labels)
        .values("model")
        .annotate(n=Count("seq"))
        .values_list("model", "n")
    ):
        report.problems.append(
            Problem(FEED, label, "", f"{n} feed row(s) of an unregistered model")
        )
    for conflict_id, label, object_id in (
        Conflict.objects.filter(status=ConflictStatus.OPEN)
        .exclude(model__in=labels)
        .values_list("id", "model", "object_id")
    ):
        report.counts["open_conflicts"] += 1
        report.problems.append(
            Problem(
                CONFLICT,
                label,
                str(object_id),
                f"open conflict {conflict_id} is about an unregistered model",
            )
        )


# --- conflicts and references --------------------------------------------------------------


def _check_conflicts(stype: SyncedType, report: Report) -> None:
    open_here = Conflict.objects.filter(status=ConflictStatus.OPEN, model=stype.label)
    report.counts["open_conflicts"] += open_here.count()
    model = stype.model._default_manager
    for conflict_id, object_id in open_here.filter(
        ~Exists(model.filter(pk=OuterRef("object_id")))
    ).values_list("id", "object_id"):
        report.problems.append(
            Problem(
                CONFLICT,
                stype.label,
                str(object_id),
                f"open conflict {conflict_id} is about a missing object",
            )
        )


def _check_references(stype: SyncedType, report: Report) -> None:
    """Live objects pointing at a deleted or missing synced object."""
    live = stype.model._default_manager.filter(deleted_at__isnull=True)
    for name, codec in stype.references.items():
        target = registry.for_model(codec.ref_model) if codec.ref_model is not None else None
        if target is None:
            continue  # not synced (a team, a user): the database's foreign key keeps it
        report.counts["references"] += 1
        attname = codec.attname
        for pk, ref in live.filter(**{f"{name}__deleted_at__isnull": False}).values_list(
            "pk", attname
        ):
            report.problems.append(
                Problem(REFERENCE, stype.label, str(pk), f"{name} is deleted {target.label} {ref}")
            )
        gone = target.model._default_manager.filter(pk=OuterRef(attname))
        for pk, ref in (
            live.filter(**{f"{attname}__isnull": False})
            .filter(~Exists(gone))
            .values_list("pk", attname)
        ):
            report.problems.append(
                Problem(REFERENCE, stype.label, str(pk), f"{name} is missing {target.label} {ref}")
            )


# --- stored push results -------------------------------------------------------------------


def _check_push_results(chunk_size: int, report: Report) -> None:
    """A stored result (replayed to a retrying device) never names a version
    its object does not have: the record commits with the write or not at all."""
    records = (
        MutationRecord.objects.filter(status__in=[Status.APPLIED, Status.MERGED, Status.CONFLICT])
        .exclude(object_id=None)
        .order_by("id")
        .values_list("id", "model", "object_id", "status", "result__version")
    )
    last = 0
    while True:
        page = list(records.filter(id__gt=last)[:chunk_size])
        report.counts["push_results"] += len(page)
        by_model: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for rec in page:
            by_model[rec[1]].append(rec)
        for label, recs in by_model.items():
            stype = registry.get(label)
            if stype is None:
                continue  # no longer synced; the unknown-model check covers live data
            versions = dict(
                stype.model._default_manager.filter(pk__in={r[2] for r in recs}).values_list(
                    "pk", "version"
                )
            )
            for _, _, object_id, status, version in recs:
                have = versions.get(object_id)
                if have is None:
                    detail = f"stored result {status} but no such object"
                elif version is not None and int(version) > have:
                    detail = f"stored result {status} at version {version}, object at {have}"
                else:
                    continue
                report.problems.append(Problem(RECORD, label, str(object_id), detail))
        if len(page) < chunk_size:
            return
        last = page[-1][0]


# --- helpers --------------------------------------------------------------------------


def _add(
    report: Report, check: str, stype: SyncedType, row: Mapping[str, Any], detail: str
) -> None:
    report.problems.append(Problem(check, stype.label, str(row["id"]), detail))


def _spans(numbers: Sequence[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
