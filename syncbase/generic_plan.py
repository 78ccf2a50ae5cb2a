"""Statements run with PostgreSQL's generic plan, whatever its estimates say.

psycopg prepares the statements a connection runs often
(`DATABASE_PREPARE_THRESHOLD`), and PostgreSQL then plans every execution
again for its parameter values (a "custom" plan) unless the plan it made
without them (the "generic" plan) is estimated about as cheap. For the pull's
page statement it never is: without the values, the planner expects a few
hundred feed rows in the channel's range where it knows there are 100,000,
so a LIMIT of 101 looks like a third of the scan instead of a thousandth.
The generic plan has the same shape (the channel's index range, then one
primary-key probe per row), yet the statement was planned again on every
page: 0.7–0.9 ms of PostgreSQL's time against 1.4–1.6 ms to run it for a page
of 100, and more with every registered model (one join each).

`plan_cache_mode` is set per session or per transaction only, not per
statement, and setting it for the whole session would take custom plans
from every other statement too. So the statement runs in a transaction of
its own that sets it locally: the settings (`set_config(…, true)`) and the
statement go to PostgreSQL in one round trip (psycopg's pipeline mode),
where everything up to the pipeline's Sync message is one implicit
transaction, so no BEGIN and COMMIT are needed (each was one more statement
to send and run: without them a page of 100 took 0.08 ms less of the
worker's CPU and 0.12 ms less time). Inside a transaction the caller opened
(tests, commands) it simply runs: the settings would outlive the statement
there. Several statements can go in the same transaction and round trip
(`fetchall_each`).

PostgreSQL keeps a cached generic plan until the tables' statistics change
(ANALYZE, which autovacuum runs as tables grow), so a plan made on small
tables is used on large ones meanwhile. A caller whose statement has one
right plan at any size says so with `planner` settings for the same
transaction (the pull: `sync.engine.pull.PAGE_PLANNER`).

`fetchall_together` sends statements in one round trip too, but leaves
their plans and settings alone (the count and estimate of what a pull has
left, whose estimate must come from the values' own plan).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from functools import lru_cache
from typing import Any

from psycopg.pq import TransactionStatus

from syncbase.reading import connection

Statement = tuple[str, Any]  # SQL and its parameters (a sequence or a mapping)


def fetchall(
    sql: str, params: Sequence[Any], *, planner: Mapping[str, str] | None = None
) -> list[tuple[Any, ...]]:
    """The rows of `sql` (with `params`), planned generically on PostgreSQL
    when the connection is in autocommit; counted and timed like any other
    statement of Django's cursor."""
    return fetchall_each((sql, params), planner=planner)[0]


def fetchall_each(
    *statements: Statement, planner: Mapping[str, str] | None = None
) -> list[list[tuple[Any, ...]]]:
    """The rows of each statement, run in order in one transaction (and one
    round trip) of their own when the connection is in autocommit, each
    planned generically, with the `planner` settings (e.g. `enable_seqscan`)
    for that transaction too; in the caller's transaction otherwise. A
    statement sees what those before it set for the transaction
    (`set_config`)."""
    with ExitStack() as stack:
        cursors = [stack.enter_context(connection.cursor()) for _ in statements]
        if connection.vendor != "postgresql" or not connection.get_autocommit():
            for cursor, (sql, params) in zip(cursors, statements, strict=True):
                cursor.execute(sql, params)
            return [cursor.fetchall() for cursor in cursors]
        raw = connection.connection
        control = stack.enter_context(raw.cursor())
        try:
            with connection.wrap_database_errors, raw.pipeline():
                control.execute(
                    _settings_sql(tuple(sorted((planner or {}).items()))), prepare=False
                )
                for cursor, (sql, params) in zip(cursors, statements, strict=True):
                    cursor.execute(sql, params)
        except BaseException:
            # An error skips the rest of the pipeline and the Sync that ends
            # it rolls the implicit transaction back; should one still be
            # open (the connection broke off), end it here.
            if not raw.closed and raw.info.transaction_status != TransactionStatus.IDLE:
                raw.rollback()
            raise
        return [cursor.fetchall() for cursor in cursors]


def fetchall_together(*statements: Statement) -> list[list[tuple[Any, ...]]]:
    """The rows of each statement, all sent before the first answer is
    awaited (one round trip, psycopg's pipeline mode) on PostgreSQL, with
    the plans and settings they would have on their own, in the caller's
    transaction if there is one; one after another elsewhere."""
    with ExitStack() as stack:
        cursors = [stack.enter_context(connection.cursor()) for _ in statements]
        with ExitStack() as sending:
            if connection.vendor == "postgresql":
                sending.enter_context(connection.wrap_database_errors)
                sending.enter_context(connection.connection.pipeline())
            for cursor, (sql, params) in zip(cursors, statements, strict=True):
                cursor.execute(sql, params)
        return [cursor.fetchall() for cursor in cursors]


@lru_cache
def _settings_sql(planner: tuple[tuple[str, str], ...]) -> str:
    """One statement setting, for its transaction, the generic plan and the
    `planner` settings (names and values from the code, never from input)."""
    settings = (("plan_cache_mode", "force_generic_plan"), *planner)
    for name, value in settings:
        if not (_WORD.fullmatch(name) and _WORD.fullmatch(value)):
            raise ValueError(f"not a planner setting: {name} = {value}")
    return "SELECT " + ", ".join(f"set_config('{n}', '{v}', true)" for n, v in settings)


_WORD = re.compile(r"[a-z_]+")
