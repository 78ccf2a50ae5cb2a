from __future__ import annotations

import time

import pytest

from sync.models import Change
from sync.tasks import feed_compact
from tests.factories import customer, update

CUSTOMER = "fieldwork.customer"


@pytest.mark.django_db
def test_compaction_task_keeps_the_newest_change_per_object(alice):
    c = customer()
    alice.push(c, update(CUSTOMER, c["id"], 1, name="2"), update(CUSTOMER, c["id"], 2, name="3"))
    stats = feed_compact()
    assert stats["superseded"] == 2
    assert list(Change.objects.filter(object_id=c["id"]).values_list("version", flat=True)) == [3]
    assert feed_compact()["superseded"] == 0  # idempotent


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_compaction_runs_on_a_real_worker_over_redis(alice):
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    assert not app.conf.task_always_eager
    assert app.conf.broker_url.startswith("redis://")
    c = customer()
    alice.push(c, update(CUSTOMER, c["id"], 1, name="2"))
    assert Change.objects.filter(object_id=c["id"]).count() == 2
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        feed_compact.delay()
        deadline = time.monotonic() + 20
        while Change.objects.filter(object_id=c["id"]).count() != 1:
            assert time.monotonic() < deadline, "the worker never compacted the feed"
            time.sleep(0.1)
