"""What config/gunicorn.conf.py runs in gunicorn's master process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "config" / "gunicorn.conf.py"

# In a fresh interpreter: the test process has imported prometheus_client long ago.
SCRIPT = """
import builtins, os, runpy, sys
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[2]
hooks = runpy.run_path(sys.argv[1])
open(os.path.join(sys.argv[2], "gauge_livesum_4242.db"), "wb").close()

def no_import(name, *args, **kwargs):
    raise AssertionError(f"child_exit imported {name}")

class Worker:
    pid = 4242

builtins.__import__ = no_import
hooks["child_exit"](None, Worker())
print(sorted(os.listdir(sys.argv[2])))
"""


def test_a_worker_exiting_is_recorded_without_an_import_in_the_signal_handler(tmp_path):
    """child_exit runs in the master's SIGCHLD handler: an import there is
    re-entered when another worker exits meanwhile (gunicorn stopping all
    its workers), and the master died on the half-imported module."""
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", SCRIPT, str(CONF), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # The dead worker's live gauges are gone (prometheus_client's mark_process_dead).
    assert done.stdout.strip() == "[]"
