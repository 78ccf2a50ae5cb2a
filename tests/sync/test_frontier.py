"""The feed's frontier comes from the reader's snapshot alone (a hot standby
can compute it; it needs no pg_stat_activity): what that means for
transactions elsewhere in the cluster, and for a reader's own."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, transaction

from sync.engine import feed
from tests.factories import customer

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _elsewhere() -> psycopg.Connection:
    """A connection to another database of the same cluster."""
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname="postgres"
    )


def test_a_write_transaction_in_another_database_holds_the_feed_back(alice, bob):
    """Transaction ids are the cluster's: rows committed after another
    database's write transaction began wait for it to end (docs/scaling.md,
    "Caveats of the change feed"). Nothing is skipped; delivery waits."""
    _, cursor = alice.pull_all()
    other = _elsewhere()
    try:
        other.execute("SELECT pg_current_xact_id()")  # a write transaction, still open
        made = customer("Waits for the other database")
        alice.push(made)
        assert alice.pull(cursor=cursor)["changes"] == []
        other.commit()
    finally:
        other.close()
    assert [c["id"] for c in alice.pull(cursor=cursor)["changes"]] == [made["id"]]


def test_a_read_only_transaction_elsewhere_does_not(alice):
    _, cursor = alice.pull_all()
    other = _elsewhere()
    try:
        other.execute("SELECT count(*) FROM pg_class")  # no transaction id
        made = customer("Not held back")
        alice.push(made)
        assert [c["id"] for c in alice.pull(cursor=cursor)["changes"]] == [made["id"]]
    finally:
        other.close()


def test_a_transaction_reads_its_own_rows_unless_an_older_one_is_open(alice):
    """A command that writes and then reads in one transaction sees its own
    rows; with an older write transaction still open, they wait like any."""
    other = _elsewhere()
    try:
        with transaction.atomic():
            own = feed.current_tx()
            assert feed.horizon().frontier == own + 1
            other.execute("SELECT pg_current_xact_id()")  # younger: does not matter
            assert feed.horizon().frontier == own + 1
        other.rollback()
        other.execute("SELECT pg_current_xact_id()")  # now an older one is open
        with transaction.atomic():
            own = feed.current_tx()
            assert feed.horizon().frontier < own
    finally:
        other.close()
