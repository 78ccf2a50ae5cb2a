"""A synced model's schema history, so that apps built against an older
schema keep syncing (docs/protocol.md, "App versions and schema changes").

A model's version starts at 1; each step of its history moves it up one
version and says how to translate between the two shapes:

    sync.register(Equipment, fields=[...], history=[
        sync.Renamed(2, "serial", "serial_number"),
        sync.Split(3, "location", into=["building", "room"], split=..., join=...),
        sync.Added(4, "kind", default=lambda payload: "boiler"),
    ])

A push from an app at version 1 is *upgraded* step by step to the current
shape before it is checked and merged; what a pull sends it, and the data of
its push results, is *downgraded* step by step back to version 1. Steps see
plain wire values (docs/protocol.md, "Wire types"); an upgrade sees a
create's whole payload or an update's changed fields only (`creating` tells
which), a downgrade always an object's whole state.

Written here rather than taken from a library: schema translation for a sync
protocol (partial payloads, three-way merges after translation) is not
something the Django ecosystem offers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Data = dict[str, Any]

__all__ = ["Added", "Changed", "Removed", "Renamed", "Retyped", "Split", "Step", "History"]


@dataclass(frozen=True)
class Step:
    """One version of a model's history: from `version - 1` to `version`.
    Subclasses translate; `kind` and `summary()` are what discovery lists."""

    version: int

    kind = "changed"

    def upgrade(self, payload: Data, *, creating: bool) -> Data:
        return payload

    def downgrade(self, data: Data) -> Data:
        return data

    def summary(self) -> str:
        return ""

    def fields(self) -> set[str]:
        """Current field names this step introduces (left out for older apps)."""
        return set()


@dataclass(frozen=True)
class Renamed(Step):
    """`old` is now called `new`; the values are the same."""

    old: str = ""
    new: str = ""

    kind = "renamed"

    def upgrade(self, payload: Data, *, creating: bool) -> Data:
        if self.old in payload:
            payload[self.new] = payload.pop(self.old)
        return payload

    def downgrade(self, data: Data) -> Data:
        if self.new in data:
            data[self.old] = data.pop(self.new)
        return data

    def summary(self) -> str:
        return f"{self.old} renamed to {self.new}"


@dataclass(frozen=True)
class Added(Step):
    """A new field. Older apps do not see it; their creates get `default`
    (a value, or a function of the create's payload: a value derived from
    other fields), their updates leave it as it is."""

    field: str = ""
    default: Any = None

    kind = "added"

    def upgrade(self, payload: Data, *, creating: bool) -> Data:
        if creating and self.field not in payload:
            payload[self.field] = self.default(payload) if callable(self.default) else self.default
        return payload

    def downgrade(self, data: Data) -> Data:
        data.pop(self.field, None)
        return data

    def summary(self) -> str:
        return f"{self.field} added"

    def fields(self) -> set[str]:
        return {self.field}


@dataclass(frozen=True)
class Removed(Step):
    """A field that is gone. Older apps still see it, with `default`; what
    they write to it has nowhere to go and is left out (map it to another
    field with `Changed` if it should not be)."""

    field: str = ""
    default: Any = None

    kind = "removed"

    def upgrade(self, payload: Data, *, creating: bool) -> Data:
        payload.pop(self.field, None)
        return payload

    def downgrade(self, data: Data) -> Data:
        data[self.field] = self.default(data) if callable(self.default) else self.default
        return data

    def summary(self) -> str:
        return f"{self.field} removed"


@dataclass(frozen=True)
class Split(Step):
    """One field became several: `split(old value) -> {new field: value}`
    for pushes, `join({new field: value}) -> old value` for pulls. An old
    app's edit of the joined field reaches every part; the three-way merge
    then keeps a part it did not really change (its value equals the base)."""

    old: str = ""
    into: tuple[str, ...] = ()
    split: Callable[[Any], Data] = dataclasses.field(default=lambda value: {})
    join: Callable[[Data], Any] = dataclasses.field(default=lambda parts: None)

    kind = "split"

    def upgrade(self, payload: Data, *, creating: bool) -> Data:
        if self.old in payload:
            payload.update(self.split(payload.pop(self.old)))
        return payload

    def downgrade(self, data: Data) -> Data:
        parts = {name: data.pop(name, None) for name in self.into}
        data[self.old] = self.join(parts)
        return data

    def summary(self) -> str:
        return f"{self.old} split into {', '.join(self.into)}"

    def fields(self) -> set[str]:
        return set(self.into)


@dataclass(frozen=True)
class Retyped(Step):
    """A field's values changed type or unit: `up(old value)`, `down(new value)`."""

    field: str = ""
    up: Callable[[Any], Any] = dataclasses.field(default=lambda value: value)
    down: Callable[[Any], Any] = dataclasses.field(default=lambda value: value)

    kind = "retyped"

    def upgrade(self, payload: Data, *, creating: bool) -> Data:
        if self.field in payload:
            payload[self.field] = self.up(payload[self.field])
        return payload

    def downgrade(self, data: Data) -> Data:
        if self.field in data:
            data[self.field] = self.down(data[self.field])
        return data

    def summary(self) -> str:
        return f"{self.field} changed type"


