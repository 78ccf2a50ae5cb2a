"""The sync engine: registry of synced models, change feed, pull and push."""

from __future__ import annotations

from sync.schema import Added, Changed, Removed, Renamed, Retyped, Split

__all__ = ["Added", "Changed", "Removed", "Renamed", "Retyped", "Split", "register", "resync"]


def register(model, **options):  # noqa: ANN001, ANN201 - re-exported, typed in registry
    from sync.registry import register as _register

    return _register(model, **options)


def resync(model, *, reason: str = ""):  # noqa: ANN001, ANN201 - re-exported, typed in versions
    """Make every device re-fetch this model (docs/protocol.md, "Targeted re-sync")."""
    from sync.engine.versions import resync as _resync

    return _resync(model, reason=reason)
