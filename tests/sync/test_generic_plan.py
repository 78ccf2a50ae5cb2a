"""The pull's page statement runs with PostgreSQL's generic plan
(syncbase/generic_plan.py): planned once per connection instead of for every
page, in a transaction of its own, which an error or a caller's transaction
must not disturb."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import DataError, connection, transaction
from psycopg.pq import TransactionStatus

from syncbase import generic_plan
from tests.factories import customer

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _page_statement_plans() -> tuple[int, int]:
    """(generic, custom) plans PostgreSQL made for this connection's
    prepared page statements."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) "
            "FROM pg_prepared_statements WHERE statement LIKE 'WITH f AS MATERIALIZED%%'"
        )
        generic, custom = cursor.fetchone()
    return int(generic), int(custom)


def _plan_cache_mode() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        return cursor.fetchone()[0]


def test_every_page_of_a_sync_uses_the_generic_plan(alice):
    made = [customer(f"Customer {i}") for i in range(24)]
    alice.push(*made)
    changes, _ = alice.pull_all(limit=2)
    assert sorted(c["id"] for c in changes) == sorted(m["id"] for m in made)
    generic, custom = _page_statement_plans()
    # 12 pages: the first with its own statement (no guess of the caller's
    # channels yet), the other 11 read with the horizon (sync.engine.pull,
    # `_read_ahead`), whose first runs psycopg has not prepared yet.
    # PostgreSQL alone would have made custom plans for the first five
    # prepared runs at least.
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    assert (generic, custom) == (11 - threshold, 0)
    # Each page's transaction ended, and the setting with it.
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE
    assert _plan_cache_mode() == "auto"


def test_it_returns_what_the_statement_returns():
    rows = generic_plan.fetchall(
        "SELECT x, x * %s FROM generate_series(1, %s) AS x ORDER BY x", [10, 3]
    )
    assert rows == [(1, 10), (2, 20), (3, 30)]


def test_a_failing_statement_leaves_the_connection_as_it_found_it():
    with pytest.raises(DataError):
        generic_plan.fetchall("SELECT 1 / %s", [0])
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE
    assert _plan_cache_mode() == "auto"
    assert generic_plan.fetchall("SELECT %s::int + 1", [1]) == [(2,)]


def test_inside_a_callers_transaction_it_neither_commits_nor_changes_the_setting():
    users = get_user_model().objects
    with pytest.raises(RuntimeError), transaction.atomic():  # noqa: PT012
        users.create(username="rolled-back")
        assert generic_plan.fetchall("SELECT %s::text", ["x"]) == [("x",)]
        assert _plan_cache_mode() == "auto"
        raise RuntimeError
    assert not users.filter(username="rolled-back").exists()


def test_statements_run_together_share_their_transaction_and_nothing_after():
    shared, seen = generic_plan.fetchall_each(
        ("SELECT set_config('sync.test', %s, true)", ["42"]),
        ("SELECT current_setting('sync.test')::int + %s", [1]),
    )
    assert (shared, seen) == ([("42",)], [(43,)])
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE
    assert generic_plan.fetchall("SELECT current_setting('sync.test', true)", []) in (
        [("",)],
        [(None,)],
    )


def test_statements_sent_together_answer_in_order_with_their_own_plans():
    first, second = generic_plan.fetchall_together(
        ("SELECT x FROM generate_series(1, %s) AS x ORDER BY x", [2]),
        ("SHOW plan_cache_mode", None),
    )
    assert (first, second) == ([(1,), (2,)], [("auto",)])
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE


def test_statements_sent_together_stop_at_an_error_and_leave_the_connection_usable():
    with pytest.raises(DataError):
        generic_plan.fetchall_together(("SELECT 1 / %s", [0]), ("SELECT %s::int", [1]))
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE
    assert generic_plan.fetchall_together(("SELECT %s::int + 1", [1])) == [[(2,)]]


def test_statements_sent_together_stay_in_the_callers_transaction():
    users = get_user_model().objects
    with pytest.raises(RuntimeError), transaction.atomic():  # noqa: PT012
        users.create(username="rolled-back")
        [(count,)], _ = generic_plan.fetchall_together(
            ("SELECT count(*) FROM auth_user WHERE username = %s", ["rolled-back"]),
            ("SELECT 1", None),
        )
        assert count == 1
        raise RuntimeError
    assert not users.filter(username="rolled-back").exists()


def test_a_statement_failing_after_a_setting_takes_the_setting_with_it():
    with pytest.raises(DataError):
        generic_plan.fetchall_each(
            ("SELECT set_config('sync.test', %s, true)", ["42"]),
            ("SELECT 1 / %s", [0]),
        )
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE
    assert _plan_cache_mode() == "auto"
    assert generic_plan.fetchall("SELECT current_setting('sync.test', true)", []) in (
        [("",)],
        [(None,)],
    )
