"""`SyncClient.follow()`: live pulls while the app is on screen, against the
server in this process.

The server runs a live pull in the thread that makes it (as a WSGI server
would), so a live pull that waits holds the test's thread: the waits here are
a second (`LIVE_PULL_MAX_WAIT = 1`), or the answer is there at once.
tests/livepull/test_client_follow.py runs it against the live server.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from client import SyncClient
from client.sync import POLLS_BEFORE_LIVE, SyncReport
from fieldwork.models import Customer
from sync.engine.compaction import feed_compact
from tests.oracle import CUSTOMER

pytestmark = pytest.mark.django_db

LIVE_URL = "https://testserver:8443"  # the same server, told apart by its port


class LiveDoor(httpx.BaseTransport):
    """In front of the server (a device's `network.inner`), for live pulls:
    `before` runs once as the next one goes out, `answers` are given instead
    of the server's while there are any, and the pages the server answered
    are kept in `pages`."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.before: Callable[[], None] | None = None
        self.answers: list[httpx.Response] = []
        self.pages: list[dict] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/sync/live/"):
            return self.inner.handle_request(request)
        if self.before is not None:
            hook, self.before = self.before, None
            hook()
        if self.answers:
            return self.answers.pop(0)
        response = self.inner.handle_request(request)
        response.read()
        if response.status_code == 200:
            self.pages.append(json.loads(response.content))
        return response


class OneWorker(httpx.BaseTransport):
    """The server as a single worker in the test's thread, the one that holds
    the test's database transaction: requests made on other threads queue up
    until `serve()` answers them, one at a time. `log` tells the order."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.owner = threading.get_ident()
        self.queue: queue.Queue[tuple[httpx.Request, Future[httpx.Response]]] = queue.Queue()
        self.log: list[str] = []
        self.serving_live = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if threading.get_ident() == self.owner:
            return self.inner.handle_request(request)
        answer: Future[httpx.Response] = Future()
        self.log.append(f"asked {_name(request)}")
        self.queue.put((request, answer))
        return answer.result()

    def serve(self, while_alive: threading.Thread) -> None:
        while while_alive.is_alive():
            try:
                request, answer = self.queue.get(timeout=0.02)
            except queue.Empty:
                continue
            if _name(request) == "live":
                self.serving_live.set()
            try:
                response = self.inner.handle_request(request)
                response.read()  # here: the end of the response ends Django's request
            except Exception as exc:
                answer.set_exception(exc)
            else:
                answer.set_result(response)
            self.log.append(f"answered {_name(request)}")


def _name(request: httpx.Request) -> str:
    return request.url.path.rstrip("/").rsplit("/", 1)[-1]  # pull, live, push, ...


def calls(device) -> list[str]:
    return [_name(r) for r in device.network.requests]


def at_door(device) -> LiveDoor:
    """Put a LiveDoor in front of the device's server; forget its calls so far."""
    door = LiveDoor(device.network.inner)
    device.network.inner = door
    device.network.requests.clear()
    return door


def fresh(device) -> dict:
    return dict(device.client.fetch_all().items())


def test_a_change_made_before_the_live_pull_is_answered_and_applied_at_once(make_device):
    phone = make_device(live_url=LIVE_URL)
    tablet = make_device(user=phone.user)
    phone.client.sync()
    door = at_door(phone)
    made: list[str] = []

    def tablet_edits() -> None:  # after follow()'s first sync, before its live pull
        made.append(tablet.client.create(CUSTOMER, {"name": "From the tablet"}))
        tablet.client.sync()

    phone.network.after_pull = tablet_edits
    until = threading.Event()
    reports: list[SyncReport] = []

    def synced(report: SyncReport) -> None:
        reports.append(report)
        until.set()

    started = time.monotonic()
    phone.client.follow(until, wait=30, on_sync=synced)
    assert time.monotonic() - started < 10, "answered at once, not after the wait"
    assert [r.pulled for r in reports] == [1]
    assert [[c["id"] for c in page["changes"]] for page in door.pages] == [made]
    assert phone.client.get(CUSTOMER, made[0])["name"] == "From the tablet"
    assert phone.state() == fresh(phone)
    # The live pull went to the live server, everything else to the server.
    hosts = {(_name(r), r.url.port) for r in phone.network.requests}
    assert hosts == {("pull", None), ("live", 8443)}


def test_a_live_pull_that_ends_empty_keeps_its_cursor_and_asks_again(make_device, settings):
    settings.LIVE_PULL_MAX_WAIT = 1
    phone = make_device()
    phone.client.create(CUSTOMER, {"name": "Acme"})
    phone.client.sync()
    door = at_door(phone)
    until = threading.Event()
    set_at: list[float] = []

    def stop() -> None:
        set_at.append(time.monotonic())
        until.set()

    threading.Timer(2.5, stop).start()
    phone.client.follow(until, wait=30, on_sync=lambda report: None)
    stopped = time.monotonic()
    live = [r for r in phone.network.requests if _name(r) == "live"]
    assert 2 <= len(live) <= 4, "one a second (the server's maximum wait), until stopped"
    assert all(page["changes"] == [] for page in door.pages)
    sent = [r.url.params["cursor"] for r in live]
    assert sent[1:] == [page["cursor"] for page in door.pages[:-1]]
    assert phone.client.store.cursor == door.pages[-1]["cursor"]
    assert stopped - set_at[0] < 2.5, "within one live wait of being stopped"
    assert calls(phone) == ["pull"] + ["live"] * len(live)


def test_an_older_server_without_live_pulls_is_polled(make_device):
    phone = make_device()
    tablet = make_device(user=phone.user)
    phone.client.sync()
    door = at_door(phone)
    door.answers = [httpx.Response(404, json={"code": "not_found", "detail": "Not found."})]
    pulls: list[dict] = []
    made: list[str] = []

    def pulled(page: dict) -> None:
        pulls.append(page)
        if len(pulls) == 2:  # a poll: meanwhile the tablet makes a change
            made.append(tablet.client.create(CUSTOMER, {"name": "Polled"}))
            tablet.client.sync()

    phone.network.on_pull_page = pulled
    until = threading.Event()
    phone.client.follow(until, poll_every=0.01, on_sync=lambda report: until.set())
    assert calls(phone) == ["pull", "live", "pull", "pull"]  # no live pull tried again
    assert phone.client.get(CUSTOMER, made[0])["name"] == "Polled"


def test_too_many_live_pulls_falls_back_to_polling_for_a_while(make_device, settings):
    settings.LIVE_PULLS_PER_USER = 0  # every live pull that would wait: 429
    phone = make_device()
    phone.client.sync()
    door = at_door(phone)
    until = threading.Event()
    door.before = lambda: setattr(door, "before", until.set)  # stop at the second live pull
    phone.client.follow(until, wait=30, poll_every=0.01)
    # Neither retried in place nor slept through: polls, then a live pull again.
    assert calls(phone) == ["pull", "live", *["pull"] * POLLS_BEFORE_LIVE, "live"]
    assert phone.client.stats.retries == 0


def test_a_refused_cursor_on_a_live_pull_resyncs_and_keeps_the_outbox(make_device, settings):
    phone = make_device()
    tablet = make_device(user=phone.user)
    doomed = phone.client.create(CUSTOMER, {"name": "Doomed"})
    kept = phone.client.create(CUSTOMER, {"name": "Kept"})
    phone.client.sync()
    tablet.client.sync()
    door = at_door(phone)

    def meanwhile() -> None:  # as the phone's live pull goes out
        tablet.client.delete(CUSTOMER, doomed)
        tablet.client.sync()
        # Time passes: the news of the delete is compacted away (410).
        settings.SYNC_MUTATION_LOG_RETENTION = timedelta(days=3650)
        feed_compact(now=timezone.now() + settings.SYNC_RETENTION + timedelta(days=1))
        phone.client.update(CUSTOMER, kept, {"phone": "1"})  # the user edits meanwhile

    door.before = meanwhile
    until = threading.Event()
    reports: list[SyncReport] = []

    def synced(report: SyncReport) -> None:
        reports.append(report)
        until.set()

    phone.client.follow(until, wait=30, on_sync=synced)
    assert door.pages == []  # the live pull was refused...
    [report] = reports  # ...and the sync after it pushed the edit, then started over
    assert report.resynced and report.initial and report.pushed == {"applied": 1}
    assert calls(phone) == ["pull", "live", "push", "pull", "pull"]
    assert phone.client.get(CUSTOMER, doomed) is None
    assert phone.client.get(CUSTOMER, kept)["phone"] == "1"
    assert Customer.objects.get(pk=kept).phone == "1"
    assert phone.client.store.pending() == []
    assert phone.state() == fresh(phone)


def test_an_edit_pushed_from_another_thread_while_a_live_pull_waits(make_device, settings):
    settings.LIVE_PULL_MAX_WAIT = 1
    phone = make_device()
    phone.client.sync()
    server = OneWorker(phone.network.inner)
    phone.network.inner = server
    phone.network.requests.clear()
    until = threading.Event()
    failures: list[BaseException] = []
    made: list[str] = []
    pushed: list[SyncReport] = []

    def follow() -> None:
        try:
            phone.client.follow(until, wait=30)
        except BaseException as exc:  # the test asserts on it
            failures.append(exc)

    def the_ui() -> None:
        try:
            assert server.serving_live.wait(5)
            made.append(phone.client.create(CUSTOMER, {"name": "Made while following"}))
            pushed.append(phone.client.push())  # at once: no waiting for the live pull
        except BaseException as exc:
            failures.append(exc)
        finally:
            until.set()

    following = threading.Thread(target=follow)
    ui = threading.Thread(target=the_ui)
    following.start()
    ui.start()
    server.serve(while_alive=following)
    following.join()
    ui.join()
    assert failures == []
    assert [r.pushed for r in pushed] == [{"applied": 1}]
    # The push went out while the live pull was still waiting on the server.
    log = server.log
    assert log.index("asked live") < log.index("asked push") < log.index("answered live")
    assert Customer.objects.get(pk=made[0]).name == "Made while following"
    assert phone.client.store.pending() == []
    assert phone.state() == fresh(phone)


def test_the_live_url_is_kept_with_its_server(tmp_path: Path):
    directory = tmp_path / "phone"
    with SyncClient(directory, base_url="https://a.test", live_url="https://live.a.test/"):
        pass
    with SyncClient(directory) as client:
        assert client.live_server == "https://live.a.test"
        client.store.forget_account()  # another user signs in: the servers stay
        assert client.live_server == "https://live.a.test"
    with SyncClient(directory, base_url="https://a.test/") as client:
        assert client.live_server == "https://live.a.test"
    with SyncClient(directory, base_url="https://b.test") as client:
        assert client.live_server == "https://b.test"  # another server: its own live pulls


def test_a_wait_of_zero_is_refused(make_device):
    with pytest.raises(ValueError, match="wait"):
        make_device().client.follow(threading.Event(), wait=0)


def test_a_live_page_from_before_a_push_that_moved_the_cursor_is_dropped(make_device, settings):
    settings.LIVE_PULL_MAX_WAIT = 1
    phone = make_device()
    phone.client.sync()
    door = at_door(phone)
    pushed_cursor: list[str | None] = []

    def push_meanwhile() -> None:  # as the live pull goes out (the UI thread's push)
        phone.client.create(CUSTOMER, {"name": "Pushed meanwhile"})
        phone.client.push()
        pushed_cursor.append(phone.client.store.cursor)
        door.before = until.set  # stop at the next live pull

    door.before = push_meanwhile
    until = threading.Event()
    reports: list[SyncReport] = []
    phone.client.follow(until, wait=30, on_sync=reports.append)
    first, second = [r for r in phone.network.requests if _name(r) == "live"]
    # The server answered the first live pull with our own push (it read
    # after it), from the cursor before it; the push had moved ours past it.
    assert [len(page["changes"]) for page in door.pages] == [1, 0]
    assert first.url.params["cursor"] != pushed_cursor[0]
    assert [r.pulled for r in reports] == []  # not applied: dropped
    assert second.url.params["cursor"] == pushed_cursor[0]
    assert phone.state() == fresh(phone)
