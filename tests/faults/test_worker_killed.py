"""A Celery worker process killed (SIGKILL, as the OOM killer does) in the middle
of a fan-out: the wake-ups are sent once, by the process that replaces it.

The worker is the real `celery -A config worker` (prefork, one pool process) on
Redis; the task is killed at a point the test can see: waiting for a table lock
the test holds right after claiming its outbox row, or waiting for an FCM send
the fake server holds. `acks_late` with `task_reject_on_worker_lost` puts the
task back on the queue; the redelivered task finds the row still claimed and
leaves it; once the claim runs out (two minutes, aged by the test) the
periodic sweep hands it to a task that finishes the work.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import time

import pytest
from django.conf import settings
from django.utils import timezone

from config.celery import app
from devices.models import PushOutbox
from sync.engine.write import mutations_apply
from sync.models import Change, Conflict
from sync.notify.wakeups import outbox_sweep
from tests.factories import customer, team_of, update
from tests.faults.conftest import backends_waiting, raw_connection, wait_for, with_token
from tests.helpers import sync_check_passes

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CUSTOMER = "fieldwork.customer"
# A redelivered fan-out that found its row claimed, in the worker's log.
SKIPPED = re.compile(r"push_fanout\[[^\]]+\] succeeded in [\d.]+s: None")


@pytest.fixture
def scene(fcm, make_actor):
    phone = make_actor()
    tablet = make_actor(user=phone.user)
    bob = make_actor()
    team = team_of(phone.user, bob.user)
    tokens = {name: with_token(a) for name, a in (("tablet", tablet), ("bob", bob))}
    with_token(phone)
    return phone, tablet, bob, team, tokens


def _start_worker(celery_worker_process, fcm, *, window: int):
    # What earlier writes left behind is not this test's business.
    PushOutbox.objects.all().delete()
    app.control.purge()
    return celery_worker_process(
        PUSH_BACKEND="fcm",
        FCM_CREDENTIALS=settings.FCM_CREDENTIALS,
        FCM_ENDPOINT=fcm.url,
        PUSH_COALESCE_SECONDS=str(window),
    )


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}/stat") or _zombie(pid), 10, "the kill")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _sweep_once_the_claim_has_run_out(row_id: int) -> None:
    # Two minutes (wakeups.CLAIM) pass in an instant: the claim is aged rather
    # than waited for.
    row = PushOutbox.objects.get(pk=row_id)
    assert row.claimed_until > timezone.now()  # still the dead task's
    row.claimed_until = timezone.now() - dt.timedelta(seconds=1)
    row.save(update_fields=["claimed_until"])
    assert outbox_sweep() == 1


def test_killed_after_claiming_the_row_its_wake_ups_are_sent_once(
    fcm, scene, celery_worker_process
):
    window = 2
    phone, _, _, team, tokens = scene
    worker = _start_worker(celery_worker_process, fcm, window=window)
    pool = worker.pool_process()

    # The fan-out reads devices right after claiming its row: hold that table.
    lock = raw_connection()
    lock.autocommit = False
    lock.execute("LOCK TABLE devices_device IN ACCESS EXCLUSIVE MODE")
    try:
        mutations_apply(
            user=phone.user,
            mutations=[customer("Acme", team=str(team.pk))],
            device_id=phone.device_id,
        )
        seq = Change.objects.order_by("-seq").values_list("seq", flat=True).first()
        row = PushOutbox.objects.get()
        wait_for(lambda: backends_waiting("devices_device"), 20, "the fan-out to block")
        row.refresh_from_db()
        assert row.claimed_until is not None  # claimed, then stuck mid-task
        _kill(pool)
    finally:
        lock.rollback()
        lock.close()

    wait_for(lambda: "SIGKILL" in worker.text(), 20, "the worker to see its pool process die")
    # The task came back (acks_late, reject on worker lost) to a new pool
    # process, which found the row claimed by the dead one and left it.
    wait_for(lambda: SKIPPED.search(worker.text()), 20, "the redelivered task")
    assert worker.pool_process() != pool
    row.refresh_from_db()
    assert row.attempts == 0 and fcm.messages == []

    # The claim runs out; the periodic sweep hands the row to a new task.
    _sweep_once_the_claim_has_run_out(row.pk)
    wait_for(lambda: not PushOutbox.objects.exists(), 20, "the outbox row to go")
    wait_for(
        lambda: fcm.delivered_to(tokens["tablet"]) and fcm.delivered_to(tokens["bob"]),
        window + 10,
        "the wake-ups",
    )
    time.sleep(window + 1)  # a duplicate would arrive by now
    for name in ("tablet", "bob"):
        assert [m["data"] for m in fcm.delivered_to(tokens[name])] == [
            {"type": "sync", "cursor": str(seq)}
        ]
    assert len(fcm.messages) == 2  # nothing else was even tried
    sync_check_passes()


def test_killed_while_sending_the_rerun_adds_no_duplicate(fcm, scene, celery_worker_process):
    """Killed in the middle of an FCM request, after it had opened the devices'
    windows (the leading edge) and while sending: the rerun finds the windows
    open and holds the change for their flush, so whatever the dead task did
    not deliver arrives at the window's end, and no device gets more than the
    two messages a window allows."""
    # The rerun must come within the window the dead task opened; sending the
    # first message takes a new pool process some seconds on a busy machine.
    window = 12
    phone, tablet, _, team, tokens = scene
    c = customer("Acme", team=str(team.pk))
    phone.push(c)
    phone.push(update(CUSTOMER, c["id"], 1, phone="1"))
    raised = tablet.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    assert raised["status"] == "conflict"
    conflict = Conflict.objects.get(pk=raised["conflict_id"])
    worker = _start_worker(celery_worker_process, fcm, window=window)
    pool = worker.pool_process()

    held = fcm.hold(tokens["tablet"])  # the leading edge's sync message
    response = phone.client.post(
        f"/api/v1/sync/conflicts/{conflict.pk}/resolve/",
        {"choice": "client", "expected_version": 2},
        format="json",
    )
    assert response.status_code == 200, response.content
    seq = Change.objects.order_by("-seq").values_list("seq", flat=True).first()
    row = PushOutbox.objects.get()
    assert held.wait(20), "the conflict_resolved message never reached FCM"
    _kill(pool)
    fcm.release()  # its answer goes to a dead socket: never delivered
    assert [m["data"]["type"] for m in fcm.held] == ["sync"]

    wait_for(lambda: SKIPPED.search(worker.text()), 20, "the redelivered task")
    _sweep_once_the_claim_has_run_out(row.pk)
    wait_for(lambda: not PushOutbox.objects.exists(), 20, "the outbox row to go")
    wait_for(
        lambda: len(fcm.delivered_to(tokens["tablet"])) == 2 and fcm.delivered_to(tokens["bob"]),
        window + 10,
        "the wake-ups",
    )
    time.sleep(2)  # a duplicate would arrive by now
    sync = {"type": "sync", "cursor": str(seq)}
    resolved = {"type": "conflict_resolved", "conflict_id": str(conflict.pk)}
    # The tablet's sync died with the task: the rerun's flush sends it.
    assert [m["data"] for m in fcm.delivered_to(tokens["tablet"])] == [resolved, sync]
    # Bob's may have been delivered before the kill: then he has it twice (a
    # wake-up too many is a cheap pull; one too few is a stale app).
    assert [m["data"] for m in fcm.delivered_to(tokens["bob"])] in ([sync], [sync, sync])
    # The dead task sent at once; the rerun scheduled the window's one flush.
    assert (
        worker.text().count("push_flush[")
        and len(re.findall(r"Task devices\.tasks\.push_flush\[[^\]]+\] received", worker.text()))
        == 1
    )
    sync_check_passes()
