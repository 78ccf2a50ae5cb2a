"""A PostgreSQL primary and a streaming hot standby of its own, made by the
test run from the machine's PostgreSQL installation (initdb, pg_basebackup
-R), run as the `postgres` user (PostgreSQL refuses root), on free ports in
a temporary directory, stopped and removed afterwards. The machine's own
cluster has no `replication` line in pg_hba.conf; this one's initdb writes
them (trust, on the loopback only)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.live import free_port

BIN = (
    Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    if glob.glob("/usr/lib/postgresql/*/bin")
    else None
)


RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


def _missing(what: str) -> None:
    """Skip, or fail when REQUIRE_SERVICES=1 (as the services' markers do)."""
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"REQUIRE_SERVICES=1 but this test needs {what}")
    pytest.skip(f"needs {what}")


def _as_postgres(*command: str) -> None:
    subprocess.run(  # noqa: S603 - PostgreSQL's own tools, fixed arguments
        [RUNUSER, "-u", "postgres", "--", *command],
        check=True,
        capture_output=True,
    )


@dataclass
class Cluster:
    primary_port: int
    standby_port: int
    directory: Path

    def url(self, port: int, database: str = "sync") -> str:
        return f"postgres://postgres@127.0.0.1:{port}/{database}"

    @property
    def primary(self) -> str:
        return self.url(self.primary_port)

    @property
    def standby(self) -> str:
        return self.url(self.standby_port)

    def sql(self, port: int, statement: str, database: str = "sync") -> list[tuple]:
        with psycopg.connect(self.url(port, database), autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def replayed(self, timeout: float = 20) -> None:
        """Until the standby has replayed everything the primary wrote so far."""
        (lsn,) = self.sql(self.primary_port, "SELECT pg_current_wal_lsn()::text")[0]
        deadline = time.monotonic() + timeout
        while not self.sql(
            self.standby_port,
            f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn",  # noqa: S608
        )[0][0]:
            assert time.monotonic() < deadline, "the standby did not catch up"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if BIN is None or not os.access(RUNUSER, os.X_OK) or os.geteuid() != 0:
        _missing("PostgreSQL's server tools (/usr/lib/postgresql/*/bin), run as root (runuser)")
    with primary_and_standby() as found:
        yield found


@contextmanager
def primary_and_standby() -> Iterator[Cluster]:
    """A primary and its hot standby, started, with a database `sync`; both
    stopped and removed on leaving (bench/standby.py uses it too)."""
    assert BIN is not None
    directory = Path(tempfile.mkdtemp(prefix="sync-standby-"))
    shutil.chown(directory, "postgres")
    found = Cluster(free_port(), free_port(), directory)
    started: list[Path] = []
    try:
        _as_postgres(
            str(BIN / "initdb"), "-D", str(directory / "p"), "-A", "trust", "-U", "postgres"
        )
        for name, port in (("p", found.primary_port), ("s", found.standby_port)):
            if name == "s":
                _as_postgres(
                    str(BIN / "pg_basebackup"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(found.primary_port),
                    "-U",
                    "postgres",
                    "-D",
                    str(directory / "s"),
                    "-R",
                    "-X",
                    "stream",
                )
            _as_postgres(
                str(BIN / "pg_ctl"),
                "-D",
                str(directory / name),
                "-w",
                "-l",
                str(directory / f"{name}.log"),
                "-o",
                f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            )
            started.append(directory / name)
            if name == "p":
                found.sql(found.primary_port, "CREATE DATABASE sync", database="postgres")
        found.replayed()
        yield found
    finally:
        for data in reversed(started):
            subprocess.run(  # noqa: S603
                [
                    RUNUSER,
                    "-u",
                    "postgres",
                    "--",
                    str(BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-m",
                    "fast",
                    "stop",
                ],
                capture_output=True,
            )
        shutil.rmtree(directory, ignore_errors=True)


def manage(cluster: Cluster, *args: str) -> str:
    """`manage.py` on the primary."""
    env = {**os.environ, "DATABASE_URL": cluster.primary}
    env.pop("READ_DATABASE_URL", None)
    done = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[int]:
    """PgBouncer in transaction pooling mode in front of the machine's
    PostgreSQL (every database), as the `postgres` user (it refuses root), on
    a free port; yields the port."""
    if not os.access(PGBOUNCER, os.X_OK) or os.geteuid() != 0:
        _missing(f"PgBouncer at {PGBOUNCER} (apt-get install pgbouncer), run as root (runuser)")
    directory = Path(tempfile.mkdtemp(prefix="sync-pgbouncer-"))
    shutil.chown(directory, "postgres")
    port = free_port()
    (directory / "users.txt").write_text('"postgres" ""\n')
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        "* = host=127.0.0.1 port=5432\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {directory / 'users.txt'}\n"
        "pool_mode = transaction\n"
        "max_client_conn = 500\n"
        "default_pool_size = 20\n"
        # psycopg and Django send these at connection start; PgBouncer must
        # let them through (it cannot keep session settings per client).
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
    )
    for path in directory.iterdir():
        shutil.chown(path, "postgres")
    proc = subprocess.Popen(  # noqa: S603 - PgBouncer with our own ini
        [RUNUSER, "-u", "postgres", "--", PGBOUNCER, str(directory / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with psycopg.connect(
                    f"postgres://postgres@127.0.0.1:{port}/postgres", prepare_threshold=None
                ) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                assert proc.poll() is None, (directory / "pgbouncer.log").read_text()
                assert time.monotonic() < deadline, "PgBouncer did not start"
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def run_pytest(env: dict[str, str], *files: str) -> str:
    """Our own test files in a pytest of their own, with `env` (another
    database, another server set-up); every test must pass, none be skipped.
    Returns pytest's summary line."""
    done = subprocess.run(  # noqa: S603 - our own test suite
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, summary
    return summary
