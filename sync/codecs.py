"""Wire form of synced fields: JSON in, Python out, and back.

Validation reuses each Django field's own `to_python`, choices/null/blank
checks and validators. It is written here rather than through DRF serializers
because a push of 500 mutations must validate in memory: DRF's relational and
unique validators issue a query per object, and references are instead checked
for the whole batch at once by the push service.
"""

from __future__ import annotations

import builtins
import datetime as dt
import math
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from sync.fields import BlobField
from syncbase.conf import sync_settings

_TYPES: list[tuple[type[models.Field], str]] = [
    (BlobField, "blob"),  # before JSONField, which it is
    (models.ForeignKey, "reference"),
    (models.UUIDField, "uuid"),
    (models.BooleanField, "boolean"),
    (models.DateTimeField, "datetime"),
    (models.DateField, "date"),
    (models.TextField, "text"),
    (models.CharField, "string"),
    (models.IntegerField, "integer"),
    (models.DecimalField, "number"),
    (models.FloatField, "number"),
    (models.JSONField, "json"),
]

# Every wire type, in the order discovery documents them.
WIRE_TYPES = tuple(dict.fromkeys(name for _, name in _TYPES))

# `format` in discovery, for fields whose type alone does not say what is valid.
_FORMATS: list[tuple[type[models.Field], str]] = [
    (models.EmailField, "email"),
    (models.URLField, "url"),
    (models.SlugField, "slug"),
    (models.GenericIPAddressField, "ip"),
]

# JSON types a client may send for each wire type; anything else is a type error
# (Django's to_python would happily turn "yes" into True, a wire protocol must not).
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "reference": (str, int),
    "uuid": (str,),
    "boolean": (bool,),
    "datetime": (str,),
    "date": (str,),
    "text": (str,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "blob": (dict,),
}


# Values the wire form carries as they are (exact types: a subclass, such as
# a choices enum member, takes the checks below).
_AS_IS = frozenset({str, int, float, bool})


