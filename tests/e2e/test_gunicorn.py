"""The real server: gunicorn with several worker processes on PostgreSQL.

Writers on several devices push concurrently through different worker
processes while another device pulls all along; in the end that device must
have received every object, none skipped. (The precise out-of-order commit
case, which real traffic hits only rarely, is forced in
tests/sync/test_concurrency.py.)
"""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from typing import Any

import pytest

from devices.services import device_register
from fieldwork.services import team_member_add
from sync.accounts.services import token_issue
from tests.factories import TeamFactory, UserFactory, customer
from tests.helpers import sync_check_passes
from tests.live import gunicorn

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server():
    with gunicorn(THROTTLE_USER="100000/min") as base:
        yield base


class Device:
    def __init__(self, base: str, user: Any) -> None:
        self.base = base
        self.id = uuid.uuid4()
        device_register(user=user, device_id=self.id, data={"platform": "android"})
        self.token = token_issue(user=user, name="e2e")[1]

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - loopback only
            f"{self.base}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": f"Token {self.token}",
                "X-Device-Id": str(self.id),
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())


def test_concurrent_writers_across_processes_never_make_a_reader_skip(server):
    team = TeamFactory()
    users = [UserFactory() for _ in range(4)]
    for user in users:
        team_member_add(team=team, user=user)
    writers = [Device(server, user) for user in users[:3]]
    reader = Device(server, users[3])
    created: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def write(device: Device) -> None:
        try:
            for _ in range(15):
                batch = [customer(f"c{i}", team=str(team.pk)) for i in range(10)]
                results = device.call("POST", "/api/v1/sync/push/", {"mutations": batch})["results"]
                assert {r["status"] for r in results} == {"applied"}
                with lock:
                    created.extend(m["id"] for m in batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    seen: set[str] = set()
    cursor = None
    pulls = 0
    while any(t.is_alive() for t in threads) or pulls == 0:
        query = f"?limit=7{'&cursor=' + cursor if cursor else ''}"
        page = reader.call("GET", f"/api/v1/sync/pull/{query}")
        seen.update(c["id"] for c in page["changes"])
        cursor = page["cursor"]
        pulls += 1
    for t in threads:
        t.join()
    assert not errors, errors
    while True:
        page = reader.call("GET", f"/api/v1/sync/pull/?limit=100&cursor={cursor}")
        seen.update(c["id"] for c in page["changes"])
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    assert len(created) == 3 * 15 * 10
    missing = set(created) - seen
    assert not missing, f"{len(missing)} objects were never pulled"
    assert pulls > 3  # the reader really pulled while writers were committing
    # What three processes wrote concurrently holds together: versions,
    # history, feed, stored push results.
    sync_check_passes()


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        # Found by the fuzzer: a pull whose query string passed gunicorn's
        # 4,094-byte request line limit got gunicorn's HTML page.
        ("/api/v1/sync/pull/?" + "&".join(["limit=1"] * 1200), {}, 400, "bad_request"),
        (
            "/api/v1/sync/pull/",
            {f"X-Filler-{i}": "x" for i in range(120)},
            431,
            "headers_too_large",
        ),
        ("/api/v1/sync/pull/", {"X-Big": "x" * 9000}, 431, "headers_too_large"),
    ],
)
def test_requests_gunicorn_refuses_itself_get_the_json_error_body(
    server, path, headers, status, code
):
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    assert response.status == status
    assert response.getheader("Content-Type") == "application/json"
    error = json.loads(body)
    assert error["code"] == code and error["detail"]
