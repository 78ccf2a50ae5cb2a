"""What discovery (`GET /api/v1/sync/models/`) says about each model, and the
offline validation it makes possible.

A device that validates before queueing tells the user at once, while they
are still on the form, instead of a `rejected` result minutes later. The
checks mirror the server's (docs/protocol.md, "Discovery" and "Wire types"),
with its messages; the server stays the judge, so anything this misses still
comes back as `rejected`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Errors = dict[str, list[str]]

# Close to Django's validators, which the server uses; deliberately lenient
# where they are intricate: the point is to catch typos offline.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^(https?|ftps?)://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FORMAT_MESSAGES = {  # Django's wording, which the server answers with
    "email": "Enter a valid email address.",
    "url": "Enter a valid URL.",
    "slug": "Enter a valid slug (letters, numbers, underscores or hyphens).",
    "ip": "Enter a valid IPv4 or IPv6 address.",
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    required: bool
    read_only: bool
    nullable: bool
    choices: tuple[Any, ...] | None = None
    model: str | None = None  # for references
    max_length: int | None = None
    max_bytes: int | None = None  # for json
    format: str | None = None
    has_default: bool = False
    default: Any = None

    @classmethod
    def from_wire(cls, name: str, spec: Mapping[str, Any]) -> FieldSpec:
        choices = spec.get("choices")
        return cls(
            name=name,
            type=spec["type"],
            required=bool(spec.get("required")),
            read_only=bool(spec.get("read_only")),
            nullable=bool(spec.get("nullable")),
            choices=tuple(choices) if choices is not None else None,
            model=spec.get("model"),
            max_length=spec.get("max_length"),
            max_bytes=spec.get("max_bytes"),
            format=spec.get("format"),
            has_default="default" in spec,
            default=spec.get("default"),
        )

    def check(self, value: Any) -> list[str]:
        """The messages for `value`, empty when the server would take it."""
        if value is None:
            return [] if self.nullable else ["This field may not be null."]
        if not _has_type(self, value):
            return [f"Expected a JSON value of type {self.type}."]
        problems: list[str] = []
        if isinstance(value, str):
            if "\x00" in value:
                problems.append("NUL characters are not allowed.")
            if self.max_length is not None and len(value) > self.max_length:
                problems.append(
                    f"Ensure this value has at most {self.max_length} characters "
                    f"(it has {len(value)})."
                )
            # "required" on a string means it may not be blank (discovery: a
            # field is required unless it is read-only, nullable, has a
            # default, or may be blank).
            if self.required and not value.strip() and self.type in ("string", "text"):
                problems.append("This field may not be blank.")
            if value and self.format and not _has_format(self.format, value):
                problems.append(FORMAT_MESSAGES.get(self.format, f"Enter a valid {self.format}."))
        if self.choices is not None and value not in self.choices:
            problems.append(f"Value {value!r} is not a valid choice.")
        if self.type == "json" and self.max_bytes is not None:
            size = len(json.dumps(value, separators=(",", ":")).encode())
            if size > self.max_bytes:
                problems.append(f"Ensure this value has at most {self.max_bytes} bytes.")
        return problems


@dataclass(frozen=True)
class ModelSpec:
    label: str
    fields: dict[str, FieldSpec]
    conflict_policy: str
    conflict_resolution: str
    version: int = 1  # of the model's schema, on the server now (discovery's `version`)

    @classmethod
    def from_wire(cls, description: Mapping[str, Any]) -> ModelSpec:
        return cls(
            label=description["model"],
            fields={
                name: FieldSpec.from_wire(name, spec)
                for name, spec in description["fields"].items()
            },
            conflict_policy=description.get("conflict_policy", "merge"),
            conflict_resolution=description.get("conflict_resolution", "owner"),
            version=int(description.get("version") or 1),
        )

    @property
    def writable(self) -> list[str]:
        return [name for name, spec in self.fields.items() if not spec.read_only]

    def defaults(self) -> dict[str, Any]:
        """What the server stores for writable fields a create leaves out."""
        return {
            name: spec.default
            for name, spec in self.fields.items()
            if spec.has_default and not spec.read_only
        }

    def validate(self, data: Mapping[str, Any], *, creating: bool) -> Errors:
        """The errors the server would answer a push of `data` with."""
        errors: Errors = {}
        for name, value in data.items():
            spec = self.fields.get(name)
            if spec is None:
                errors[name] = ["Unknown field."]
            elif spec.read_only:
                errors[name] = ["This field is read-only."]
            else:
                problems = spec.check(value)
                if problems:
                    errors[name] = problems
        if creating:
            for name, spec in self.fields.items():
                if spec.required and name not in data:
                    errors.setdefault(name, []).append("This field is required.")
        return errors


def _has_type(spec: FieldSpec, value: Any) -> bool:
    """Strict JSON typing, as the server checks it: `"2"` is no number, `1` no
    boolean, `true` no integer."""
    kind = spec.type
    if kind in ("string", "text"):
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return value == value and value not in (float("inf"), float("-inf"))  # finite
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "date":
        return isinstance(value, str) and _parses(_date, value)
    if kind == "datetime":
        return isinstance(value, str) and _parses(_datetime, value)
    if kind == "uuid":
        return isinstance(value, str) and _parses(uuid.UUID, value)
    if kind == "reference":
        # A user reference is the user's integer id; synced models use UUIDs.
        if spec.model == "auth.user":
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, str) and _parses(uuid.UUID, value)
    return True  # json: any JSON value


def _date(value: str) -> dt.date:
    if not _DATE.match(value):
        raise ValueError(value)
    return dt.date.fromisoformat(value)


def _datetime(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _parses(parse: Any, value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _has_format(fmt: str, value: str) -> bool:
    if fmt == "email":
        return bool(_EMAIL.match(value))
    if fmt == "url":
        return bool(_URL.match(value))
    if fmt == "slug":
        return bool(_SLUG.match(value))
    if fmt == "ip":
        return _parses(ipaddress.ip_address, value)
    return True  # a format this client does not know: the server decides
