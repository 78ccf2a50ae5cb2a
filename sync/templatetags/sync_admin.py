"""Template tags of the staff pages."""

from __future__ import annotations

from django import template

from sync.admin.conflicts import open_conflicts_count

register = template.Library()


@register.simple_tag
def open_conflicts() -> int:
    """The number of conflicts waiting for a person (the admin index shows it)."""
    return open_conflicts_count()
