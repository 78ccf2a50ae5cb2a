"""The admin's "App versions" page in a real browser: a staff member finds
it from the device list, reads which versions are in the field and who still
has edits to push, and previews what raising Android's minimum would cut off.

The page's numbers are tested through Django's test client in
tests/devices/test_app_versions_admin.py; here it is a person's path through
it, and docs/app-versions.png is taken.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from devices import versions
from devices.models import AppVersionPolicy, Device
from tests.factories import UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.browser,
]

# The README's picture of the page. Taken on every run; written over the
# committed one only with UPDATE_SCREENSHOTS=1 (its ages change with every run).
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "app-versions.png"
PASSWORD = "browser-pass-1234"
PAGE = "/admin/devices/device/versions/"

# (user, device name, platform, app version, last seen hours ago, pending edits,
# oldest pending edit hours ago)
FLEET = [
    ("sam.tech", "Pixel 8 (Sam)", "android", "3.2.0", 0.2, 0, None),
    ("priya.tech", "Pixel 7 (Priya)", "android", "3.2.0", 1, 2, 0.5),
    ("lee.tech", "Galaxy S23 (Lee)", "android", "3.2.0", 5, 0, None),
    ("ana.tech", "Galaxy Tab A8, van 2", "android", "3.1.4", 3, 1, 2),
    ("omar.tech", "Galaxy Tab A8, van 5", "android", "3.1.4", 26, 0, None),
    ("joe.tech", "Moto G (Joe)", "android", "3.0.2", 20, 4, 52),
    ("kim.tech", "Galaxy Tab A7, van 1", "android", "3.0.2", 30, 7, 75),
    ("ravi.tech", "Galaxy XCover 5", "android", "3.0.2", 24 * 45, None, None),
    ("mo.tech", "Galaxy Tab A7, van 3", "android", "2.9.1", 4, 12, 24 * 9),
    ("dana.dispatch", "iPad (dispatch desk)", "ios", "3.2.0", 0.5, 0, None),
    ("eve.ops", "iPhone 15 (Eve)", "ios", "3.2.0", 8, 1, 3),
    ("tom.field", "iPhone 12 (Tom)", "ios", "3.1.0", 50, 3, 49),
    ("dana.dispatch", "Office browser", "web", "", 2, None, None),
]


def seed() -> None:
    now = timezone.now()
    users: dict[str, Any] = {}
    for username, name, platform, version, seen, pending, oldest in FLEET:
        user = users.get(username) or UserFactory(username=username)
        users[username] = user
        Device.objects.create(
            id=uuid.uuid4(),
            user=user,
            name=name,
            platform=platform,
            app_version=version,
            last_seen=now - dt.timedelta(hours=seen),
            outbox_pending=pending,
            outbox_oldest_at=None if oldest is None else now - dt.timedelta(hours=oldest),
        )
    AppVersionPolicy.objects.create(
        platform="android",
        minimum_version="3.0.0",
        deprecated_below="3.1.0",
        sunset_at=(now + dt.timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0),
        upgrade_url="https://play.google.com/store/apps/details?id=test.fieldwork",
    )
    AppVersionPolicy.objects.create(platform="ios", deprecated_below="3.1.0")
    versions._forget()


def log_in(page: Any, username: str) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")


def cells(row: Any) -> list[str]:
    return [re.sub(r"\s+", " ", c).strip() for c in row.locator("th, td").all_inner_texts()]


def version_rows(page: Any, platform: str) -> Any:
    return page.locator(f'#platform-{platform} tr.version-row[data-platform="{platform}"]')


def test_staff_see_versions_in_the_field_and_preview_a_new_minimum(new_page):
    seed()
    get_user_model().objects.create_superuser("boss", password=PASSWORD)
    page = new_page()
    page.set_viewport_size({"width": 1200, "height": 900})
    log_in(page, "boss")

    # Found from the device list.
    page.goto("/admin/devices/device/")
    page.get_by_role("link", name="App versions").click()
    page.wait_for_url(f"**{PAGE}")
    assert page.locator("h1").inner_text() == "App versions"

    android = version_rows(page, "android")
    # Newest version first.
    assert [r.get_attribute("data-version") for r in android.all()] == [
        "3.2.0",
        "3.1.4",
        "3.0.2",
        "2.9.1",
    ]
    sunset = AppVersionPolicy.objects.get(platform="android").sunset_at.strftime("%Y-%m-%d")
    assert cells(android.nth(0)) == [
        "3.2.0",
        "3",
        "12 minutes ago",
        "3",
        "2",
        "1",
        "30 minutes",
        "ok",
    ]
    assert cells(android.nth(1)) == [
        "3.1.4",
        "2",
        "3 hours ago",
        "2",
        "1",
        "1",
        "2 hours",
        "ok",
    ]
    assert cells(android.nth(2)) == [
        "3.0.2",
        "3",
        "20 hours ago",
        "2",
        "11",
        "2",
        "3 days",
        f"deprecated: pulls refused from {sunset}",
    ]
    assert cells(android.nth(3)) == [
        "2.9.1",
        "1",
        "4 hours ago",
        "1",
        "12",
        "1",
        "1 week",
        "below minimum: pulls refused, pushes accepted",
    ]
    total = cells(page.locator('tr.platform-total[data-platform="android"]'))
    assert total == ["All Android", "9", "12 minutes ago", "8", "26", "5", "1 week", ""]
    assert (
        "minimum 3.0.0 · deprecated below 3.1.0, sunset"
        in page.locator("#policy-android").inner_text()
    )
    ios = version_rows(page, "ios")
    assert [cells(r)[:2] + cells(r)[-1:] for r in ios.all()] == [
        ["3.2.0", "2", "ok"],
        ["3.1.0", "1", "ok"],
    ]
    web = version_rows(page, "web")
    assert cells(web.nth(0))[0] == "(not reported)"
    assert cells(web.nth(0))[-1] == "not checked (no version reported)"

    # What raising Android's minimum to 3.1.0 would cut off.
    page.get_by_label("Platform").select_option(label="Android")
    page.get_by_label("Minimum version").fill("3.1.0")
    page.get_by_role("button", name="Preview").click()
    result = page.locator("#cutoff-result")
    result.wait_for()
    summary = re.sub(r"\s+", " ", page.locator("#cutoff-summary").inner_text()).strip()
    assert summary == (
        "4 Android devices are below 3.1.0, 3 of them seen in the last 30 days. "
        "They hold 23 pending pushes on 3 devices; the oldest has waited 1 week."
    )
    assert "Their pushes still drain." in page.locator("#cutoff-note").inner_text()
    assert "1 of them is refused pulls already under the current policy (minimum 3.0.0)" in (
        page.locator("#cutoff-already").inner_text()
    )
    listed = page.locator("tr.cutoff-device")
    assert [cells(r) for r in listed.all()] == [
        ["mo.tech", "Galaxy Tab A7, van 3", "2.9.1", "4 hours ago", "12", "1 week"],
        ["kim.tech", "Galaxy Tab A7, van 1", "3.0.2", "1 day ago", "7", "3 days"],
        ["joe.tech", "Moto G (Joe)", "3.0.2", "20 hours ago", "4", "2 days"],
        ["ravi.tech", "Galaxy XCover 5", "3.0.2", "1 month ago", "—", "—"],
    ]
    # The form kept what was asked.
    assert page.get_by_label("Minimum version").input_value() == "3.1.0"
    assert page.get_by_label("Platform").input_value() == "android"

    # The admin's stylesheets came through, so the picture is the page staff see.
    header = page.evaluate("getComputedStyle(document.getElementById('header')).backgroundColor")
    assert header not in ("", "rgba(0, 0, 0, 0)", "transparent")
    # The navigation sidebar folded away: the tables get the width.
    if page.locator("#nav-sidebar").is_visible():
        page.locator("#toggle-nav-sidebar").click()
    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    shot = page.screenshot(full_page=True)
    assert shot.startswith(b"\x89PNG") and len(shot) > 20_000
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.write_bytes(shot)

    # A version that is not one: told so, nothing counted, the page still there.
    page.get_by_label("Minimum version").fill("latest")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_url("**version=latest*")
    errors = page.locator("#cutoff-form ul.errorlist").inner_text()
    assert "“latest” is not a version: use numbers and dots, such as 2.4.1" in errors
    assert page.locator("#cutoff-result").count() == 0
    assert version_rows(page, "android").count() == 4

    # From the result to the policy, to raise it.
    page.get_by_label("Minimum version").fill("3.1.0")
    page.get_by_role("button", name="Preview").click()
    page.locator("#cutoff-policy-link").click()
    page.wait_for_url("**/admin/devices/appversionpolicy/*/change/")
    assert page.get_by_label("Minimum version").input_value() == "3.0.0"
