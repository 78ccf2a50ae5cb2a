"""The sync engine: registry of synced models, change feed, pull and push."""

from __future__ import annotations

from sync.fields import BlobField
from sync.schema import Added, Changed, Removed, Renamed, Retyped, Split

__all__ = [
    "Added",
    "BlobField",
    "Changed",
    "Removed",
    "Renamed",
    "Retyped",
    "Split",
    "register",
    "resync",
    "retire",
]


def register(model, **options):  # noqa: ANN001, ANN201 - re-exported, typed in registry
    from sync.registry import register as _register

    return _register(model, **options)


def retire(label, **options):  # noqa: ANN001, ANN201 - re-exported, typed in registry
    """A model older apps may still push, no longer synced (docs/protocol.md)."""
    from sync.registry import retire as _retire

    return _retire(label, **options)


def resync(model, *, reason: str = ""):  # noqa: ANN001, ANN201 - re-exported, typed in versions
    """Make every device re-fetch this model (docs/protocol.md, "Targeted re-sync")."""
    from sync.engine.versions import resync as _resync

    return _resync(model, reason=reason)