@dataclass(frozen=True)
class Changed(Step):
    """Anything else, as two small functions: `up(payload, creating)` and
    `down(data)`, each returning the translated dict."""

    up: Callable[..., Data] = dataclasses.field(default=lambda payload, creating: payload)
    down: Callable[[Data], Data] = dataclasses.field(default=lambda data: data)
    text: str = ""
    added: tuple[str, ...] = ()  # current fields older apps do not have

    def upgrade(self, payload: Data, *, creating: bool) -> Data:
        return self.up(payload, creating)

    def downgrade(self, data: Data) -> Data:
        return self.down(data)

    def summary(self) -> str:
        return self.text

    def fields(self) -> set[str]:
        return set(self.added)


class TranslationError(Exception):
    """A step could not translate a value an older app sent."""


@dataclass(frozen=True)
class History:
    """A model's steps, in version order: version 1 is the shape before the
    first step, and the current version that after the last."""

    steps: tuple[Step, ...] = ()

    @classmethod
    def of(cls, label: str, steps: Iterable[Step]) -> History:
        ordered = tuple(steps)
        for expected, step in enumerate(ordered, start=2):
            if not isinstance(step, Step):
                raise TypeError(f"{label}: history entries must be sync.schema steps, not {step!r}")
            if step.version != expected:
                raise ValueError(
                    f"{label}: history step {step!r} should be version {expected}: "
                    "versions start at 2 (1 is the shape before any step) and go up one at a time."
                )
        return cls(ordered)

    @property
    def version(self) -> int:
        return len(self.steps) + 1

    def upgrade(self, payload: Data, from_version: int, *, creating: bool) -> Data:
        """A push's data from an app at `from_version`, in the current shape."""
        out = dict(payload)
        for step in self.steps[max(from_version, 1) - 1 :]:
            try:
                out = step.upgrade(out, creating=creating)
            except Exception as exc:  # a step's own code, on a device's values
                raise TranslationError(
                    f"Could not translate from version {step.version - 1} "
                    f"({step.summary() or step.kind}): {exc}"
                ) from exc
        return out

    def downgrade(self, data: Data, to_version: int) -> Data:
        """An object's current state in the shape of version `to_version`."""
        out = dict(data)
        for step in reversed(self.steps[max(to_version, 1) - 1 :]):
            out = step.downgrade(out)
        return out

    def downgrade_some(self, data: Data, to_version: int) -> Data:
        """Some fields of an object (a conflict's side: the fields an edit
        touched) in the shape of `to_version`: each step applied only where
        the fields it changed are there; a field removed since is not filled
        in, and a step whose code needs the whole object is left out."""
        out = dict(data)
        for step in reversed(self.steps[max(to_version, 1) - 1 :]):
            if isinstance(step, Removed):
                continue
            if isinstance(step, Split) and not any(name in out for name in step.into):
                continue
            try:
                out = step.downgrade(dict(out))
            except Exception:  # noqa: BLE001, S112 - a Changed step's code on part of an object
                continue
        return out

    def describe(self) -> list[dict[str, Any]]:
        return [{"version": s.version, "kind": s.kind, "summary": s.summary()} for s in self.steps]

    def newer_fields(self, version: int) -> set[str]:
        """Fields an app at `version` does not have."""
        return set().union(*(s.fields() for s in self.steps[max(version, 1) - 1 :]))


def versions_header(versions: Sequence[tuple[str, int]]) -> str:
    """`X-Schema-Version`'s value for these (label, version) pairs."""
    return ",".join(f"{label}={version}" for label, version in versions)
