"""Which models sync, with which fields, scope and conflict policy.

A model opts in once, usually in its app's `ready()`:

    sync.register(WorkOrder, fields=["title", "status", "customer", "team"],
                  scope={"user": "owner", "team": "team"}, policy="merge")

`scope` maps a channel prefix to a field: an object is in channel
`<prefix>:<value of field>` for each non-null field. Every object is also
owned by the user who created it (`owner_field`), and a user is always a member
of `user:<their id>`; other channels are granted (`sync.engine.grants.channel_grant`).
Scope is declarative rather than a callable so that pull can compute channels
from plain rows, without building model instances.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson
from django.core.exceptions import FieldDoesNotExist
from django.db import connection, models
from django.db.models import signals
from django.db.models.base import ModelState

from sync.choices import Policy, ResolvedBy
from sync.codecs import FieldCodec, codec_for
from sync.merge import Resolution, Resolver
from sync.schema import History, Step

__all__ = ["Resolution", "Resolver", "SyncedType", "register"]

if TYPE_CHECKING:
    from sync.models import SyncedModel

# Fields every synced model has and that only the server writes.
SYSTEM_FIELDS = ("created_at", "updated_at")


@dataclass(eq=False)  # identity: one entry per model, used as a dict key
class SyncedType:
    model: type[SyncedModel]
    label: str
    codecs: dict[str, FieldCodec]
    scope: dict[str, str]
    policy: Policy
    resolver: Resolver | None
    owner_field: str | None
    conflict_resolution: ResolvedBy = ResolvedBy.OWNER
    # Its schema's versions and how to translate between them (sync.schema).
    history: History = field(default_factory=History)
    # Derived once: pull and push consult these for every object.
    writable: dict[str, FieldCodec] = field(init=False)
    references: dict[str, FieldCodec] = field(init=False)
    scope_attnames: list[tuple[str, str]] = field(init=False)
    row_attnames: list[str] = field(init=False)
    _pairs: list[tuple[str, str]] = field(init=False, repr=False)
    # For `new`, worked out on first use (signal receivers connect in ready()).
    _plain_init: bool | None = field(init=False, repr=False, default=None)
    _defaults: list[tuple[str, Callable[[], Any]]] = field(init=False, repr=False)
    _attnames: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.writable = {n: c for n, c in self.codecs.items() if not c.read_only}
        self.references = {n: c for n, c in self.codecs.items() if c.type == "reference"}
        self.scope_attnames = [
            (prefix, self.codecs[name].attname) for prefix, name in self.scope.items()
        ]
        # Columns pull and push need: state, scope and every synced field.
        self.row_attnames = ["id", "version", "deleted_at"]
        for codec in self.codecs.values():
            if codec.attname not in self.row_attnames:
                self.row_attnames.append(codec.attname)
        self._pairs = [(n, c.attname) for n, c in self.codecs.items()]

    def channels_of(self, row: Mapping[str, Any]) -> set[str]:
        """Channels of an object given its attname → value mapping (instance __dict__ or row)."""
        return {
            f"{prefix}:{row[attname]}"
            for prefix, attname in self.scope_attnames
            if row.get(attname) is not None
        }

    def new(self, **attrs: Any) -> SyncedModel:
        """An unsaved instance with `attrs` (attname → value) and every other
        field at its default: what `Model(**attrs)` builds, without its
        per-field keyword handling (15 µs of the 18 a work order cost; a push
        of 500 creates builds 500). The model's class is used as it is where
        the shortcut could differ: a model with a parent table, or someone
        listening to its init signals."""
        model = self.model
        if self._plain_init is None:
            meta = model._meta
            self._plain_init = not (
                meta.parents
                or signals.pre_init.has_listeners(model)
                or signals.post_init.has_listeners(model)
            )
            self._defaults = [(f.attname, f.get_default) for f in meta.concrete_fields]
            self._attnames = frozenset(attname for attname, _ in self._defaults)
        if not self._plain_init:
            return model(**attrs)
        if not attrs.keys() <= self._attnames:
            # What Model(**attrs) refuses too; never dropped silently.
            unknown = ", ".join(sorted(attrs.keys() - self._attnames))
            raise TypeError(f"{model.__name__} has no field(s) {unknown}")
        obj = model.__new__(model)
        obj._state = ModelState()
        values = obj.__dict__
        for attname, default in self._defaults:
            values[attname] = attrs[attname] if attname in attrs else default()
        return obj

    def encode(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Wire form with every value normalised to JSON types (for comparing and storing)."""
        return {name: c.encode(row[c.attname]) for name, c in self.codecs.items()}

    def encode_for_render(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Wire form for a response body: the pull hot path leaves UUIDs, dates and
        datetimes to the orjson renderer, which writes them exactly as `encode` does
        (UTC datetimes with a Z suffix), at a fraction of the cost."""
        return {name: row[attname] for name, attname in self._pairs}

    @cached_property
    def wire_sql(self) -> str | None:
        """SQL (PostgreSQL) for the wire form of `data` as compact JSON text, the
        same fields in the same order as `encode_for_render`; None if a field
        needs Python. Concatenated rather than json_build_object, which writes
        " : " between names and values and takes at most 50 of them."""
        table = connection.ops.quote_name(self.model._meta.db_table)
        parts = []
        for name, codec in self.codecs.items():
            expression = codec.json_sql(f"{table}.{connection.ops.quote_name(codec.attname)}")
            if expression is None:
                return None
            # Names are Python identifiers: nothing in them to escape.
            value = f"COALESCE({expression}, 'null')"
            parts.append(f"'{orjson.dumps(name).decode()}:' || {value}")
        return "'{' || " + " || ',' || ".join(parts) + " || '}'" if parts else "'{}'"

    @cached_property
    def change_sql(self) -> str | None:
        """SQL (PostgreSQL) for this model's upsert change as a pull response
        carries it (docs/protocol.md, "Pull"): the bytes `render` would write for
        it; None if a field needs Python."""
        if self.wire_sql is None:
            return None
        table = connection.ops.quote_name(self.model._meta.db_table)
        # A label is app_label.model_name: nothing to escape, in JSON or SQL.
        head = orjson.dumps({"model": self.label}).decode()[:-1]
        return (
            f"""'{head},"id":"' || {table}.id::text || '","op":"upsert","version":' """
            f"""|| {table}.version::text || ',"data":' || {self.wire_sql} || '}}'"""
        )

    @property
    def version(self) -> int:
        """The current version of its schema (1 until its history has a step)."""
        return self.history.version

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.label,
            "version": self.version,
            "fields": {name: c.describe() for name, c in self.codecs.items()},
            "conflict_policy": self.policy,
            "conflict_resolution": self.conflict_resolution,
            "history": self.history.describe(),
        }


_registry: dict[str, SyncedType] = {}


@dataclass(frozen=True)
class Referrer:
    """A foreign key of a synced model pointing at another synced model."""

    type: SyncedType
    attname: str
    on_delete: Callable[..., Any]  # django.db.models.CASCADE, PROTECT, SET_NULL, ...
    field: models.ForeignKey


_referrers: dict[str, list[Referrer]] = {}


def referrers(label: str) -> list[Referrer]:
    """Every foreign key of a synced model that points at model `label`."""
    if not _referrers and _registry:
        for source in _registry.values():
            for field in source.model._meta.concrete_fields:
                if not isinstance(field, models.ForeignKey):
                    continue
                target = field.related_model._meta.label_lower
                if target in _registry:
                    on_delete = field.remote_field.on_delete
                    assert on_delete is not None  # noqa: S101 - every ForeignKey has one
                    _referrers.setdefault(target, []).append(
                        Referrer(source, field.attname, on_delete, field)
                    )
    return _referrers.get(label, [])


def register(
    model: type[models.Model],
    *,
    fields: Iterable[str],
    scope: Mapping[str, str] | None = None,
    read_only: Iterable[str] = (),
    policy: str = Policy.MERGE,
    resolver: Resolver | None = None,
    owner_field: str | None = "owner",
    conflict_resolution: str = ResolvedBy.OWNER,
    limits: Mapping[str, int] | None = None,
    history: Iterable[Step] = (),
) -> SyncedType | None:
    """Make `model` (a `sync.models.SyncedModel`) available to pull, push and the data API.

    A model sync cannot serve (a primary key that is not a UUID, a field or
    scope field it does not have) is not registered: `manage.py check` names
    it (sync.E004, sync.E005) and None is returned, so that the project still
    starts and the check can run.

    `conflict_resolution="staff"` keeps its conflicts for staff: the user who
    raised one cannot settle it from the app. `limits` caps text fields
    (characters) and JSON fields (bytes) the model leaves unbounded; by default
    SYNC_MAX_TEXT_CHARS and SYNC_MAX_JSON_BYTES apply.

    `history` lists the schema changes older apps still speak, one
    `sync.schema` step per version (Renamed, Added, Split, Removed, Retyped,
    Changed): pushes from those apps are upgraded, what they pull is
    downgraded (docs/protocol.md, "App versions and schema changes").
    """
    from sync.models import SyncedModel

    if not issubclass(model, SyncedModel):
        raise TypeError(
            f"{model.__name__} must subclass sync.models.SyncedModel (README, "
            '"Add sync to your Django project")'
        )
    if resolver is not None and policy == Policy.MERGE:
        policy = Policy.CUSTOM
    if policy not in Policy.values:
        raise ValueError(f"Unknown conflict policy {policy!r}; use one of {Policy.values}")
    if policy == Policy.CUSTOM and resolver is None:
        raise ValueError("policy='custom' needs a resolver")
    if conflict_resolution not in ResolvedBy.values:
        raise ValueError(
            f"Unknown conflict_resolution {conflict_resolution!r}; use one of {ResolvedBy.values}"
        )
    label = model._meta.label_lower
    schema_history = History.of(label, history)
    if not isinstance(model._meta.pk, models.UUIDField):
        _refuse(
            "sync.E004",
            model,
            f"{label} has a {type(model._meta.pk).__name__} primary key; sync needs a UUID "
            "that clients choose.",
            'Keep SyncedModel\'s `id` (README, "Add sync to your Django project": a model '
            "with rows under another key gets a UUID column first, filled by a migration, "
            "then made the primary key).",
        )
        return None
    read_only = set(read_only) | set(SYSTEM_FIELDS)
    names = list(fields)
    if owner_field:
        read_only.add(owner_field)
        if owner_field not in names:
            names.append(owner_field)
    names += [n for n in SYSTEM_FIELDS if n not in names]
    scope = dict(scope if scope is not None else ({"user": owner_field} if owner_field else {}))
    if not scope:
        raise ValueError(f"{label}: a synced model needs a scope or an owner_field")
    for name in scope.values():
        if name not in names:
            names.append(name)
    codecs = {}
    for name in names:
        try:
            django_field = model._meta.get_field(name)
        except FieldDoesNotExist:
            role = "scope field" if name in scope.values() else "field"
            _refuse(
                "sync.E005",
                model,
                f"{label} has no {role} {name!r}.",
                f"Name fields of {model.__name__} in sync.register(fields=..., scope=...).",
            )
            return None
        if not isinstance(django_field, models.Field):
            raise TypeError(f"{label}.{name}: reverse relations cannot be synced")
        codecs[name] = codec_for(
            django_field, read_only=name in read_only, limit=(limits or {}).get(name)
        )
    entry = SyncedType(
        model=model,
        label=label,
        codecs=codecs,
        scope=scope,
        policy=Policy(policy),
        resolver=resolver,
        owner_field=owner_field,
        conflict_resolution=ResolvedBy(conflict_resolution),
        history=schema_history,
    )
    _registry[label] = entry
    model._sync_captured = True  # type: ignore[attr-defined]  # read by sync.models
    _referrers.clear()  # recomputed with the new model on next use
    return entry


@dataclass(frozen=True)
class Refusal:
    """A model `register` refused, for the system checks (sync.checks)."""

    id: str
    model: type[models.Model]
    message: str
    hint: str


refused: list[Refusal] = []


def _refuse(check_id: str, model: type[models.Model], message: str, hint: str) -> None:
    refused.append(Refusal(check_id, model, message, hint))


@dataclass(frozen=True)
class Retired:
    """A model apps in the field may still push, that the server no longer
    syncs (`retire`)."""

    label: str
    note: str
    into: Callable[[dict[str, Any]], dict[str, Any] | None] | None


_retired: dict[str, Retired] = {}


def retire(
    label: str,
    *,
    note: str = "",
    into: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> Retired:
    """A model no longer synced, that older apps may still push (docs/protocol.md,
    "App versions and schema changes"). Their mutations of it are rejected with
    reason `retired` and `note` (so their outbox drains, and the app can tell
    the user), or, with `into`, mapped to a mutation of a model that is synced
    (`into(mutation) -> mutation`, None to reject it): its data then lands
    there. The mapped mutation keeps the original's `mutation_id`."""
    label = label.lower()
    if label in _registry:
        raise ValueError(f"{label} is registered for sync; unregister it before retiring it")
    entry = Retired(label, note, into)
    _retired[label] = entry
    return entry


def retired(label: str) -> Retired | None:
    return _retired.get(label)


def get(label: str) -> SyncedType | None:
    return _registry.get(label)


def for_model(model: type[models.Model]) -> SyncedType | None:
    return _registry.get(model._meta.label_lower)


def all_types() -> list[SyncedType]:
    return [_registry[k] for k in sorted(_registry)]
