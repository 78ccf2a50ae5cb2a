"""What the staff's conflict pages show: a conflict laid out field by field
against the object's current state, and the resolution a form asks for.

Plain functions of a conflict and the object's current row; the admin
(`sync.admin.conflicts`) renders them and calls the resolution service.

Staff read names, not ids: an object, the objects its references point to
and a device are shown by what they are called (their `__str__`, a device's
name), the id kept for a link or a title. Names are read for a whole page at
once (`name_references`, `current_objects`): one query per model.
"""

from __future__ import annotations

import builtins
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db import models

from sync import registry
from sync.admin.guards import pk_or_none
from sync.choices import Choice, ConflictKind
from sync.models import Conflict, SyncedModel
from sync.registry import SyncedType

# Form field names of the per-field choice and the typed value.
PICK = "pick-"
VALUE = "value-"
PICK_SERVER, PICK_CLIENT, PICK_VALUE = "server", "client", "value"


@dataclass
class FieldRow:
    name: str
    type: str
    at_stake: bool
    sent: bool  # the client sent a value for it
    base: Any
    server: Any
    client: Any
    pick: str = ""  # what the form chose (server / client / value)
    typed: str = ""  # the typed value, as text
    errors: list[str] = field(default_factory=list)
    # builtins.type: the `type` field above shadows the builtin in this class body.
    refers_to: builtins.type[models.Model] | None = None  # a reference's model
    # A reference's objects by id (as text): what each one's __str__ says.
    names: dict[str, str] = field(default_factory=dict)

    def referred_id(self, value: Any) -> Any:
        """The id a value of this row refers to (None: not a reference, or no id)."""
        if self.refers_to is None or not isinstance(value, str | int) or isinstance(value, bool):
            return None
        return pk_or_none(self.refers_to, value)

    def name_of(self, value: Any) -> str | None:
        """The name of the object a reference value points to, if it exists."""
        pk = self.referred_id(value)
        return None if pk is None else self.names.get(str(pk))

    def display(self, value: Any) -> str:
        """A value of this row as text: a reference by its object's name."""
        name = self.name_of(value)
        return shown(value) if name is None else name

    @property
    def choosable(self) -> bool:
        return self.at_stake or self.sent

    @property
    def server_changed(self) -> bool:
        return self.base is not _MISSING and self.server != self.base

    @property
    def client_changed(self) -> bool:
        return self.sent and (self.base is _MISSING or self.client != self.base)

    @property
    def differs(self) -> bool:
        return self.sent and self.client != self.server


class _Missing:
    def __repr__(self) -> str:
        return "(not known)"


_MISSING: Any = _Missing()


@dataclass
class ConflictView:
    conflict: Conflict
    stype: SyncedType | None
    current: SyncedModel | None
    rows: list[FieldRow]

    @property
    def server_deleted(self) -> bool:
        return self.current is not None and self.current.is_deleted

    @property
    def object_name(self) -> str:
        """The object by what its __str__ says (by model and short id once it is gone)."""
        if self.current is not None:
            return object_name(self.current)
        return f"{self.conflict.model} {short_id(self.conflict.object_id)}"

    @property
    def owner(self) -> Any:
        """The object's owner (a user), if its model has one."""
        if self.current is None or self.stype is None or not self.stype.owner_field:
            return None
        return getattr(self.current, self.stype.owner_field)

    @property
    def client_deleted(self) -> bool:
        return self.conflict.kind == ConflictKind.DELETE_UPDATE

    @property
    def moved_on(self) -> bool:
        """The object changed after the conflict was flagged."""
        return self.current is not None and self.current.version != self.conflict.server_version

    @property
    def resolvable(self) -> bool:
        return self.stype is not None and self.current is not None

    @property
    def per_field(self) -> bool:
        """Whether a value per field makes sense (not for a client's delete)."""
        return self.resolvable and not (self.client_deleted and not self.server_deleted)

    @property
    def labels(self) -> dict[str, str]:
        """What each choice does for this conflict, in words."""
        if self.server_deleted:
            return {
                Choice.SERVER: "Keep deleted",
                Choice.CLIENT: "Restore with the client's values",
                Choice.FIELDS: "Restore with the values chosen below",
            }
        if self.client_deleted:
            return {Choice.SERVER: "Keep the object", Choice.CLIENT: "Delete it, as the client did"}
        return {
            Choice.SERVER: "Keep server for all",
            Choice.CLIENT: "Take client for all",
            Choice.FIELDS: "Resolve with the choices below",
        }


def conflict_view(conflict: Conflict, current: SyncedModel | None) -> ConflictView:
    stype = registry.get(conflict.model)
    if stype is None:
        return ConflictView(conflict, None, current, [])
    base = conflict.base_data
    server = stype.encode(current.__dict__) if current is not None else {}
    client = conflict.client_data or {}
    rows = [
        FieldRow(
            name=name,
            type=codec.type,
            at_stake=name in conflict.fields,
            sent=name in client,
            base=base.get(name, _MISSING) if base is not None else _MISSING,
            server=server.get(name),
            client=client.get(name),
            refers_to=codec.ref_model,
        )
        for name, codec in stype.writable.items()
    ]
    # Fields at stake first, then the client's other changes, then the rest.
    rows.sort(key=lambda r: (not r.at_stake, not r.sent))
    return ConflictView(conflict, stype, current, rows)


