"""The sync engine: registry of synced models, change feed, pull and push."""

from __future__ import annotations


def register(model, **options):  # noqa: ANN001, ANN201 - re-exported, typed in registry
    from sync.registry import register as _register

    return _register(model, **options)
