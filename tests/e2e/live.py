"""Starting a live gunicorn server on the test database."""

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

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn(workers: int = 3, **env: str) -> Iterator[str]:
    """Start gunicorn with several worker processes on the test database (which
    a `transaction=True` test commits to); yields its base URL."""
    db = connection.settings_dict
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "THROTTLE_USER": "100000/min",
        "DEBUG": "0",
        **env,
    }
    executable = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen(  # noqa: S603 - our own server, fixed arguments
        [
            str(executable),
            "config.wsgi",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=environment,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/v1/sync/models/", timeout=2)  # noqa: S310
            except urllib.error.HTTPError:
                break  # 401: it answers
            except OSError:
                assert proc.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
