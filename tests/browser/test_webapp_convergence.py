"""Browser devices converge: the end-to-end suite's convergence check
(tests/e2e/test_client_convergence.py), for the web app in Chromium.

Three browser profiles are three devices: two of Alice's, one of Bob's; they
share a team's work orders and each has one of its own. In a seeded random
order they go offline and online, change statuses, add notes and rewrite
descriptions through the page (the same fields as each other: merges and
conflicts happen), while the office edits on the server. Every device syncs
only when it edits online or is told to (`?poll=off`), so they drift apart.

At the end every device syncs twice, and its IndexedDB holds exactly a fresh
sync of its user's scope: the objects, versions and data the independent
oracle (tests/oracle.py) computes from the database, nothing more. Every note
a page added was pushed (it is on the server); each device holds the open
conflicts it raised, and no conflict it holds as open is settled on the
server.

`WEBAPP_ROUNDS` (default 6) and `WEBAPP_SEED` size and pick the run.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from fieldwork.models import Note, WorkOrder
from sync.engine.write import mutations_apply
from sync.models import Conflict
from tests.browser.test_webapp import PASSWORD
from tests.browser.test_webapp_tabs_push import (  # noqa: F401  (fixtures)
    built_webapp,
    log_in,
    new_context,
    syncs,
)
from tests.factories import customer, team_of, update, work_order
from tests.oracle import MODELS, server_state

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.browser,
]

ROUNDS = int(os.environ.get("WEBAPP_ROUNDS", "6"))
SEED = int(os.environ.get("WEBAPP_SEED", "2026"))
STATUSES = ["open", "scheduled", "in_progress", "done"]

READ_OBJECTS = """
() => new Promise((resolve, reject) => {
  const opening = indexedDB.open("syncserver");
  opening.onerror = () => reject(opening.error);
  opening.onsuccess = () => {
    const db = opening.result;
    const all = db.transaction("objects").objectStore("objects").getAll();
    all.onerror = () => reject(all.error);
    all.onsuccess = () => { db.close(); resolve(all.result); };
  };
})
"""


READ_CONFLICTS = READ_OBJECTS.replace('"objects"', '"conflicts"')


READ_DEVICE_ID = """
() => new Promise((resolve, reject) => {
  const opening = indexedDB.open("syncserver");
  opening.onerror = () => reject(opening.error);
  opening.onsuccess = () => {
    const db = opening.result;
    const row = db.transaction("meta").objectStore("meta").get("device_id");
    row.onerror = () => reject(row.error);
    row.onsuccess = () => { db.close(); resolve(row.result?.value ?? null); };
  };
})
"""


@dataclass
class BrowserDevice:
    name: str
    user: Any
    page: Any
    online: bool = True
    notes: list[str] = field(default_factory=list)

    def state(self) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
        """What its IndexedDB holds: live server copies of the oracle's models."""
        return {
            (row["model"], row["id"]): (row["version"], row["data"])
            for row in self.page.evaluate(READ_OBJECTS)
            if row["data"] is not None and row["model"] in MODELS
        }

    def device_id(self) -> str:
        device_id = self.page.evaluate(READ_DEVICE_ID)
        assert device_id, self.name
        return str(device_id)

    def go(self, online: bool) -> None:
        self.page.context.set_offline(not online)
        self.page.locator("#net.online" if online else "#net.offline").wait_for()
        self.online = online

    def open_order(self, order_id: str) -> None:
        self.page.evaluate(f"location.hash = '#/wo/{order_id}'")
        self.page.locator(f"#order[data-id='{order_id}'] #order-title").wait_for()

    def settle(self) -> None:
        """Sync now (waiting for any sync already running), then until idle."""
        before = len([s for s in syncs(self.page) if s["ran"]])
        self.page.locator("#sync-now").click()
        deadline = 300  # × 50 ms
        while len([s for s in syncs(self.page) if s["ran"]]) <= before:
            deadline -= 1
            assert deadline > 0, f"{self.name}: no sync ran"
            self.page.wait_for_timeout(50)
        self.page.locator("#status-bar #pending", has_text="No pending changes").wait_for()
        self.page.locator("#status-bar #last-sync", has_text="Last sync:").wait_for()


