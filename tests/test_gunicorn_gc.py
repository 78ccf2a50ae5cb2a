"""config/gunicorn.conf.py tunes each worker's garbage collector once the
application is loaded: what was loaded is frozen out of collection and the
first generation waits for more allocations (`GC_THRESHOLD`, "0" = Python's)."""

from __future__ import annotations

import gc
import runpy
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[1] / "config" / "gunicorn.conf.py"


@pytest.fixture
def tune_gc():
    before = gc.get_threshold()
    yield runpy.run_path(str(CONF))["tune_gc"]
    gc.unfreeze()
    gc.set_threshold(*before)


def test_a_worker_freezes_what_it_loaded_and_collects_less_often(tune_gc, monkeypatch):
    monkeypatch.delenv("GC_THRESHOLD", raising=False)
    _, second, third = gc.get_threshold()
    tune_gc()
    assert gc.get_threshold() == (10_000, second, third)
    assert gc.get_freeze_count() > 1000  # the modules, classes and settings loaded so far


def test_the_threshold_is_a_setting_and_zero_leaves_python_alone(tune_gc, monkeypatch):
    monkeypatch.setenv("GC_THRESHOLD", "2500")
    tune_gc()
    assert gc.get_threshold()[0] == 2500
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    monkeypatch.setenv("GC_THRESHOLD", "0")
    tune_gc()
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
