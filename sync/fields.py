"""`sync.BlobField`: a synced reference to a file (a photo, a signature, a
PDF) whose bytes live in blob storage, not in the feed (docs/protocol.md,
"Files").

The value is `{"sha256", "size", "content_type", "name"}`: the blob is named
by its content, so a device can push the reference before (or while) it
uploads the bytes, and two devices attaching the same photo store it once.
It is a JSON value to the database and merges as a whole, never key by key:
two different photos in one field are a conflict, not a blend.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

SHA256 = re.compile(r"[0-9a-f]{64}")
# type/subtype, as RFC 6838 allows them (no parameters).
CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
KEYS = frozenset({"sha256", "size", "content_type", "name"})
NAME_CHARS = 255


def validate_reference(value: Any) -> None:
    """A blob reference, whole and well formed; ValidationError otherwise."""
    if not isinstance(value, dict):
        raise ValidationError(
            'A file reference is an object: {"sha256", "size", "content_type", "name"}.'
        )
    if set(value) != KEYS:
        missing, extra = sorted(KEYS - set(value)), sorted(set(value) - KEYS)
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(extra)}"] if extra else []
        )
        raise ValidationError(
            f"A file reference has sha256, size, content_type and name ({'; '.join(parts)})."
        )
    sha = value["sha256"]
    if not isinstance(sha, str) or not SHA256.fullmatch(sha):
        raise ValidationError("sha256 must be 64 lower-case hex digits (the SHA-256 of the bytes).")
    size = value["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValidationError("size must be the number of bytes (a non-negative integer).")
    from syncbase.conf import sync_settings

    limit = sync_settings.SYNC_BLOB_MAX_BYTES
    if size > limit:
        raise ValidationError(f"size is over the largest file this server takes ({limit} bytes).")
    content_type = value["content_type"]
    if not isinstance(content_type, str) or not CONTENT_TYPE.fullmatch(content_type):
        raise ValidationError("content_type must be a media type such as image/jpeg.")
    if not content_type_allowed(content_type):
        raise ValidationError(
            f"{content_type} files are not taken here (SYNC_BLOB_CONTENT_TYPES: "
            f"{', '.join(sync_settings.SYNC_BLOB_CONTENT_TYPES)})."
        )
    name = value["name"]
    if not isinstance(name, str) or len(name) > NAME_CHARS or any(c in name for c in "\x00/\\"):
        raise ValidationError(
            f"name must be a file name of at most {NAME_CHARS} characters, without / or \\."
        )


def content_type_allowed(content_type: str) -> bool:
    """Whether SYNC_BLOB_CONTENT_TYPES takes it (`image/*` takes every image)."""
    from syncbase.conf import sync_settings

    for pattern in sync_settings.SYNC_BLOB_CONTENT_TYPES:
        kind, _, sub = pattern.partition("/")
        have_kind, _, have_sub = content_type.partition("/")
        if kind in ("*", have_kind) and sub in ("*", have_sub):
            return True
    return False


class BlobField(models.JSONField):
    """A synced field holding a reference to a blob (see the module)."""

    description = "A reference to a file in blob storage"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("null", True)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def validate(self, value: Any, model_instance: Any) -> None:
        super().validate(value, model_instance)
        if value is not None:
            validate_reference(value)

    def deconstruct(self) -> Any:
        name, _, args, kwargs = super().deconstruct()
        return name, "sync.fields.BlobField", args, kwargs
