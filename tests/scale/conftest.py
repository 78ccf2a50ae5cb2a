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
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

BIN = (
    Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    if glob.glob("/usr/lib/postgresql/*/bin")
    else None
)


RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    if BIN is None or not os.access(RUNUSER, os.X_OK):
        pytest.fail("needs PostgreSQL's server tools (/usr/lib/postgresql/*/bin) and runuser")
    directory = Path(tempfile.mkdtemp(prefix="sync-standby-"))
    shutil.chown(directory, "postgres")
    found = Cluster(_free_port(), _free_port(), directory)
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
