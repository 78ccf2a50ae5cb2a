"""What the benches' servers run with: production settings, DEBUG off, plain
HTTP on 127.0.0.1, rate limits out of the way, warnings only."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import urllib3

SERVER_ENV = {
    "DEBUG": "0",
    "SECURE_SSL_REDIRECT": "0",
    "ALLOWED_HOSTS": "127.0.0.1",
    "THROTTLE_USER": "100000000/min",
    "THROTTLE_ANON": "100000000/min",
    "THROTTLE_TOKEN": "100000000/min",
    "LOG_LEVEL": "WARNING",
    "LOG_FORMAT": "plain",
}


def gunicorn(code: Path, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen:
    """gunicorn serving the checkout `code` on 127.0.0.1:`port` with keep-alive,
    with its config file as the README runs it (older checkouts have none),
    once it answers /healthz."""
    command = [str(Path(sys.executable).with_name("gunicorn")), "config.wsgi"]
    if (code / "config" / "gunicorn.conf.py").exists():
        command[1:1] = ["-c", "config/gunicorn.conf.py"]
    command += ["-w", str(workers), "-b", f"127.0.0.1:{port}", "--keep-alive", "30"]
    server = subprocess.Popen([*command, "--log-level", "warning"], cwd=code, env=env)  # noqa: S603
    for _ in range(300):
        try:
            answer = urllib3.request(
                "GET", f"http://127.0.0.1:{port}/healthz", timeout=1, retries=False
            )
            if answer.status == 200:
                return server
        except urllib3.exceptions.HTTPError:
            time.sleep(0.1)
    server.terminate()
    sys.exit(f"the server of {code} did not start")
