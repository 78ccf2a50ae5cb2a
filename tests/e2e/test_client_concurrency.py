"""Several devices push at once, each from its own process through the
reference client, while another device pulls all along: it must end exactly
where a fresh initial sync of its user ends (nothing skipped, nothing stale).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from fieldwork.services import team_member_add
from sync.accounts.services import token_issue
from tests.client_harness import Device, FaultyNetwork
from tests.factories import TeamFactory, UserFactory
from tests.live import ROOT
from tests.oracle import server_state

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WRITER_USERS = (0, 0, 1, 2)  # four processes; two devices of the first user
ROUNDS = int(os.environ.get("E2E_WRITER_ROUNDS", "10"))


def test_a_device_pulling_while_others_push_ends_equal_to_a_fresh_sync(live_gunicorn, tmp_path):
    team = TeamFactory()
    users = [UserFactory() for _ in range(4)]
    for user in users:
        team_member_add(team=team, user=user)
    member = {(u.pk, team.pk): True for u in users}
    reader = Device(
        tmp_path / "reader",
        users[3],
        FaultyNetwork(httpx.HTTPTransport()),
        live_gunicorn,
        page_size=5,
    )
    reader.client.sync()
    writers = [
        subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [
                sys.executable,
                "-m",
                "tests.e2e.client_writer",
                "--url",
                live_gunicorn,
                "--state-dir",
                str(tmp_path / f"writer{n}"),
                "--username",
                users[u].username,
                "--token",
                token_issue(user=users[u], name=f"writer{n}")[1],
                "--team",
                str(team.pk),
                "--rounds",
                str(ROUNDS),
                "--seed",
                str(n),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n, u in enumerate(WRITER_USERS)
    ]
    pulls = 0
    while any(w.poll() is None for w in writers) or pulls == 0:
        reader.client.pull()
        pulls += 1
    tallies = [json.loads(w.communicate(timeout=60)[0]) for w in writers]
    assert [w.returncode for w in writers] == [0] * len(writers)
    assert all(t.get("applied", 0) > 0 for t in tallies), tallies
    reader.client.sync()

    fresh = Device(
        tmp_path / "fresh", users[3], FaultyNetwork(httpx.HTTPTransport()), live_gunicorn
    )
    fresh.client.sync()
    assert reader.state() == fresh.state()
    assert reader.state() == server_state(users[3], member)
    # Every pull of the loop started while a writer was still running; each
    # catches up with everything written so far (pages of 5), so how many fit
    # depends on the machine: 3 to 22 here. Two mean it read mid-write.
    assert pulls >= 2, "the reader did not pull while the writers pushed"
    print(f"\n{len(writers)} writer processes × {ROUNDS} rounds, {pulls} pulls; results {tallies}")
