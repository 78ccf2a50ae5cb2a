"""Which database the reads of the current request go to: the primary, or a
streaming replica for pulls (`READ_DATABASE`, docs/scaling.md).

`reading_from(alias)` sets it for a block (a context variable: threads and
tasks each have their own); `connection` is Django's connection for it, as
`django.db.connection` is for the default one; `alias()` names it for a
queryset's `.using()`. Outside such a block everything is the default
database, so code that also writes (a push) never sees a replica.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

_alias: ContextVar[str] = ContextVar("syncbase_read_alias", default=DEFAULT_DB_ALIAS)


def alias() -> str:
    return _alias.get()


@contextmanager
def reading_from(name: str) -> Iterator[None]:
    token = _alias.set(name)
    try:
        yield
    finally:
        _alias.reset(token)


class _Connection:
    """The connection of the database reads go to now."""

    def __getattr__(self, name: str) -> Any:
        return getattr(connections[_alias.get()], name)


connection: Any = _Connection()
