"""Pulls read on a streaming standby (READ_DATABASE_URL), everything else on
the primary: writes on the primary reach devices pulling from the standby;
with the standby's replay paused while writers go on, its pulls return
nothing newer rather than skip anything, and converge once it resumes; a
device whose cursor is ahead of the standby (its own push's) is read on the
primary (read-your-writes)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.live import gunicorn
from tests.scale.conftest import Cluster, manage, run_pytest

pytestmark = pytest.mark.postgres


class App:
    def __init__(self, base: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=f"{base}/api/v1",
            headers={"Authorization": f"Token {token}", "X-Device-Id": str(uuid.uuid4())},
            timeout=30,
        )
        made = self.http.post(
            "/devices/", json={"id": self.http.headers["X-Device-Id"], "platform": "android"}
        )
        assert made.status_code == 201, made.text
        self.cursor: str | None = None
        self.seen: dict[str, dict[str, Any]] = {}

    def push_customer(self, name: str) -> tuple[str, str]:
        object_id = str(uuid.uuid4())
        body = {
            "mutations": [
                {
                    "mutation_id": str(uuid.uuid4()),
                    "model": "fieldwork.customer",
                    "op": "create",
                    "id": object_id,
                    "base_version": None,
                    "data": {"name": name},
                }
            ]
        }
        answer = self.http.post("/sync/push/", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["status"] == "applied"
        return object_id, answer.json()["cursor"]

    def pull(self, cursor: str | None = None) -> list[str]:
        """Pull until up to date; the ids that came."""
        came: list[str] = []
        self.cursor = cursor or self.cursor
        while True:
            params = {"limit": 1000, **({"cursor": self.cursor} if self.cursor else {})}
            page = self.http.get("/sync/pull/", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            for change in body["changes"]:
                self.seen[change["id"]] = change
                came.append(change["id"])
            self.cursor = body["cursor"]
            if not body["has_more"]:
                return came


@pytest.fixture(scope="module")
def served(cluster: Cluster, django_db_blocker) -> Iterator[tuple[Cluster, str, str]]:
    manage(cluster, "migrate", "--noinput")
    manage(cluster, "seed_demo")
    with django_db_blocker.unblock():
        with gunicorn(
            workers=2,
            DATABASE_URL=cluster.primary,
            READ_DATABASE_URL=cluster.standby,
            THROTTLE_USER="100000/min",
            THROTTLE_ANON="100000/min",
        ) as base:
            token = httpx.post(
                f"{base}/api/v1/auth/token/",
                json={"username": "demo", "password": "demo-pass-1234"},
            ).json()["token"]
            yield cluster, base, token


def test_pulls_read_the_standby_and_never_skip_while_its_replay_is_paused(served):
    cluster, base, token = served
    erp_token = manage(
        cluster, "service_account", "erp-standby", "--perm", "fieldwork.view_customer"
    ).strip()
    phone, tablet = App(base, token), App(base, token)
    phone.pull()
    tablet.pull()

    first, _ = phone.push_customer("Replayed")
    cluster.replayed()
    assert first in tablet.pull()
    erp = httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Token {erp_token}"})
    erp_cursor = ""
    while True:  # the back office mirrors customers, up to date
        mirrored = erp.get("/data/fieldwork.customer/", params={"since": erp_cursor}).json()
        erp_cursor = mirrored["cursor"]
        if not mirrored["has_more"]:
            break

    cluster.sql(cluster.standby_port, "SELECT pg_wal_replay_pause()")
    try:
        kept_back, _ = phone.push_customer("Written while the standby is paused")
        later, _ = phone.push_customer("And another")
        # The standby serves the tablet's pull: nothing newer, and its cursor
        # does not move past what it has not seen.
        assert tablet.pull() == []
        assert tablet.pull() == []
        held = tablet.cursor
        # The data API's list and ?since= read there too.
        listed = erp.get("/data/fieldwork.customer/", params={"page_size": 1000}).json()
        assert first in {o["id"] for o in listed["results"]}
        assert kept_back not in {o["id"] for o in listed["results"]}
        since = erp.get("/data/fieldwork.customer/", params={"since": erp_cursor}).json()
        assert kept_back not in {c["id"] for c in since["changes"]}
    finally:
        cluster.sql(cluster.standby_port, "SELECT pg_wal_replay_resume()")
    cluster.replayed()
    assert set(tablet.pull(held)) >= {kept_back, later}
    assert {kept_back, later, first} <= set(tablet.seen)


def test_a_cursor_ahead_of_the_standby_is_read_on_the_primary(served):
    cluster, base, token = served
    phone, tablet = App(base, token), App(base, token)
    phone.pull()
    tablet.pull()
    before = tablet.cursor
    cluster.sql(cluster.standby_port, "SELECT pg_wal_replay_pause()")
    try:
        _, promised = phone.push_customer("Mine")
        other, _ = tablet.push_customer("The tablet's, after it")
        # The phone's push cursor is ahead of the paused standby: its next
        # pull is read on the primary and brings the tablet's write at once.
        assert other in phone.pull(promised)
        # A cursor the standby has: read there, where nothing new is yet.
        assert App(base, token).pull(before) == []
    finally:
        cluster.sql(cluster.standby_port, "SELECT pg_wal_replay_resume()")
    cluster.replayed()


def test_the_http_convergence_property_holds_with_reads_on_the_standby(cluster, tmp_path):
    """tests/e2e/test_client_convergence.py, run once with its server reading
    from the standby (a pytest of its own: its test database is made on this
    cluster's primary, and replicated)."""
    examples = os.environ.get("E2E_STANDBY_EXAMPLES", "6")
    env = {
        **os.environ,
        "DATABASE_URL": cluster.url(cluster.primary_port, "sync"),
        "READ_DATABASE_URL": cluster.url(cluster.standby_port, "test_sync"),
        "E2E_STANDBY_URL": cluster.url(cluster.standby_port, "test_sync"),
        "E2E_EXAMPLES": examples,
    }
    summary = run_pytest(env, "tests/e2e/test_client_convergence.py")
    assert summary.startswith("1 passed"), summary
