"""The web app (webapp/) with several tabs, and woken by Web Push, in Chromium.

- Two tabs of one profile (one device: one IndexedDB database) see each
  other's edits at once (BroadcastChannel, `TabCoordinator.announce`), sync
  one at a time (the coordinator's Web Lock), and end equal to the server.
- A tab closed offline with edits pending: the next tab opened pushes them.
- A push message delivered to the service worker (DevTools protocol:
  `ServiceWorker.deliverPushMessage`, which needs no push subscription) makes
  the open page sync, with the periodic sync off (`?poll=off`); with no page
  open it leaves a mark, and the next page opened syncs at once because of it.

Which tab synced when, and why, is read from `window.webappSyncs`: the app
records each `client.sync()` it runs inside the lock (webapp/src/sync.ts),
and each background trigger it skipped because another tab was syncing. The
network requests the browser made are checked against those records.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from devices.models import Device
from fieldwork.models import Note, WorkOrder
from sync.engine.write import mutations_apply
from sync.notify.wakeups import _sync_message
from tests.browser.conftest import VIEWPORT
from tests.browser.test_webapp import PASSWORD, bar, built_webapp, seed  # noqa: F401  (fixture)
from tests.factories import update

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.browser,
]

SYNC_API = "/api/v1/sync/"


@pytest.fixture
def new_context(browser: Any, live_server: Any, built_webapp: Path) -> Iterator[Callable[[], Any]]:  # noqa: F811
    """Fresh profiles (each its own IndexedDB, service worker and caches)."""
    contexts: list[Any] = []

    def make() -> Any:
        context = browser.new_context(
            base_url=live_server.url, viewport=VIEWPORT, timezone_id="UTC"
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def log_in(page: Any, username: str, path: str = "/app/") -> None:
    page.goto(path)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.locator("#orders li.order").first.wait_for()
    page.locator("#status-bar #pending", has_text="No pending changes").wait_for()


def syncs(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("window.webappSyncs ?? []")


def wait_idle(page: Any) -> None:
    """No sync running in this tab, nothing pending."""
    page.locator("#status-bar #last-sync", has_text="Last sync:").wait_for()
    page.locator("#status-bar #pending", has_text="No pending changes").wait_for()


def another_device_edits(user: Any, order_id: str, **changes: Any) -> dict[str, str]:
    """A change made on the server by another of the user's devices; returns the
    data message the server sends the others for it (sync/notify/wakeups.py)."""
    device = Device.objects.create(id=uuid.uuid4(), user=user, platform="android", name="Phone")
    version = WorkOrder.objects.get(pk=order_id).version
    outcome = mutations_apply(
        user=user,
        mutations=[update("fieldwork.workorder", order_id, version, **changes)],
        device_id=device.pk,
    )
    assert outcome.results[0].status == "applied"
    assert outcome.feed_range is not None
    return _sync_message(outcome.feed_range.last)


def sw_registration(cdp: Any, page: Any, scope: str) -> str:
    """The service worker registration id for `scope`, from `ServiceWorker.enable`'s events."""
    registrations: dict[str, dict[str, Any]] = {}
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: registrations.update(
            {r["registrationId"]: r for r in event["registrations"]}
        ),
    )
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        live = [r for r in registrations.values() if r["scopeURL"] == scope and not r["isDeleted"]]
        if live:
            return str(live[0]["registrationId"])
        page.wait_for_timeout(50)
    raise AssertionError(f"no service worker registration for {scope}: {registrations}")


