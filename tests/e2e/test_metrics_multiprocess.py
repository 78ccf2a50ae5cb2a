"""/metrics under gunicorn with several worker processes: with
PROMETHEUS_MULTIPROC_DIR every process counts in its own files and one scrape
adds them all up (config/gunicorn.conf.py, sync/engine/metrics.py)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-metrics-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def server(tmp_path):
    db = connection.settings_dict
    port = _free_port()
    metrics_dir = tmp_path / "prometheus"
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DEBUG": "0",
        "METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LOG_LEVEL": "WARNING",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen(  # noqa: S603 - our own server, fixed arguments
        [
            str(gunicorn),
            "-c",
            "config/gunicorn.conf.py",
            "-w",
            "3",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=2)  # noqa: S310
            break
        except OSError:
            assert proc.poll() is None, "gunicorn exited"
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
    yield base, metrics_dir
    proc.terminate()
    proc.wait(10)


def requests_counted(base: str) -> float:
    status, body = get(f"{base}/metrics", Authorization=f"Bearer {TOKEN}")
    assert status == 200, body
    return sum(
        s.value
        for family in text_string_to_metric_families(body.decode())
        if family.name == "django_http_requests_total_by_method"
        for s in family.samples
        if s.name.endswith("_total") and s.labels.get("method") == "GET"
    )


def test_one_scrape_counts_the_requests_of_every_worker_process(server):
    base, metrics_dir = server
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(lambda _: get(f"{base}/healthz")[0], range(60)))
    assert codes == [200] * 60
    pids = {
        m.group(1)
        for f in metrics_dir.iterdir()
        if (m := re.fullmatch(r"counter_(\d+)\.db", f.name))
    }
    assert len(pids) >= 2, "requests were answered by several processes"
    first = requests_counted(base)
    assert first >= 61  # the start-up probe, 60 requests, and this scrape
    # Whichever process answers, each scrape sees every earlier request.
    for _ in range(5):
        later = requests_counted(base)
        assert later > first
        first = later
    assert get(f"{base}/metrics")[0] == 403
