"""`SyncClient.follow()` against real servers on PostgreSQL: gunicorn serves
the API and `manage.py serve_live` the live pulls, on a base URL of its own
(as a deployment may expose it). A device following is told of another's
change by the live pull as soon as it commits, and goes on by polling when
the live server goes away."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client import SyncClient, SyncReport
from sync.accounts.services import token_issue
from tests.factories import UserFactory
from tests.live import gunicorn, serve_live
from tests.livepull.test_serve_live import waiting_on
from tests.oracle import CUSTOMER

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def servers() -> Iterator[tuple[str, str, Any]]:
    with (
        gunicorn(workers=2) as api,
        serve_live(METRICS_ALLOWED_IPS="127.0.0.1/32") as (live, proc),
    ):
        yield api, live, proc


def device(directory: Path, user: Any, api: str, live: str | None = None) -> SyncClient:
    client = SyncClient(directory, base_url=api, live_url=live)
    client.use_token(user.username, token_issue(user=user, name=directory.name)[1])
    client.register_device(platform="android", name=directory.name)
    return client


class Following(threading.Thread):
    """`client.follow()` in a thread of its own, as an app on screen runs it."""

    def __init__(self, client: SyncClient, **options: Any) -> None:
        super().__init__(daemon=True)
        self.client, self.options = client, options
        self.until = threading.Event()
        self.reports: list[SyncReport] = []
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.client.follow(self.until, on_sync=self.reports.append, **self.options)
        except BaseException as exc:  # the test asserts on it
            self.error = exc


def within(seconds: float, condition: Callable[[], bool]) -> float:
    """Wait for `condition`; returns how long it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "never happened"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_change_reaches_the_following_device_while_its_live_pull_waits(servers, tmp_path):
    api, live, _ = servers
    user = UserFactory()
    phone = device(tmp_path / "phone", user, api, live)
    tablet = device(tmp_path / "tablet", user, api)
    following = Following(phone, wait=30)
    waiting_on(live, 1)
    made = tablet.create(CUSTOMER, {"name": "From the tablet"})
    tablet.sync()
    took = within(10, lambda: phone.get(CUSTOMER, made) is not None)
    assert took < 5, "woken by the commit, well before the wait (30 s) ends"
    assert phone.get(CUSTOMER, made)["name"] == "From the tablet"
    assert [r.pulled for r in following.reports] == [1]

    # Stopped: it returns when the live pull it waits on is answered, which
    # the next change in the user's scope does at once.
    waiting_on(live, 1)
    following.until.set()
    tablet.update(CUSTOMER, made, {"phone": "1"})
    tablet.sync()
    following.join(10)
    assert not following.is_alive() and following.error is None
    assert phone.get(CUSTOMER, made)["phone"] == "1"
    for client in (phone, tablet):
        client.close()


def test_following_goes_on_by_polling_when_the_live_server_stops(servers, tmp_path):
    api, live, proc = servers
    user = UserFactory()
    phone = device(tmp_path / "phone", user, api, live)
    tablet = device(tmp_path / "tablet", user, api)
    following = Following(phone, wait=30, poll_every=0.5)
    waiting_on(live, 1)
    # A deploy: the waiting live pull is answered at once, then nobody is there.
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    made = tablet.create(CUSTOMER, {"name": "After the live server left"})
    tablet.sync()
    within(15, lambda: phone.get(CUSTOMER, made) is not None)
    assert following.is_alive() and following.error is None
    following.until.set()
    following.join(5)  # polling: it returns at once
    assert not following.is_alive() and following.error is None
    server_copies = {key: (c.version, c.data) for key, c in phone.store.server_copies().items()}
    assert server_copies == phone.fetch_all()
    for client in (phone, tablet):
        client.close()