def seed(alice: Any, bob: Any, team: Any) -> list[str]:
    c = customer("Harbour Bakery", team=str(team.pk))
    shared = [
        work_order(c["id"], f"Shared job {n}", status="open", team=str(team.pk)) for n in range(3)
    ]
    outcome = mutations_apply(user=alice, mutations=[c, *shared], reason="test data")
    assert {r.status for r in outcome.results} == {"applied"}
    for user in (alice, bob):
        own = customer(f"{user.username}'s customer")
        job = work_order(own["id"], f"{user.username}'s own job", status="open")
        mutations_apply(user=user, mutations=[own, job], reason="test data")
    return [m["id"] for m in shared]


def office_edits(user: Any, order_id: str, rng: random.Random) -> None:
    order = WorkOrder.objects.get(pk=order_id)
    change = (
        {"status": rng.choice(STATUSES)}
        if rng.random() < 0.5
        else {"description": f"office {rng.randrange(10**6)}"}
    )
    outcome = mutations_apply(
        user=user, mutations=[update("fieldwork.workorder", order_id, order.version, **change)]
    )
    assert outcome.results[0].status == "applied"


def act(device: BrowserDevice, orders: list[str], rng: random.Random, step: int) -> str:
    """One thing a technician does; returns what, for the failure message."""
    roll = rng.random()
    if roll < 0.2:
        device.go(not device.online)
        return f"{device.name} {'online' if device.online else 'offline'}"
    order = rng.choice(orders)
    device.open_order(order)
    page = device.page
    if page.locator(".flash.error", has_text="conflict to settle").count():
        return f"{device.name} sees a conflict on {order}"
    if roll < 0.5:
        status = rng.choice(page.locator(".statuses button:enabled").all()).get_attribute(
            "data-status"
        )
        page.locator(f".statuses button[data-status={status}]").click()
        return f"{device.name} status {status} on {order}"
    if roll < 0.75:
        text = f"{device.name} note {step}"
        page.get_by_label("New note").fill(text)
        page.get_by_role("button", name="Add note").click()
        page.locator("#notes li", has_text=text).wait_for()
        device.notes.append(text)
        return f"{device.name} note on {order}"
    text = f"{device.name} description {step}"
    page.get_by_label("Description", exact=True).fill(text)
    page.get_by_role("button", name="Save description").click()
    return f"{device.name} description on {order}"


def test_browser_devices_converge_to_a_fresh_sync_of_their_scope(
    new_context: Callable[[], Any],  # noqa: F811
) -> None:
    rng = random.Random(SEED)
    users = get_user_model().objects
    alice = users.create_user("alice", password=PASSWORD)
    bob = users.create_user("bob", password=PASSWORD)
    team = team_of(alice, bob)
    member = {(alice.pk, team.pk): True, (bob.pk, team.pk): True}
    shared = seed(alice, bob, team)

    devices = []
    for name, user in (("alice-laptop", alice), ("alice-tablet", alice), ("bob-laptop", bob)):
        page = new_context().new_page()
        log_in(page, user.username, "/app/?poll=off")
        devices.append(BrowserDevice(name, user, page))

    done: list[str] = []
    for step in range(ROUNDS * len(devices)):
        device = devices[step % len(devices)]
        done.append(act(device, shared, rng, step))
        if rng.random() < 0.25:
            office_edits(alice, rng.choice(shared), rng)
            done.append("office edit")

    for device in devices:
        if not device.online:
            device.go(True)
    for _ in range(2):  # the second round brings each device the others' pushes
        for device in devices:
            device.settle()

    for device in devices:
        expected = server_state(device.user, member)
        assert device.state() == expected, (device.name, done)
    # Nothing a page added was lost on the way.
    on_server = set(Note.objects.values_list("body", flat=True))
    for device in devices:
        assert set(device.notes) <= on_server, (device.name, done)
    # Each device holds the open conflicts its own pushes raised, none
    # dropped on the way; what else it holds as open (raised on the user's
    # other devices: the client adds those when it refreshes its open ones,
    # client/README.md) is open on the server too: nothing stale.
    for device in devices:
        held = device.page.evaluate(READ_CONFLICTS)
        open_here = {c["conflictId"] for c in held if c["status"] == "open"}
        open_for_user = Conflict.objects.filter(user=device.user, status="open")
        raised_here = open_for_user.filter(device_id=device.device_id())
        assert set(map(str, raised_here.values_list("pk", flat=True))) <= open_here, device.name
        assert open_here <= set(map(str, open_for_user.values_list("pk", flat=True))), device.name
