"""`manage.py` commands in the production environment the README describes."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # In a fresh interpreter: this process imported prometheus_client long ago.
    return subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_commands_run_with_a_metrics_directory_that_does_not_exist_yet(tmp_path, monkeypatch):
    """PROMETHEUS_MULTIPROC_DIR set as in production, before gunicorn (which
    makes it) ever ran: prometheus_client writes its files there as soon as
    the apps define their metrics, and every command died with
    FileNotFoundError. The settings create it."""
    metrics = tmp_path / "run" / "syncserver-metrics"
    done = manage("check", PROMETHEUS_MULTIPROC_DIR=str(metrics))
    assert done.returncode == 0, done.stderr
    assert metrics.is_dir()

    # gunicorn still starts from an empty directory: what the command left
    # there would otherwise be added into every scrape.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics))
    hooks = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    hooks["on_starting"](None)
    assert list(metrics.glob("*.db")) == []
