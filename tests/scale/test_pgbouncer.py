"""The end-to-end suites over HTTP with every connection going through
PgBouncer in transaction pooling mode (the usual Django production stack):
the servers' and the tests' own. With PgBouncer before 1.21, statements must
not be prepared (`DATABASE_PREPARE_THRESHOLD=` empty); everything else the
server keeps on a connection lives for one transaction only (`set_config(…,
true)`, transaction-scoped advisory locks, psycopg's pipelines)."""

from __future__ import annotations

import os

import pytest

from tests.scale.conftest import run_pytest

pytestmark = pytest.mark.postgres

SUITES = [
    "tests/e2e/test_gunicorn.py",
    "tests/livepull/test_serve_live.py",
    "tests/e2e/test_client_concurrency.py",
    "tests/e2e/test_client_convergence.py",
]


def test_the_http_end_to_end_suites_pass_through_pgbouncer(pgbouncer):
    """Live pulls among them, their LISTEN on a direct connection."""
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{pgbouncer}/sync_pgbouncer",
        "DATABASE_PREPARE_THRESHOLD": "",
        # LISTEN for live pulls: on PostgreSQL itself, not through PgBouncer.
        "LISTEN_DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test_sync_pgbouncer",
        "E2E_EXAMPLES": os.environ.get("E2E_PGBOUNCER_EXAMPLES", "6"),
    }
    env.pop("READ_DATABASE_URL", None)
    summary = run_pytest(env, *SUITES)
    print(f"\nthrough PgBouncer: {summary}")