def until(page: Any, expression: str, timeout: float = 15) -> None:
    """Poll `expression` in the page (wait_for_function compiles its predicate
    with eval, which the app's Content-Security-Policy forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        page.wait_for_timeout(50)


def overlapping(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def workorders_shown(page: Any) -> dict[str, str]:
    """title → status label, from the "All" list."""
    page.goto("/app/?poll=off#/all")
    page.locator("#orders li.order").first.wait_for()
    rows = page.locator("#orders li.order")
    return {
        rows.nth(i).locator(".title").inner_text(): rows.nth(i).locator(".status").inner_text()
        for i in range(rows.count())
    }


LABEL = {"open": "Open", "scheduled": "Scheduled", "in_progress": "In progress", "done": "Done"}


def test_two_tabs_share_edits_sync_one_at_a_time_and_converge(
    new_context: Callable[[], Any],
) -> None:
    user = get_user_model().objects.create_user("tabs", password=PASSWORD)
    ids = seed(user)
    context = new_context()
    a = context.new_page()
    # No periodic sync in these tabs: every sync below has a cause the test knows.
    log_in(a, "tabs", "/app/?poll=off")
    # The second tab of the profile: already logged in (the shared IndexedDB).
    b = context.new_page()
    b.goto("/app/?poll=off")
    boiler_in_b = b.locator("#orders li.order", has_text="Boiler service")
    boiler_in_b.locator(".status", has_text="Scheduled").wait_for()
    wait_idle(b)
    # The app asked once to keep its storage, and says what the browser answered.
    assert bar(a, "storage").inner_text() in {
        "Storage: persisted",
        "Storage: may be cleared by the browser",
    }

    # Every sync API request each tab makes, with the browser's own timing.
    requests: dict[str, list[Any]] = {"a": [], "b": []}
    for name, page in (("a", a), ("b", b)):
        page.on(
            "requestfinished",
            lambda r, n=name: requests[n].append(r) if SYNC_API in r.url else None,
        )

    # --- an edit in A shows in B at once (before any sync: the shared store + announce)
    a.goto(f"/app/?poll=off#/wo/{ids['boiler']}")
    a.locator("#order-title", has_text="Boiler service").wait_for()
    a.locator(".statuses button[data-status=in_progress]").click()
    a.locator("#order-status", has_text="In progress").wait_for()
    boiler_in_b.locator(".status", has_text="In progress").wait_for()
    # … and is pushed (by whichever tab syncs), then both show it synced.
    wait_idle(a)
    wait_idle(b)
    assert WorkOrder.objects.get(pk=ids["boiler"]).status == "in_progress"

    # --- and the other way: a note added in B appears in A, on the page it shows
    b.goto(f"/app/?poll=off#/wo/{ids['boiler']}")
    b.get_by_label("New note").fill("Pressure relief valve weeping.")
    b.get_by_role("button", name="Add note").click()
    a.locator("#notes li", has_text="Pressure relief valve weeping.").wait_for()
    wait_idle(b)
    wait_idle(a)
    assert Note.objects.get(work_order_id=ids["boiler"]).body == "Pressure relief valve weeping."

    # --- both tabs triggered at once, many times: one syncs, the other waits or skips
    # Let the edits' debounced syncs (1.5 s) pass.
    a.wait_for_timeout(2_000)
    # Slow each request down (DevTools network emulation, both tabs) so that
    # the syncs are long enough to collide.
    for page in (a, b):
        context.new_cdp_session(page).send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 250, "downloadThroughput": -1, "uploadThroughput": -1},
        )
    before = {name: len(syncs(page)) for name, page in (("a", a), ("b", b))}
    for _ in range(3):
        # Background triggers (trySync): the second finds the first's lock held and skips.
        a.evaluate("window.dispatchEvent(new Event('online'))")
        b.evaluate("window.dispatchEvent(new Event('online'))")
        a.wait_for_timeout(50)
        wait_idle(a)
        wait_idle(b)
        a.locator("#status-bar #sync-now:not([disabled])").wait_for()
        b.locator("#status-bar #sync-now:not([disabled])").wait_for()
    # "Sync now" in both (sync): both run, one after the other.
    a.locator("#status-bar #sync-now").click()
    b.locator("#status-bar #sync-now").click()
    a.locator("#status-bar #sync-now:not([disabled])").wait_for()
    b.locator("#status-bar #sync-now:not([disabled])").wait_for()
    until(b, "(window.webappSyncs ?? []).some((s) => s.reason === 'button' && s.ran)")
    until(a, "(window.webappSyncs ?? []).some((s) => s.reason === 'button' && s.ran)")
    records = {name: syncs(page)[before[name] :] for name, page in (("a", a), ("b", b))}
    ran = {name: [s for s in rs if s["ran"]] for name, rs in records.items()}
    skipped = [s for rs in records.values() for s in rs if not s["ran"]]
    online_runs = [s for rs in ran.values() for s in rs if s["reason"] == "online"]
    # Each round of simultaneous `online` events: one tab synced, the other skipped.
    assert len(online_runs) == 3, records
    assert len([s for s in skipped if s["reason"] == "online"]) == 3, records
    assert {s["reason"] for s in ran["a"] + ran["b"]} == {"online", "button"}, records
    every = {name: [s for s in syncs(page) if s["ran"]] for name, page in (("a", a), ("b", b))}
    # No sync of A overlapped one of B.
    for x in ran["a"]:
        for y in ran["b"]:
            assert not overlapping(x, y), (x, y)
    # The network agrees: each sync request of a tab was made during one of its own syncs.
    assert requests["a"] and requests["b"]
    for name, made in requests.items():
        for request in made:
            timing = request.timing
            start = timing["startTime"]
            end = start + timing["responseEnd"]
            assert any(s["start"] - 5 <= start and end <= s["end"] + 5 for s in every[name]), (
                name,
                request.url,
                start,
                end,
                every[name],
            )
    for page in (a, b):
        context.new_cdp_session(page).send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )

    # --- both end equal to the server
    expected = {o.title: LABEL[o.status] for o in WorkOrder.objects.all()}
    assert workorders_shown(a) == expected
    assert workorders_shown(b) == expected
    for page in (a, b):
        page.goto(f"/app/?poll=off#/wo/{ids['boiler']}")
        page.locator("#notes li", has_text="Pressure relief valve weeping.").wait_for()
        assert page.locator("#notes li").count() == 1


def test_a_tab_closed_offline_leaves_its_edits_to_the_next_one(
    new_context: Callable[[], Any],
) -> None:
    user = get_user_model().objects.create_user("closer", password=PASSWORD)
    ids = seed(user)
    context = new_context()
    first = context.new_page()
    log_in(first, "closer")
    until(first, "navigator.serviceWorker.controller !== null")

    context.set_offline(True)
    first.locator("#net.offline").wait_for()
    first.goto(f"/app/#/wo/{ids['valve']}")
    first.locator(".statuses button[data-status=done]").click()
    first.locator("#order-status", has_text="Done").wait_for()
    first.get_by_label("New note").fill("Valve replaced, system bled.")
    first.get_by_role("button", name="Add note").click()
    first.locator("#status-bar #pending", has_text="2 pending changes").wait_for()
    first.close()
    assert WorkOrder.objects.get(pk=ids["valve"]).status == "open"
    assert not Note.objects.filter(work_order_id=ids["valve"]).exists()

    # Later, online: a new tab (the same profile) pushes them on start.
    context.set_offline(False)
    second = context.new_page()
    second.goto("/app/")
    second.locator("#orders li.order").first.wait_for()
    wait_idle(second)
    assert WorkOrder.objects.get(pk=ids["valve"]).status == "done"
    assert Note.objects.get(work_order_id=ids["valve"]).body == "Valve replaced, system bled."
    started = [s for s in syncs(second) if s["ran"] and s["pushed"]]
    assert started and started[0]["reason"] == "start" and started[0]["pushed"] == 2


def test_a_web_push_makes_the_app_sync(new_context: Callable[[], Any], live_server: Any) -> None:
    user = get_user_model().objects.create_user("pushy", password=PASSWORD)
    ids = seed(user)
    context = new_context()
    page = context.new_page()
    # No periodic sync: only the push can bring the change.
    log_in(page, "pushy", "/app/?poll=off")
    until(page, "navigator.serviceWorker.controller !== null")
    scope = f"{live_server.url}/app/"
    cdp = context.new_cdp_session(page)
    registration = sw_registration(cdp, page, scope)
    ran_before = len(syncs(page))

    # --- a window is open: the worker tells it, it syncs --------------------------------
    message = another_device_edits(user, ids["boiler"], title="Boiler service (urgent)")
    page.wait_for_timeout(1_000)
    assert page.locator("#orders li.order", has_text="Boiler service (urgent)").count() == 0
    assert len(syncs(page)) == ran_before  # nothing synced by itself
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": live_server.url, "registrationId": registration, "data": json.dumps(message)},
    )
    page.locator("#orders li.order", has_text="Boiler service (urgent)").wait_for()
    new = syncs(page)[ran_before:]
    # Only the push made it sync. (A pull may come before the change is
    # visible, held back behind an older open transaction of the cluster:
    # the app then tries again shortly, still for the push.)
    assert {s["reason"] for s in new} == {"push"}, new
    assert [s["pulled"] for s in new if s["pulled"]] == [1], new

    # --- no window open: the worker leaves a mark; the next page opened syncs at once ----
    blank = context.new_page()  # keeps a DevTools target in this profile (about:blank)
    page.close()
    blank_cdp = context.new_cdp_session(blank)
    registration = sw_registration(blank_cdp, blank, scope)
    message = another_device_edits(user, ids["boiler"], status="in_progress")
    # As FCM's web push wraps a data message: the app reads it all the same.
    wrapped = {"data": message, "from": "1234567890", "priority": "high"}
    blank_cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": live_server.url, "registrationId": registration, "data": json.dumps(wrapped)},
    )
    reopened = context.new_page()
    # Wait for the worker to have handled the push (it leaves the mark in the
    # origin's caches), looking from a page of the origin outside the app.
    reopened.goto("/api/v1/")
    until(reopened, "caches.open('webapp-wake').then((c) => c.keys()).then((k) => k.length === 1)")
    reopened.goto("/app/?poll=off")
    row = reopened.locator("#orders li.order", has_text="Boiler service (urgent)")
    row.locator(".status", has_text="In progress").wait_for()
    first = [s for s in syncs(reopened) if s["ran"]][0]
    assert first["reason"] == "woken"
    # The mark was taken: the next start is an ordinary one.
    assert (
        reopened.evaluate("caches.open('webapp-wake').then((c) => c.keys()).then((k) => k.length)")
        == 0
    )