def current_objects(conflicts: Iterable[Conflict]) -> dict[tuple[str, uuid.UUID], SyncedModel]:
    """The current rows of the conflicts' objects, one query per model."""
    wanted: dict[str, set[uuid.UUID]] = {}
    for conflict in conflicts:
        wanted.setdefault(conflict.model, set()).add(conflict.object_id)
    found: dict[tuple[str, uuid.UUID], SyncedModel] = {}
    for label, ids in wanted.items():
        stype = registry.get(label)
        if stype is None:
            continue
        objects = stype.model._default_manager.filter(pk__in=ids)
        if stype.owner_field:
            objects = objects.select_related(stype.owner_field)  # the page names the owner
        for obj in objects:
            found[(label, obj.pk)] = obj
    return found


def name_references(views: Iterable[ConflictView]) -> None:
    """Fill each reference row's `names` with the objects its values point to:
    one query per referenced model for all the views."""
    views = list(views)
    wanted: dict[type[models.Model], set[Any]] = {}
    for view in views:
        for row in view.rows:
            if row.refers_to is None:
                continue
            for value in (row.base, row.server, row.client):
                pk = row.referred_id(value)
                if pk is not None:
                    wanted.setdefault(row.refers_to, set()).add(pk)
    names = {
        model: {str(obj.pk): object_name(obj) for obj in model._default_manager.filter(pk__in=ids)}
        for model, ids in wanted.items()
    }
    for view in views:
        for row in view.rows:
            if row.refers_to is not None:
                row.names = names.get(row.refers_to, {})


def object_name(obj: models.Model) -> str:
    """What staff call an object: its __str__, and whether it is deleted."""
    name = str(obj)
    return f"{name} (deleted)" if getattr(obj, "deleted_at", None) is not None else name


def short_id(object_id: Any) -> str:
    return f"{str(object_id)[:8]}…"


def device_name(name: str | None, platform: str | None, device_id: Any) -> str:
    """A device by its name, else its platform and a short id ("android 3f2a9c1e…")."""
    return name or f"{platform or 'device'} {short_id(device_id)}"


def read_picks(view: ConflictView, form: Mapping[str, str]) -> dict[str, list[str]]:
    """Fill the rows from a submitted form; returns per-field errors."""
    errors: dict[str, list[str]] = {}
    for row in view.rows:
        if not row.choosable:
            continue
        row.pick = form.get(PICK + row.name, "")
        row.typed = form.get(VALUE + row.name, "")
        if row.pick not in (PICK_SERVER, PICK_CLIENT, PICK_VALUE):
            if row.at_stake:
                row.errors = ["Choose the server's value, the client's, or type one."]
                errors[row.name] = row.errors
            continue
        if row.pick == PICK_VALUE:
            try:
                wire_value(row.type, row.typed)
            except ValueError as exc:
                row.errors = [str(exc)]
                errors[row.name] = row.errors
    return errors


def picked_values(view: ConflictView) -> dict[str, Any]:
    """The wire value each chosen row resolves to (after `read_picks` found no error)."""
    values: dict[str, Any] = {}
    for row in view.rows:
        if row.pick == PICK_SERVER:
            values[row.name] = row.server
        elif row.pick == PICK_CLIENT:
            values[row.name] = row.client
        elif row.pick == PICK_VALUE:
            values[row.name] = wire_value(row.type, row.typed)
    return values


def wire_value(wire_type: str, text: str) -> Any:
    """A value typed in a form → its JSON value for `wire_type` (ValueError if not one).

    Text fields keep what was typed; for other types an empty box means null.
    """
    if wire_type in ("string", "text"):
        return text
    text = text.strip()
    if text == "":
        return None
    if wire_type == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError("Enter a whole number.") from None
    if wire_type == "number":
        try:
            number = float(text)
        except ValueError:
            raise ValueError("Enter a number.") from None
        if not math.isfinite(number):
            raise ValueError("Enter a finite number.")
        return number
    if wire_type == "boolean":
        lowered = text.lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
        raise ValueError("Enter true or false.")
    if wire_type in ("json", "blob"):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ValueError("Enter valid JSON.") from None
    return text  # date, datetime, uuid, reference: the service parses these


def shown(value: Any) -> str:
    """A wire value as the page prints it."""
    if value is _MISSING:
        return "(not known)"
    if value is None:
        return "(empty)"
    if value == "":
        return "(blank)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def as_text(value: Any) -> str:
    """A wire value as an editable text box holds it."""
    if value is None or value is _MISSING:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def outcome_in_words(view: ConflictView, choice: str) -> list[str]:
    """What a bulk resolution with `choice` will do to this conflict's object."""
    if not view.resolvable:
        return ["Cannot be resolved here: the object or its model is gone."]
    if view.server_deleted:
        if choice == Choice.SERVER or view.client_deleted:
            return ["Stays deleted."]
        return ["Restored with: " + _assignments(view, (r for r in view.rows if r.sent))]
    if view.client_deleted:
        return ["Deleted."] if choice == Choice.CLIENT else ["Kept as the server has it."]
    if choice == Choice.SERVER:
        return ["Keeps the server's values: " + _assignments(view, view.rows, server=True)]
    return ["Takes the client's values: " + _assignments(view, (r for r in view.rows if r.sent))]


def _assignments(view: ConflictView, rows: Iterable[FieldRow], *, server: bool = False) -> str:
    parts = [
        f"{r.name} = {r.display(r.server if server else r.client)}"
        for r in rows
        if r.at_stake or not server
    ]
    return ", ".join(parts) or "(no fields)"
