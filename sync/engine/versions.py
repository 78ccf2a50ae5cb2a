"""Which schema a device speaks, and which models it must fetch again.

An app says which version of each model it was built against
(`X-Schema-Version`, docs/protocol.md, "App versions and schema changes");
`AppSchema` is that, checked against the registry. A cursor remembers the
versions its device's data was fetched at (`Cursor.v`) and the newest
`Resync` it has seen (`Cursor.e`); `refetch` says which models a pull must
send the device back for (`410 resync_required` naming them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import models

from sync import registry
from sync.registry import SyncedType
from syncbase import reading
from syncbase.errors import SyncError

_PAIR = re.compile(r"^\s*([a-z0-9_]+\.[a-z0-9_]+)\s*=\s*(\d{1,6})\s*$")


@dataclass(frozen=True)
class AppSchema:
    """The version of each model an app speaks: `behind` holds the models it
    speaks at a version older than the current one (0: a model the app does
    not know at all); every other model it speaks as it is now."""

    behind: Mapping[str, int] = field(default_factory=dict)

    def version_of(self, stype: SyncedType) -> int:
        return self.behind.get(stype.label, stype.version)

    def absolute(self) -> dict[str, int]:
        """Every model's version, as a cursor keeps them (1, the usual, left out)."""
        return {label: v for label, v in self.reported().items() if v != 1}

    def reported(self) -> dict[str, int]:
        """Every model's version as the app speaks it (for the device's record)."""
        return {t.label: self.version_of(t) for t in registry.all_types()}

    def unknown(self) -> set[str]:
        return {label for label, v in self.behind.items() if v == 0}

    def upgrade(self, stype: SyncedType, data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        version = self.behind.get(stype.label)
        if version is None:
            return data
        return stype.history.upgrade(data, version, creating=creating)

    def downgrade(self, stype: SyncedType, data: dict[str, Any]) -> dict[str, Any]:
        version = self.behind.get(stype.label)
        if version is None:
            return data
        return stype.history.downgrade(data, version)

    def error_fields(self, stype: SyncedType, errors: dict[str, list[str]]) -> dict[str, list[str]]:
        """A rejection's errors keyed by the app's field names (`serial` for
        `serial_number`; a part of a split field under the old field). A field
        the app does not have keeps its name."""
        version = self.behind.get(stype.label)
        if not version:
            return errors
        out: dict[str, list[str]] = {}
        for name, messages in errors.items():
            known = name in stype.codecs
            named = stype.history.downgrade_some({name: None}, version) if known else {}
            for old in named or [name]:
                out.setdefault(old, []).extend(m for m in messages if m not in out.get(old, []))
        return out

    def conflict(self, body: dict[str, Any]) -> dict[str, Any]:
        """A conflict as the API describes it, in the app's shape: the base and
        server states whole, the app's side and the fields at stake as far
        as they go (sync.schema.History.downgrade_some)."""
        stype = registry.get(body.get("model") or "")
        version = self.behind.get(stype.label) if stype is not None else None
        if stype is None or not version:
            return body
        history = stype.history
        out = dict(body)
        for key in ("base_data", "server_data"):
            if out.get(key) is not None:
                out[key] = history.downgrade(out[key], version)
        client = body.get("client_data")
        if client is not None:
            # The app's side holds the fields it changed; an old field made of
            # several (a split) takes the parts it did not change from the base.
            names = history.downgrade_some(client, version)
            whole = body.get("base_data") or body.get("server_data")
            if whole is not None:
                full = history.downgrade({**whole, **client}, version)
                names = {name: full.get(name, value) for name, value in names.items()}
            out["client_data"] = names
        out["fields"] = sorted(history.downgrade_some(dict.fromkeys(out["fields"]), version))
        return out

    def state(self, body: dict[str, Any] | None) -> dict[str, Any] | None:
        """An object as the API gives it (model, id, version, data), in the app's shape."""
        stype = registry.get(body.get("model") or "") if body else None
        if body is None or stype is None or body.get("data") is None:
            return body
        return {**body, "data": self.downgrade(stype, body["data"])}


CURRENT = AppSchema()


def parse_schema(raw: str | None) -> AppSchema:
    """`X-Schema-Version: fieldwork.customer=1, fieldwork.workorder=3`: every
    model the app knows, with the version it was built against. Absent: the
    current schema. A model the server no longer has is ignored (it was
    retired); one the app does not name is one it does not know."""
    if raw is None or not raw.strip():
        return CURRENT
    named: dict[str, int] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        match = _PAIR.match(part.lower())
        if match is None:
            raise _bad(f"{part.strip()[:60]!r} is not label=version.")
        named[match.group(1)] = int(match.group(2))
    behind: dict[str, int] = {}
    for stype in registry.all_types():
        version = named.get(stype.label, 0)
        if version > stype.version or (version == 0 and stype.label in named):
            raise _bad(
                f"{stype.label} has versions 1 to {stype.version} here; the app says "
                f"{version}. (A newer app than this server: the server was rolled back?)"
            )
        if version != stype.version:
            behind[stype.label] = version
    return AppSchema(behind) if behind else CURRENT


def _bad(detail: str) -> SyncError:
    return SyncError(
        "bad_schema_version",
        f"X-Schema-Version: {detail} See GET /api/v1/sync/models/ for each model's version.",
    )


# --- targeted re-sync ------------------------------------------------------------------


def resynced_after(seen: int, newest: int) -> set[str]:
    """The models re-synced after `seen`, given the newest re-sync's id (the
    pull's horizon reads it: asked only when there is one to find)."""
    if newest <= seen:
        return set()
    from sync.models import Resync

    found = Resync.objects.using(reading.alias()).filter(id__gt=seen)
    return set(found.values_list("model", flat=True))


def resync(model: type[models.Model] | str, *, reason: str = "") -> int:
    """Every device fetches this model again at its next pull (its other
    models keep their place). Call it after changing the model's rows in a
    way the feed did not carry (a column backfilled with triggers off, a
    restore). Returns the re-sync's id."""
    from sync.models import Resync

    label = model if isinstance(model, str) else model._meta.label_lower
    if registry.get(label) is None:
        raise ValueError(f"{label} is not a synced model")
    return Resync.objects.create(model=label, reason=reason[:200]).pk


def refetch(
    *,
    held: Mapping[str, int] | None,
    seen: int | None,
    newest: int,
    schema: AppSchema,
    labels: Iterable[str] | None,
) -> list[str]:
    """The models a device whose cursor says it holds data at versions `held`
    and has seen re-syncs up to `seen` must fetch again: those re-synced since,
    and those whose app now speaks a newer version than its data is in (the
    app was upgraded: its data lacks what the new version adds). Only models
    in `labels` (the cursor's filter; None: all) that the app knows."""
    in_filter = set(labels) if labels is not None else {t.label for t in registry.all_types()}
    wanted: set[str] = set()
    if seen is not None:
        wanted |= resynced_after(seen, newest)
    if held is not None:
        for stype in registry.all_types():
            if schema.version_of(stype) > held.get(stype.label, 1):
                wanted.add(stype.label)
    return sorted((wanted & in_filter) - schema.unknown())
