"""Real processes to break: Celery workers, a Redis server, database backends."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from tests.devices.conftest import fcm  # noqa: F401 - the fake FCM fixture, shared

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server")


def wait_for(check: Callable[[], object], seconds: float = 20, what: str = "it") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (from /proc, no extra package)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name (2nd field) is in parentheses and may hold spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


class CeleryWorker:
    """`celery -A config worker` as a separate process on the test database, with
    one prefork pool process (the one a task runs in, and the one to kill)."""

    def __init__(self, log: Path, env: dict[str, str], name: str = "faults") -> None:
        self.log = log
        self.name = name
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "LOG_LEVEL": "INFO",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryWorker:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own worker, fixed arguments
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "-P",
                    "prefork",
                    "-c",
                    "1",
                    "-n",
                    f"{self.name}-{os.getpid()}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--loglevel=INFO",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: " ready." in self.text() or self.proc.poll() is not None, 60, "worker")
        assert self.proc.poll() is None, f"the worker exited:\n{self.text()}"
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def pool_process(self) -> int:
        assert self.proc is not None
        children: list[int] = []
        wait_for(lambda: children.extend(children_of(self.proc.pid)) or children, 10, "pool")
        assert len(children) == 1, children
        return children[0]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pool = children_of(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for pid in pool:  # a pool process outliving its parent
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def celery_worker_process(tmp_path) -> Iterator[Callable[..., CeleryWorker]]:
    started: list[CeleryWorker] = []

    def start(**env: str) -> CeleryWorker:
        worker = CeleryWorker(tmp_path / f"worker-{len(started)}.log", env)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


class RedisServer:
    """A redis-server of the test's own, on a free port, to stop and start again."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - fixed arguments
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, 10, "redis-server")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case it is paused
            self.proc.kill()  # as a crash would: no goodbye to clients
            self.proc.wait(10)
        assert not self.answers()

    def pause(self) -> None:
        """Hung: connections are accepted (by the kernel) and never answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        reason = "needs redis-server on PATH (apt-get install redis-server)"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


def with_token(actor) -> str:
    """Give an actor's device a push token (through the API); returns it."""
    token = f"tok-{uuid.uuid4()}"
    response = actor.client.patch(
        f"/api/v1/devices/{actor.device_id}/", {"push_token": token}, format="json"
    )
    assert response.status_code == 200, response.content
    return token


def raw_connection() -> psycopg.Connection:
    """A connection of the test's own to the test database, outside Django."""
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        dbname=db["NAME"],
        autocommit=True,
    )


def backends_waiting(on: str) -> list[int]:
    """Backends of the test database waiting for a lock, whose query mentions `on`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE %s AND pid <> pg_backend_pid() "
            "ORDER BY backend_start",
            [f"%{on}%"],
        )
        return [pid for (pid,) in cursor.fetchall()]
