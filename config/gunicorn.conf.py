"""gunicorn settings: `gunicorn -c config/gunicorn.conf.py config.wsgi`.

Only what the metrics and JSON errors need; everything else is gunicorn's
defaults or its command-line options (workers, bind, timeouts).

With PROMETHEUS_MULTIPROC_DIR set, every worker process keeps its metrics in
files there and /metrics adds them up (see sync/engine/metrics.py). Files left
by a previous run, or by manage.py commands run before it (the settings create
the directory when it is missing), would be added in too, so the directory is
emptied when the server starts; a worker that exits is marked dead so that its
live gauges stop counting (its counters stay in the totals, as counters should).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

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
    # Runs in the master's SIGCHLD handler. It imported prometheus_client
    # here once: when two workers exited together (as all do when gunicorn
    # stops), the second signal arrived in the middle of that import, the
    # handler ran again on the half-imported module, and the master died
    # with an AttributeError. The module is imported with this file instead.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    # Requests gunicorn refuses itself get the API's JSON error body too.
    from config.gunicorn_errors import install

    install()
    tune_gc()


def tune_gc() -> None:
    """The cyclic garbage collector, tuned for a worker serving requests.

    Responses no longer sit in reference cycles (syncbase.middleware.
    ReleaseResponseMiddleware), so nearly everything a request makes is freed
    by reference counting, yet the collector still ran every 700 container
    allocations, traversing a page's live rows again and again, and its full
    collections walked everything Django loaded at start. The application, as
    loaded, is frozen out of collection (`gc.freeze`), and the first
    generation's threshold is raised (`GC_THRESHOLD`, default 10,000; "0"
    leaves Python's settings alone)."""
    threshold = int(os.environ.get("GC_THRESHOLD", "10000"))
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)
