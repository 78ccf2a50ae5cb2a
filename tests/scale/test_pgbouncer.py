"""The end-to-end suites over HTTP with every connection going through
PgBouncer in transaction pooling mode (the usual Django production stack):
the servers' and the tests' own. With PgBouncer before 1.21, statements must
not be prepared (`DATABASE_PREPARE_THRESHOLD=` empty); everything else the
server keeps on a connection lives for one transaction only (`set_config(…,
true)`, transaction-scoped advisory locks, psycopg's pipelines)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.live import ROOT

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
    done = subprocess.run(  # noqa: S603 - our own test suite
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, summary
    print(f"\nthrough PgBouncer: {summary}")
