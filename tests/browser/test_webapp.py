"""The technician web app (webapp/, served at /app/) in a real browser.

A technician logs in, sees today's work orders, goes offline, moves one along
and adds a note (2 edits pending), reloads the page while still offline (the
service worker serves the app shell, IndexedDB keeps the outbox), comes back
online and syncs; then edits a description the office changed meanwhile, gets
the conflict in the app and settles it from there. docs/webapp.png is taken.

The app is built (`npm ci` + `npm run build` in webapp/) when webapp/dist is
missing or older than its sources; that needs Node.js and npm.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from fieldwork.models import Note, WorkOrder
from sync.engine.write import mutations_apply
from sync.models import Conflict
from tests.browser.conftest import VIEWPORT
from tests.factories import customer, update, work_order

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.browser,
]

ROOT = Path(__file__).resolve().parents[2]
WEBAPP = ROOT / "webapp"
DIST = WEBAPP / "dist"
# The README's picture of the app. Taken on every run; written over the
# committed one only with UPDATE_SCREENSHOTS=1.
DOCS_SCREENSHOT = ROOT / "docs" / "webapp.png"
PASSWORD = "tech-pass-1234"
SOURCES = ("src", "sw.ts", "build.mjs", "index.html", "app.css", "manifest.webmanifest", "icon.svg")
CLIENT_SOURCES = ROOT / "clients" / "typescript" / "src"


def _newest_source() -> float:
    paths = [WEBAPP / name for name in SOURCES] + [CLIENT_SOURCES]
    files = [p for base in paths for p in ([base] if base.is_file() else base.rglob("*.ts"))]
    return max(p.stat().st_mtime for p in files)


@pytest.fixture(scope="module")
def built_webapp() -> Path:
    """webapp/dist, built if missing or older than its sources."""
    stamp = DIST / "BUILD"
    if stamp.is_file() and stamp.stat().st_mtime >= _newest_source():
        return DIST
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("webapp/dist is missing or stale and npm is not installed to build it")
    if not (WEBAPP / "node_modules" / ".bin" / "esbuild").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEBAPP, check=True)  # noqa: S603
    subprocess.run([npm, "run", "build"], cwd=WEBAPP, check=True)  # noqa: S603
    return DIST


@pytest.fixture
def app_page(browser: Any, live_server: Any, built_webapp: Path) -> Iterator[Any]:
    """A fresh profile (its own IndexedDB, service worker and caches), on UTC like the server."""
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT, timezone_id="UTC")
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def seed(user: Any) -> dict[str, str]:
    today = timezone.now().date()
    c = customer("Elm Street Dental", phone="+44 20 7946 0301", address="14 Elm Street")
    boiler = work_order(
        c["id"],
        "Boiler service",
        status="scheduled",
        scheduled_for=today.isoformat(),
        description="Annual service; low pressure in the mornings.",
        estimated_hours=2.0,
    )
    valve = work_order(c["id"], "Replace radiator valve", status="open")
    next_week = str(today + dt.timedelta(days=7))
    later = work_order(c["id"], "Gas safety check", status="scheduled", scheduled_for=next_week)
    outcome = mutations_apply(user=user, mutations=[c, boiler, valve, later], reason="test data")
    assert {r.status for r in outcome.results} == {"applied"}
    return {"boiler": boiler["id"], "valve": valve["id"], "later": later["id"]}


def office_edits(user: Any, order_id: str, **changes: Any) -> None:
    """Someone else (the office, another device) changes the work order on the server."""
    version = WorkOrder.objects.get(pk=order_id).version
    outcome = mutations_apply(
        user=user, mutations=[update("fieldwork.workorder", order_id, version, **changes)]
    )
    assert outcome.results[0].status == "applied"


def bar(page: Any, part: str) -> Any:
    return page.locator(f"#status-bar #{part}")


def test_technician_works_offline_syncs_and_settles_a_conflict(app_page: Any) -> None:
    page = app_page
    user = get_user_model().objects.create_user("tess", password=PASSWORD)
    ids = seed(user)

    # --- log in; today's work orders -------------------------------------------------
    page.goto("/app/")
    page.get_by_label("Username").fill("tess")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    orders = page.locator("#orders li.order")
    boiler_row = orders.filter(has_text="Boiler service")
    boiler_row.wait_for()
    assert "Elm Street Dental" in boiler_row.inner_text()
    assert "Scheduled" in boiler_row.inner_text()
    # Today: scheduled for today, and open ones without a date; not next week's.
    assert sorted(orders.locator(".title").all_inner_texts()) == [
        "Boiler service",
        "Replace radiator valve",
    ]
    page.get_by_role("link", name="All", exact=True).click()
    page.locator("#orders li.order", has_text="Gas safety check").wait_for()
    page.get_by_role("link", name="Today", exact=True).click()
    assert bar(page, "net").inner_text() == "Online"
    assert bar(page, "pending").inner_text() == "No pending changes"
    assert "Last sync:" in bar(page, "last-sync").inner_text()
    assert "never" not in bar(page, "last-sync").inner_text()
    # The app asked once to keep its storage (requestPersistence) and says the answer.
    bar(page, "storage").wait_for()
    assert bar(page, "storage").inner_text() in {
        "Storage: persisted",
        "Storage: may be cleared by the browser",
    }
    # The service worker took the page over (it claims it once the shell is cached).
    page.wait_for_function("navigator.serviceWorker.controller !== null")

    # --- offline: move it along, add a note ---------------------------------------------
    page.context.set_offline(True)
    page.locator("#net.offline").wait_for()
    orders.filter(has_text="Boiler service").locator("a").click()
    page.locator("#order-title", has_text="Boiler service").wait_for()
    assert page.locator("#order-customer").inner_text() == "Elm Street Dental"
    page.locator(".statuses button[data-status=in_progress]").click()
    page.locator("#order-status", has_text="In progress").wait_for()
    page.get_by_label("New note").fill("Expansion vessel flat; recharged to 1.5 bar.")
    page.get_by_role("button", name="Add note").click()
    page.locator("#notes li", has_text="Expansion vessel flat").wait_for()
    page.locator("#status-bar #pending", has_text="2 pending changes").wait_for()
    assert WorkOrder.objects.get(pk=ids["boiler"]).status == "scheduled"  # nothing left the page

    # --- reload while offline: the shell from the service worker, the outbox from IndexedDB
    # The app keeps its data in IndexedDB (webapp/src/storage.ts), not in memory.
    assert page.evaluate("document.documentElement.dataset.storage") == "indexeddb"
    response = page.reload()
    assert response is not None and response.from_service_worker
    page.locator("#order-status", has_text="In progress").wait_for()
    page.locator("#status-bar #pending", has_text="2 pending changes").wait_for()
    assert bar(page, "net").inner_text() == "Offline"

    # --- back online: it syncs by itself ----------------------------------------------------
    page.context.set_offline(False)
    page.locator("#status-bar #pending", has_text="No pending changes").wait_for()
    page.locator("#net.online").wait_for()
    boiler = WorkOrder.objects.get(pk=ids["boiler"])
    assert boiler.status == "in_progress"
    note = Note.objects.get(work_order=boiler)
    assert note.body == "Expansion vessel flat; recharged to 1.5 bar."
    assert note.owner == user

    # --- a conflict: the office rewrites the description while the page, offline, does too
    page.context.set_offline(True)
    page.locator("#net.offline").wait_for()
    office_edits(user, ids["boiler"], description="Customer asks to call before coming.")
    mine = "Vessel recharged; replace it next visit (12 L)."
    description = page.get_by_label("Description", exact=True)
    description.fill(mine)
    page.get_by_role("button", name="Save description").click()
    page.locator("#status-bar #pending", has_text="1 pending change").wait_for()
    page.context.set_offline(False)
    page.locator("#status-bar #conflict-count", has_text="1 conflict").wait_for()
    page.locator("#status-bar #pending", has_text="No pending changes").wait_for()
    conflict = Conflict.objects.get(object_id=ids["boiler"], status="open")

    page.locator("#status-bar #conflict-count").click()
    card = page.locator(f"article.conflict[data-conflict='{conflict.pk}']")
    card.wait_for()
    assert "Boiler service" in card.locator("h3").inner_text()
    row = card.locator("tr[data-field=description]")
    assert row.locator("td.server").inner_text() == "Customer asks to call before coming."
    assert row.locator("td.client").inner_text() == mine
    assert card.locator("tbody tr").count() == 1  # only the field at stake

    page.evaluate("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    shot = page.screenshot(full_page=True)
    assert shot.startswith(b"\x89PNG") and len(shot) > 10_000
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.write_bytes(shot)

    card.get_by_role("button", name="Keep mine").click()
    page.locator("#flash", has_text="Kept your version.").wait_for()
    page.locator("#conflicts .empty", has_text="No open conflicts.").wait_for()
    assert page.locator("#status-bar #conflict-count").count() == 0
    conflict.refresh_from_db()
    assert conflict.status == "resolved"
    boiler = WorkOrder.objects.get(pk=ids["boiler"])
    assert boiler.description == mine
    assert boiler.status == "in_progress"
    assert conflict.resolved_version == boiler.version

    # The work order shows the settled text.
    page.goto(f"/app/#/wo/{ids['boiler']}")
    page.locator("#order-title", has_text="Boiler service").wait_for()
    assert page.get_by_label("Description", exact=True).input_value() == boiler.description

    # "Sync now" brings the office's next change at once.
    office_edits(user, ids["boiler"], title="Boiler service and vessel")
    page.locator("#status-bar #sync-now").click()
    page.locator("#order-title", has_text="Boiler service and vessel").wait_for()


def test_the_app_shell_is_served_with_its_content_types(client: Any, built_webapp: Path) -> None:
    expected = {
        "/app/": "text/html",
        "/app/app.js": "text/javascript",
        "/app/app.css": "text/css",
        "/app/sw.js": "text/javascript",
        "/app/manifest.webmanifest": "application/manifest+json",
        "/app/icon.svg": "image/svg+xml",
    }
    for url, content_type in expected.items():
        response = client.get(url, secure=True)
        assert response.status_code == 200, url
        assert response["Content-Type"].startswith(content_type), url
        assert response["Cache-Control"] == "no-cache"
    assert client.get("/app/sw.js", secure=True)["Service-Worker-Allowed"] == "/app/"
    assert client.get("/app/..%2Fpackage.json", secure=True).status_code == 404
    assert client.get("/app/BUILD", secure=True).status_code == 404
    assert client.get(f"/app/{uuid.uuid4()}.js", secure=True).status_code == 404
