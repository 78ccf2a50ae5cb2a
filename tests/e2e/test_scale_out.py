"""More than one of everything: two gunicorn instances (two workers each) and
two Celery workers, on one database and one Redis. Devices spread over both
servers write flat out; readers on each converge to a fresh sync of their
user; the wake-ups of the whole run are coalesced across the workers (at most
two messages per device and window, the last one covering the newest change)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db.models import Max

from config.celery import app
from devices.models import Device as DeviceRow
from devices.models import PushOutbox
from fieldwork.services import team_member_add
from sync.accounts.services import token_issue
from sync.channels import user_channels
from sync.models import Change
from tests.client_harness import Device, FaultyNetwork
from tests.devices.fake_fcm import running
from tests.factories import TeamFactory, UserFactory
from tests.faults.conftest import CeleryWorker, wait_for
from tests.live import ROOT, gunicorn
from tests.oracle import server_state

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

WINDOW = 3  # PUSH_COALESCE_SECONDS of the workers


@pytest.fixture
def fcm(tmp_path: Path):
    for fake in running():
        key = tmp_path / "service-account.json"
        key.write_text(json.dumps(fake.service_account()))
        yield fake, key


def test_two_servers_and_two_workers(fcm, tmp_path):
    fake, key = fcm
    team = TeamFactory()
    users = [UserFactory() for _ in range(3)]
    for user in users:
        team_member_add(team=team, user=user)
    member = {(u.pk, team.pk): True for u in users}
    PushOutbox.objects.all().delete()  # the joins' wake-ups: not this test's
    app.control.purge()
    workers = [
        CeleryWorker(
            tmp_path / f"worker{n}.log",
            {
                "PUSH_BACKEND": "fcm",
                "FCM_CREDENTIALS": str(key),
                "FCM_ENDPOINT": fake.url,
                "PUSH_COALESCE_SECONDS": str(WINDOW),
            },
            name=f"scale{n}",
        ).start()
        for n in range(2)
    ]
    try:
        with (
            gunicorn(workers=2, THROTTLE_USER="100000/min") as one,
            gunicorn(workers=2, THROTTLE_USER="100000/min") as other,
        ):
            servers = (one, other)
            # A reader on each server, with a push token: woken, never writing.
            readers = [
                Device(tmp_path / f"reader{n}", users[2], FaultyNetwork(httpx.HTTPTransport()), s)
                for n, s in enumerate(servers)
            ]
            tokens = {}
            for n, reader in enumerate(readers):
                tokens[n] = f"reader-{n}-{reader.client.device_id}"
                DeviceRow.objects.filter(pk=reader.client.device_id).update(
                    push_token=tokens[n], push_active=True
                )
                reader.client.sync()
            started = time.monotonic()
            writers = [
                subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                    [
                        sys.executable,
                        "-m",
                        "tests.e2e.client_writer",
                        "--url",
                        servers[n % 2],
                        "--state-dir",
                        str(tmp_path / f"writer{n}"),
                        "--username",
                        users[n % 2].username,
                        "--token",
                        token_issue(user=users[n % 2], name=f"writer{n}")[1],
                        "--team",
                        str(team.pk),
                        "--rounds",
                        "20",  # a few windows long
                        "--seed",
                        str(n),
                    ],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for n in range(4)
            ]
            while any(w.poll() is None for w in writers):
                for reader in readers:
                    reader.client.pull()
            tallies = [json.loads(w.communicate(timeout=60)[0]) for w in writers]
            assert [w.returncode for w in writers] == [0] * len(writers)
            assert all(t.get("applied", 0) > 0 for t in tallies), tallies
            took = time.monotonic() - started

            # Every device, on either server, ends where a fresh sync does.
            for reader in readers:
                reader.client.sync()
                assert reader.state() == server_state(users[2], member)
            fresh = Device(
                tmp_path / "fresh", users[2], FaultyNetwork(httpx.HTTPTransport()), servers[1]
            )
            fresh.client.sync()
            assert readers[0].state() == readers[1].state() == fresh.state()

            # The wake-ups, from whichever worker took each write.
            newest = Change.objects.filter(channel__in=user_channels(users[2].pk)).aggregate(
                Max("seq")
            )["seq__max"]
            wait_for(lambda: not PushOutbox.objects.exists(), 30, "the outbox to empty")
            for token in tokens.values():
                wait_for(
                    lambda token=token: (
                        fake.sent_to(token)
                        and int(fake.sent_to(token)[-1]["data"]["cursor"]) >= newest
                    ),
                    WINDOW + 15,
                    "the wake-up of the last write",
                )
    finally:
        for worker in workers:
            worker.stop()
    windows = took / WINDOW + 2  # the run's windows, and the one after it
    writes = sum(sum(t.values()) for t in tallies)
    both_took_work = [w.text().count("push_fanout[") > 0 for w in workers]
    for token in tokens.values():
        sent = fake.sent_to(token)
        assert len(sent) <= 2 * windows, (len(sent), windows, writes)
    # Far fewer messages than writes: coalesced across workers, not per worker.
    assert all(len(fake.sent_to(t)) < writes / 2 for t in tokens.values()), writes
    assert all(both_took_work), "one worker took every fan-out"
    print(
        f"\n{writes} writes through 2 servers in {took:.1f} s; messages per reader "
        f"{[len(fake.sent_to(t)) for t in tokens.values()]} (window {WINDOW} s)"
    )
    assert settings.REDIS_URL
