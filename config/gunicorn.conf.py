"""gunicorn settings: `gunicorn -c config/gunicorn.conf.py config.wsgi`.

Only what the metrics and JSON errors need; everything else is gunicorn's
defaults or its command-line options (workers, bind, timeouts).

With PROMETHEUS_MULTIPROC_DIR set, every worker process keeps its metrics in
files there and /metrics adds them up (see sync/metrics.py). Files left by a
previous run would be added in too, so the directory is emptied when the
server starts; a worker that exits is marked dead so that its live gauges
stop counting (its counters stay in the totals, as counters should).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

wsgi_app = "config.wsgi"


def on_starting(server: Any) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for leftover in path.glob("*.db"):
        leftover.unlink()


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    # Requests gunicorn refuses itself get the API's JSON error body too.
    from config.gunicorn_errors import install

    install()
