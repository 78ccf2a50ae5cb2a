"""Who is writing synced rows, as the database's capture of writes reads it
(sync.engine.capture): the sync service (its rows are versioned, recorded and
fed already), an erasure (rows go for good), or anyone else, with the user
and reason their history rows name.

PostgreSQL keeps the mark in settings local to the transaction
(`set_config(..., true)`), so a rollback or the end of the transaction clears
it; SQLite, which has no such settings, in the one-row table
`sync_writecontext`, which `write_context` restores before it returns (SQLite
serialises writers, so no other transaction can see it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

# Who is writing, as the triggers read it.
SERVICE = "service"  # the sync service: versioned, recorded and fed by the caller
PURGE = "purge"  # a real DELETE (erasure); nothing recorded
PASSING = (SERVICE, PURGE)

SETTINGS = {"writer": "sync.writer", "user": "sync.history_user", "reason": "sync.history_reason"}
# The newest feed row whose wake-up this transaction has recorded (PostgreSQL).
WOKEN_SETTING = "sync.woken"
REASON_CHARS = 100  # simple-history's history_change_reason


@dataclass(frozen=True)
class Context:
    writer: str = ""
    user: str = ""
    reason: str = ""


_UNSET = Context()
_local = threading.local()


def _stack(alias: str) -> list[Context]:
    stacks = _local.__dict__.setdefault("stacks", {})
    return stacks.setdefault(alias, [])


def current(using: str = DEFAULT_DB_ALIAS) -> Context:
    """The write context this thread set on `using` (as far as it knows)."""
    stack = _stack(using)
    return stack[-1] if stack else _UNSET


@contextmanager
def write_context(
    *,
    writer: str | None = None,
    user_id: Any = None,
    reason: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> Iterator[None]:
    """Name the writer, user and reason of the writes inside the block (each
    None: as it was). Opens a transaction if none is open: the context lives
    in it, and is gone if it rolls back."""
    before = current(using)
    after = Context(
        writer=before.writer if writer is None else writer,
        user=before.user if user_id is None else str(user_id),
        reason=before.reason if reason is None else reason[:REASON_CHARS],
    )
    if after == before:
        yield
        return
    connection = connections[using]
    stack = _stack(using)
    with transaction.atomic(using=using, savepoint=False):
        _apply(connection, after)
        stack.append(after)
        try:
            yield
        except BaseException:
            # The transaction rolls back (to before the context, at worst).
            stack.pop()
            raise
        stack.pop()
        _apply(connection, before)


@contextmanager
def service_writes(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """The caller versions, records and feeds the synced rows it writes."""
    with write_context(writer=SERVICE, using=using):
        yield


@contextmanager
def purging(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """DELETEs inside remove rows for good, unrecorded (a user's erasure)."""
    with write_context(writer=PURGE, using=using):
        yield


def wake_after_commit(using: str = DEFAULT_DB_ALIAS) -> None:
    """Send the wake-ups captured writes recorded, once the transaction
    commits (at once outside one). Writes this process cannot see (raw SQL,
    other processes) are sent by a Celery worker that hears them commit
    (PostgreSQL), or else by the outbox's periodic sweep."""
    if current(using).writer in PASSING:
        return
    connection = connections[using]
    if any(entry[1] is _send_captured for entry in connection.run_on_commit):
        return
    transaction.on_commit(_send_captured, using=using)


_after_commit: list[Callable[[], Any]] = []


def on_captured_commit(callback: Callable[[], Any]) -> None:
    """Call `callback` once a transaction with captured writes commits (the
    wake-ups' sender connects itself here when the app is ready)."""
    if callback not in _after_commit:
        _after_commit.append(callback)


def _send_captured() -> None:
    for callback in _after_commit:
        callback()


def _apply(connection: BaseDatabaseWrapper, context: Context) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT set_config(%s, %s, true), set_config(%s, %s, true), "
                "set_config(%s, %s, true)",
                [
                    SETTINGS["writer"],
                    context.writer,
                    SETTINGS["user"],
                    context.user,
                    SETTINGS["reason"],
                    context.reason,
                ],
            )
        elif context == _UNSET:
            cursor.execute("DELETE FROM sync_writecontext")
        else:
            cursor.execute(
                "INSERT OR REPLACE INTO sync_writecontext (id, writer, user_id, reason) "
                "VALUES (1, %s, %s, %s)",
                [context.writer, context.user, context.reason],
            )
