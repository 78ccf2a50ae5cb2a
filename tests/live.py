"""A real gunicorn serving the test database, for tests that go over the network
(tests/e2e, tests/fuzz). The caller's test must be `django_db(transaction=True)`
so that what it writes is committed and the server's processes can see it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A port on the loopback nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(env: dict[str, str]) -> dict[str, str]:
    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DEBUG": "0",
        **env,
    }


@contextmanager
def _serving(
    command: list[str], port: int, *, log: Path | None, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    output = log.open("ab") if log is not None else None
    proc = subprocess.Popen(  # noqa: S603 - our own server, fixed arguments
        command, cwd=ROOT, env=_server_env(env), stdout=output, stderr=output
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/v1/sync/models/", timeout=2)  # noqa: S310
            except urllib.error.HTTPError:
                break  # 401: it answers
            except OSError:
                assert proc.poll() is None, f"{command[0]} exited"
                assert time.monotonic() < deadline, f"{command[0]} did not start"
                time.sleep(0.2)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(15)


@contextmanager
def gunicorn(*, workers: int = 3, log: Path | None = None, **env: str) -> Iterator[str]:
    """Serve the app on a free loopback port; yields its base URL. `env`
    overrides the server's environment (production settings otherwise: DEBUG
    off; only the HTTPS redirect is off, since the loopback speaks plain HTTP).
    The server's output goes to `log` if given, else to the test's."""
    port = free_port()
    binary = Path(sys.executable).with_name("gunicorn")
    command = [
        str(binary),
        "-c",
        "config/gunicorn.conf.py",  # production's hooks (JSON errors, metrics)
        "config.wsgi",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    with _serving(command, port, log=log, env=env) as (base, _):
        yield base


@contextmanager
def serve_live(
    *, log: Path | None = None, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`manage.py serve_live` (the ASGI server of live pulls) on the test
    database, as `gunicorn` above; yields its base URL and its process."""
    port = free_port()
    command = [sys.executable, "manage.py", "serve_live", "--port", str(port)]
    with _serving(command, port, log=log, env=env) as served:
        yield served
