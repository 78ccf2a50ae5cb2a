"""What the staff's conflict pages show: a conflict laid out field by field
against the object's current state, and the resolution a form asks for.

Plain functions of a conflict and the object's current row; the admin
(`sync.admin.conflicts`) renders them and calls the resolution service.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from sync import registry
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
        for obj in stype.model._default_manager.filter(pk__in=ids):
            found[(label, obj.pk)] = obj
    return found


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
    if wire_type == "json":
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
        f"{r.name} = {shown(r.server if server else r.client)}"
        for r in rows
        if r.at_stake or not server
    ]
    return ", ".join(parts) or "(no fields)"