@dataclass(frozen=True)
class FieldCodec:
    name: str
    attname: str
    type: str
    required: bool
    nullable: bool
    read_only: bool
    field: models.Field
    choices: tuple[Any, ...] | None = None
    ref_label: str | None = None
    # builtins.type: the `type` field above shadows the builtin in this class body.
    ref_model: builtins.type[models.Model] | None = None
    # The most a value may hold: characters of a string or text, bytes of a
    # JSON value (its compact encoding). Every synced text and JSON field has one.
    max_length: int | None = None
    max_bytes: int | None = None

    def describe(self) -> dict[str, Any]:
        """Discovery's description: enough for a client to validate offline what
        the server would refuse (docs/protocol.md, "Discover")."""
        out: dict[str, Any] = {
            "type": self.type,
            "required": self.required,
            "read_only": self.read_only,
            "nullable": self.nullable,
        }
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.ref_label is not None:
            out["model"] = self.ref_label
        if self.max_length is not None:
            out["max_length"] = self.max_length
        if self.max_bytes is not None:
            out["max_bytes"] = self.max_bytes
        if self.type == "blob":
            # What the server takes (docs/protocol.md, "Files"): check before uploading.
            out["max_size"] = sync_settings.SYNC_BLOB_MAX_BYTES
            out["content_types"] = list(sync_settings.SYNC_BLOB_CONTENT_TYPES)
        fmt = next((name for cls, name in _FORMATS if isinstance(self.field, cls)), None)
        if fmt is not None:
            out["format"] = fmt
        computed = self.field.has_default() and callable(self.field.default)
        if not (self.read_only or self.required or computed):
            # What the server stores when a create leaves the field out.
            out["default"] = self.encode(self.field.get_default())
        return out

    def encode(self, value: Any) -> Any:
        if value is None or type(value) in _AS_IS:
            return value
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, Decimal):
            return float(value)
        return value

    def json_sql(self, column: str) -> str | None:
        """This field's wire value as JSON text, computed by PostgreSQL from
        `column` (quoted; NULL stays NULL), for pull to have the database
        write each object's JSON: equal, once parsed, to what `encode` gives
        (tested value by value), without a Python object per value. None
        where only Python can (a JSON field with its own decoder). Numbers,
        booleans and ids are written by their text form, which is their JSON,
        rather than through to_json: a page writes thousands of them."""
        if self.type == "datetime":
            # orjson's form: UTC, 'Z', microseconds only when there are some
            # (one to_char, zero microseconds then cut: half the cost of
            # formatting the two parts apart and testing the microseconds).
            return (
                f"'\"' || replace(to_char(({column} AT TIME ZONE 'UTC'), "
                "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '.000000Z', 'Z') || '\"'"
            )
        if self.type == "number":
            return f"to_json({column}::float8)::text"  # the wire type of decimals is a JSON number
        if self.type == "json" and getattr(self.field, "decoder", None) is not None:
            return None
        target = self.field
        if isinstance(target, models.ForeignKey):
            target = target.target_field  # an id is written as the key it refers to
        if isinstance(target, models.UUIDField):
            return f"'\"' || {column}::text || '\"'"
        if isinstance(target, models.IntegerField | models.BooleanField):
            return f"{column}::text"
        return f"to_json({column})::text"

    def decode(self, value: Any) -> Any:
        """JSON value → Python value, or ValidationError with the messages for this field."""
        if value is None:
            if not self.nullable:
                raise ValidationError("This field may not be null.")
            return None
        accepts = _ACCEPTS.get(self.type)
        if accepts and (
            not isinstance(value, accepts) or isinstance(value, bool) != (bool in accepts)
        ):
            raise ValidationError(f"Expected a JSON value of type {self.type}.")
        if self.max_length is not None and len(value) > self.max_length:
            # Checked before anything else touches a value that may be megabytes.
            raise ValidationError(
                f"Ensure this value has at most {self.max_length} characters (it has {len(value)})."
            )
        if isinstance(value, str) and "\x00" in value:
            # PostgreSQL cannot store NUL in text; refuse it here rather than fail the batch.
            raise ValidationError("NUL characters are not allowed.")
        if self.type == "number" and not math.isfinite(value):
            raise ValidationError("Must be a finite number.")
        if self.type == "json":
            encoded = orjson.dumps(value)
            if self.max_bytes is not None and len(encoded) > self.max_bytes:
                raise ValidationError(
                    f"Ensure this value is at most {self.max_bytes} bytes as JSON "
                    f"(it is {len(encoded)})."
                )
            if b"\\u0000" in encoded:
                raise ValidationError("NUL characters are not allowed.")
        try:
            if self.ref_model is not None:
                return self.ref_model._meta.pk.to_python(value)
            python = self.field.to_python(value)
            if self.type == "datetime":
                # The protocol speaks UTC; a timestamp without an offset is taken as UTC.
                if timezone.is_naive(python):
                    python = python.replace(tzinfo=dt.UTC)
                python = python.astimezone(dt.UTC)
        except (OverflowError, ValueError, TypeError):
            raise ValidationError(f"Not a valid {self.type} value.") from None
        self.field.validate(python, None)
        self.field.run_validators(python)
        return python


def codec_for(field: models.Field, *, read_only: bool, limit: int | None = None) -> FieldCodec:
    """The codec of a model field. `limit` caps a text (characters) or JSON
    (bytes) field that the model leaves unbounded; without one, the
    SYNC_MAX_TEXT_CHARS / SYNC_MAX_JSON_BYTES defaults apply."""
    wire = next((name for cls, name in _TYPES if isinstance(field, cls)), None)
    if wire is None:
        raise TypeError(f"Field {field.name} ({type(field).__name__}) cannot be synced")
    has_default = field.has_default() or getattr(field, "auto_now", False)
    choices = tuple(v for v, _ in field.flatchoices) if field.choices else None
    ref_model = field.related_model if wire == "reference" else None
    max_length = max_bytes = None
    if wire in ("string", "text"):
        max_length = field.max_length or limit or sync_settings.SYNC_MAX_TEXT_CHARS
    elif wire == "json":
        max_bytes = limit or sync_settings.SYNC_MAX_JSON_BYTES
    return FieldCodec(
        name=field.name,
        attname=field.attname,
        type=wire,
        required=not (read_only or field.null or has_default or field.blank),
        nullable=field.null,
        read_only=read_only,
        field=field,
        choices=choices,
        ref_label=ref_model._meta.label_lower if ref_model is not None else None,
        ref_model=ref_model,
        max_length=max_length,
        max_bytes=max_bytes,
    )


# A message may quote the value it refuses (Django's choice error does): cut,
# so that a rejection stays small whatever the client sent.
MESSAGE_CHARS = 300


def error_messages(exc: ValidationError) -> list[str]:
    return [_cut(str(m)) for m in exc.messages[:5]]


def _cut(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"
