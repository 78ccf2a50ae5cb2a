"""Mutations in the protocol's push form, parsed, and their results."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from sync import registry
from sync.choices import Op, Reason, Status
from sync.registry import SyncedType


@dataclass
class MutationResult:
    mutation_id: str | None
    status: str
    id: str | None = None
    version: int | None = None
    data: dict[str, Any] | None = None
    conflict_id: str | None = None
    errors: dict[str, list[str]] | None = None
    reason: str | None = None  # a Reason, for a rejection

    def as_dict(self) -> dict[str, Any]:
        # Shallow: dataclasses.asdict deep-copies every value, which cost a
        # seventh of a push; the result's dicts are never changed once made.
        return dict(vars(self))


@dataclass
class Mutation:
    """A mutation whose envelope is well-formed."""

    mutation_id: uuid.UUID
    type: SyncedType
    op: str
    id: uuid.UUID
    base_version: int | None
    data: Mapping[str, Any]  # empty for a delete
    # Not in the push form: a back-office write without If-Match (or a bulk item
    # without base_version) applies at whatever version the object has once locked.
    at_current: bool = False

    def digest(self) -> str:
        """What the mutation asks for, in 32 hex digits: a retry under the same
        mutation_id must ask the same (a different change is refused, never
        answered with the first one's result)."""
        # A write at the current version (at_current) learns its base when
        # applied: what it asked for is "whatever is current".
        base = None if self.at_current else self.base_version
        asked = [self.label, self.op, str(self.id), base, self.data]
        text = orjson.dumps(asked, option=orjson.OPT_SORT_KEYS, default=str)
        return hashlib.blake2b(text, digest_size=16).hexdigest()

    @property
    def key(self) -> tuple[str, uuid.UUID]:
        return self.type.label, self.id

    @property
    def label(self) -> str:
        return self.type.label

    def reused(self) -> MutationResult:
        return self.rejected(
            {
                "mutation_id": [
                    "This id was used for another change: a retry sends the same change, "
                    "a new change a new id."
                ]
            },
            Reason.REUSED,
        )

    def rejected(
        self, errors: dict[str, list[str]], reason: str = Reason.INVALID
    ) -> MutationResult:
        return MutationResult(
            str(self.mutation_id), Status.REJECTED, id=str(self.id), errors=errors, reason=reason
        )


@dataclass
class Malformed:
    """A mutation whose envelope is not: rejected before anything is loaded. Its
    mutation_id, when valid, is kept so that a retry replays the rejection."""

    mutation_id: uuid.UUID | None
    result: MutationResult
    label: str = ""
    id: uuid.UUID | None = None


Parsed = Mutation | Malformed


# Op.values builds a new list on every use (a few milliseconds per push of 500).
OPS = frozenset(Op.values)


def parse(raw: Any) -> Parsed:
    """Check a mutation's envelope (field values are checked when it is applied)."""
    if isinstance(raw, dict) and isinstance(raw.get("model"), str):
        gone = registry.retired(raw["model"])
        if gone is not None:
            return _of_retired(raw, gone)
    if not isinstance(raw, dict):
        return Malformed(
            None,
            MutationResult(
                None,
                Status.REJECTED,
                errors={"mutation": ["Must be an object."]},
                reason=Reason.INVALID,
            ),
        )
    errors: dict[str, list[str]] = {}
    mutation_id = _uuid_or_none(raw.get("mutation_id"))
    if mutation_id is None:
        errors["mutation_id"] = ["A UUID is required."]
    label = raw.get("model")
    stype = registry.get(label) if isinstance(label, str) else None
    if stype is None:
        errors["model"] = [f"Unknown model {label!r}; see GET /api/v1/sync/models/."]
    op = raw.get("op")
    if not isinstance(op, str) or op not in OPS:
        errors["op"] = ["Must be one of create, update, delete."]
    object_id = _uuid_or_none(raw.get("id"))
    if object_id is None:
        errors["id"] = ["A UUID is required."]
    base = raw.get("base_version")
    if base is not None and (not isinstance(base, int) or isinstance(base, bool) or base < 0):
        errors["base_version"] = ["Must be a non-negative integer or null."]
    data = raw.get("data")
    if op in (Op.CREATE, Op.UPDATE) and not isinstance(data, dict):
        errors["data"] = ["An object of field values is required."]
    elif isinstance(data, dict) and stype is not None and len(data) > _most_keys(stype):
        # Refused before any is looked at: a body of made-up names costs the
        # server nothing beyond reading it.
        errors["data"] = [
            f"At most {_most_keys(stype)} fields; {stype.label} has {len(stype.codecs)}."
        ]
    if errors or stype is None or mutation_id is None or object_id is None:
        result = MutationResult(
            str(mutation_id) if mutation_id else _str_or_none(raw.get("mutation_id")),
            Status.REJECTED,
            id=str(object_id) if object_id else _str_or_none(raw.get("id")),
            errors=errors,
            reason=Reason.INVALID,
        )
        return Malformed(mutation_id, result, stype.label if stype else "", object_id)
    return Mutation(
        mutation_id, stype, str(op), object_id, base, data if isinstance(data, dict) else {}
    )


def _of_retired(raw: dict[str, Any], gone: registry.Retired) -> Parsed:
    """A mutation of a retired model: mapped to a synced one, or rejected
    saying so (reason `retired`): never left to wedge an outbox."""
    mapped = gone.into(dict(raw)) if gone.into is not None else None
    if mapped is not None and registry.retired(str(mapped.get("model"))) is None:
        return parse({**mapped, "mutation_id": raw.get("mutation_id")})
    mutation_id = _uuid_or_none(raw.get("mutation_id"))
    object_id = _uuid_or_none(raw.get("id"))
    message = f"{gone.label} is no longer synced." + (f" {gone.note}" if gone.note else "")
    result = MutationResult(
        str(mutation_id) if mutation_id else _str_or_none(raw.get("mutation_id")),
        Status.REJECTED,
        id=str(object_id) if object_id else _str_or_none(raw.get("id")),
        errors={"model": [message]},
        reason=Reason.RETIRED,
    )
    return Malformed(mutation_id, result, gone.label, object_id)


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _str_or_none(value: Any) -> str | None:
    """A malformed id or mutation_id repeated in the result, cut to what an id could be."""
    return None if value is None else echo(str(value)[:ECHO_CHARS])


ECHO_CHARS = 100


def _most_keys(stype: SyncedType) -> int:
    """Keys a mutation's data may hold: the model's fields, and room for a
    client a few fields ahead of the server (those are rejected one by one)."""
    return len(stype.codecs) + 50


def echo(text: str) -> str:
    """Client text that a result repeats (an id that is not a UUID, an unknown
    field's name). Results are stored for replays in PostgreSQL's jsonb, which
    cannot hold NUL: one there would fail the whole push, so it is replaced."""
    return text.replace("\x00", "\ufffd")
