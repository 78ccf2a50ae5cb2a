"""Live pulls served by `manage.py serve_live` (uvicorn, Django's ASGI handler)
on the test database: woken by commits made in other processes, in order or
not, answered cleanly when the server shuts down, and waiting without a
thread each."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from devices.services import device_register
from sync.accounts.services import token_issue
from tests.factories import UserFactory, customer
from tests.faults.conftest import raw_connection
from tests.helpers import psql
from tests.live import serve_live

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CUSTOMER = "fieldwork.customer"


class App:
    """A device of a user, talking to the server over HTTP."""

    def __init__(self, base: str, user: Any = None) -> None:
        self.user = user or UserFactory()
        self.id = uuid.uuid4()
        device_register(user=self.user, device_id=self.id, data={"platform": "android"})
        token = token_issue(user=self.user, name="live")[1]
        self.http = httpx.Client(
            base_url=base,
            headers={"Authorization": f"Token {token}", "X-Device-Id": str(self.id)},
            timeout=60,
        )

    def push(self, *mutations: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/api/v1/sync/push/", json={"mutations": list(mutations)})
        assert response.status_code == 200, response.text
        return response.json()

    def caught_up(self) -> str:
        cursor = None
        while True:
            page = self.http.get("/api/v1/sync/pull/", params={"cursor": cursor} if cursor else {})
            assert page.status_code == 200, page.text
            body = page.json()
            cursor = body["cursor"]
            if not body["has_more"]:
                return cursor

    def live(self, cursor: str, wait: int = 30) -> httpx.Response:
        return self.http.get("/api/v1/sync/live/", params={"cursor": cursor, "wait": wait})


class Waiting(threading.Thread):
    """A live pull in the background; `.response` once answered, `.took` its seconds."""

    def __init__(self, app: App, cursor: str, wait: int = 30) -> None:
        super().__init__(daemon=True)
        self.app, self.cursor, self.wait = app, cursor, wait
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.took = 0.0
        self.start()

    def run(self) -> None:
        started = time.monotonic()
        try:
            self.response = self.app.live(self.cursor, self.wait)
        except BaseException as exc:  # the test asserts on it
            self.error = exc
        self.took = time.monotonic() - started

    def answered(self) -> bool:
        return not self.is_alive()

    def page(self, timeout: float = 20) -> dict[str, Any]:
        self.join(timeout)
        assert not self.is_alive(), "the live pull never answered"
        assert self.error is None, repr(self.error)
        assert self.response is not None and self.response.status_code == 200, self.response
        return self.response.json()


def waiting_on(base: str, n: int, timeout: float = 10) -> None:
    """Until the server has `n` live pulls waiting (its /metrics gauge)."""
    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(f"{base}/metrics").text
        for line in text.splitlines():
            if line.startswith("sync_live_pulls_waiting ") and float(line.split()[1]) >= n:
                return
        assert time.monotonic() < deadline, f"{n} live pulls never waited"
        time.sleep(0.05)


def sql(statement: str, *params: Any) -> None:
    """A statement committed by another connection of the test process."""
    with raw_connection() as conn:
        conn.execute(statement, params)


@pytest.fixture
def server():
    with serve_live(METRICS_ALLOWED_IPS="127.0.0.1/32") as (base, proc):
        yield base, proc


def test_a_push_by_another_process_wakes_the_waiting_device(server):
    base, _ = server
    phone = App(base)
    tablet = App(base, phone.user)
    cursor = tablet.caught_up()
    waiting = Waiting(tablet, cursor)
    waiting_on(base, 1)
    assert not waiting.answered()
    made = customer("From the phone")
    phone.push(made)
    page = waiting.page()
    assert [c["id"] for c in page["changes"]] == [made["id"]]
    assert waiting.took < 15, "answered by the commit, not the wait's end"


def test_raw_sql_in_another_process_wakes_it(server, tmp_path):
    base, _ = server
    app = App(base)
    made = customer("Raw")
    app.push(made)
    cursor = app.caught_up()
    waiting = Waiting(app, cursor)
    waiting_on(base, 1)
    # A UUID the test made: nothing to escape.
    psql(f"UPDATE fieldwork_customer SET name = 'Renamed by psql' WHERE id = '{made['id']}'")  # noqa: S608
    page = waiting.page()
    assert [c["data"]["name"] for c in page["changes"]] == ["Renamed by psql"]


def test_a_change_committed_out_of_order_is_delivered_once_the_older_one_commits(server):
    """B commits while the older A is still open: the feed's frontier holds B
    back (a reader must not move past A's position), so the woken live pull
    finds nothing and waits on; when A commits it gets both."""
    base, _ = server
    app = App(base)
    first, second = customer("A"), customer("B")
    app.push(first, second)
    cursor = app.caught_up()
    waiting = Waiting(app, cursor)
    waiting_on(base, 1)

    older = raw_connection()
    older.autocommit = False
    try:
        older.execute(
            "UPDATE fieldwork_customer SET name = 'A, older' WHERE id = %s", [first["id"]]
        )
        sql("UPDATE fieldwork_customer SET name = 'B, newer' WHERE id = %s", second["id"])
        time.sleep(2)  # the woken pull and its rechecks find B held back
        assert not waiting.answered(), waiting.response and waiting.response.text
        older.commit()
    finally:
        older.close()
    page = waiting.page()
    assert sorted(c["data"]["name"] for c in page["changes"]) == ["A, older", "B, newer"]


def test_shutting_down_answers_the_waiting_pulls_with_their_cursor(server):
    base, proc = server
    apps = [App(base) for _ in range(3)]
    waiting = [Waiting(app, app.caught_up()) for app in apps]
    waiting_on(base, 3)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    for w in waiting:
        page = w.page(timeout=10)
        assert page["changes"] == [] and page["cursor"]
    assert time.monotonic() - started < 5, "answered at once, not at the wait's end"
    # uvicorn ends by raising the signal again once it has shut down.
    assert proc.wait(15) in (0, -signal.SIGTERM)


def test_waiting_pulls_hold_no_thread_each(server):
    base, proc = server
    apps = [App(base) for _ in range(5)]
    before = _threads(proc.pid)
    waiting = [Waiting(app, app.caught_up(), wait=20) for app in apps for _ in range(8)]
    waiting_on(base, len(waiting))
    during = _threads(proc.pid)
    # 40 waiting requests; the live pulls' pool has LIVE_PULL_THREADS (8).
    assert during - before <= 10, (before, during)
    apps[0].push(customer("Wake one user"))
    for w in waiting[:8]:
        assert len(w.page()["changes"]) == 1
    assert all(not w.answered() for w in waiting[8:])


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no thread count")
