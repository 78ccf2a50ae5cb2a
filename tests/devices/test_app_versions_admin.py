"""The admin's app version pages (sync/admin/versions.py), through Django's
test client: the policy's form, the "App versions" page's numbers by platform
and version, and its "what would raising the minimum cut off?" preview.

The same page is driven in Chromium in tests/browser/test_app_versions_admin.py.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from devices import versions
from devices.models import AppVersionPolicy, Device
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PAGE = "/admin/devices/device/versions/"
POLICIES = "/admin/devices/appversionpolicy/"


def session(user: Any) -> Client:
    client = Client(HTTP_X_FORWARDED_PROTO="https")
    client.force_login(user)
    return client


@pytest.fixture
def staff() -> Client:
    return session(get_user_model().objects.create_superuser("ops", password="ops-pass-1234"))


@pytest.fixture(autouse=True)
def _policies_read_afresh() -> None:
    # devices.versions keeps each process's policies for a few seconds; a
    # test's policies are gone at its end, but not from that copy.
    versions._forget()


def device(
    platform: str,
    app_version: str,
    *,
    user: Any = None,
    name: str = "",
    seen_days_ago: float | None = 1,
    pending: int | None = None,
    oldest_hours_ago: float | None = None,
) -> Device:
    now = timezone.now()
    return Device.objects.create(
        id=uuid.uuid4(),
        user=user or UserFactory(),
        platform=platform,
        name=name,
        app_version=app_version,
        last_seen=None if seen_days_ago is None else now - dt.timedelta(days=seen_days_ago),
        outbox_pending=pending,
        outbox_oldest_at=(
            None if oldest_hours_ago is None else now - dt.timedelta(hours=oldest_hours_ago)
        ),
    )


@pytest.fixture
def fleet() -> dict[str, Device]:
    """Android at four versions (one not reported), iOS at one; Android's
    policy: minimum 2.9.5, deprecated below 2.10.0 with a sunset to come."""
    AppVersionPolicy.objects.create(
        platform="android",
        minimum_version="2.9.5",
        deprecated_below="2.10.0",
        sunset_at=timezone.now() + dt.timedelta(days=60),
        upgrade_url="https://play.example.test/app",
    )
    return {
        "new-busy": device("android", "2.10.0", pending=3, oldest_hours_ago=2, seen_days_ago=0.1),
        "new-idle": device("android", "2.10.0", pending=0, seen_days_ago=40),
        "deprecated": device("android", "2.9.8", pending=2, oldest_hours_ago=30),
        "old-a": device("android", "2.9.1", name="Van tablet", pending=5, oldest_hours_ago=72),
        "old-b": device("android", "2.9.1", pending=None, seen_days_ago=60),
        "old-c": device("android", "2.9.1", pending=1, oldest_hours_ago=1, seen_days_ago=3),
        "silent": device("android", "", seen_days_ago=None),
        "ios": device("ios", "3.0", pending=4, oldest_hours_ago=5),
    }


def groups_of(response: Any, platform: str) -> list[Any]:
    [view] = [v for v in response.context["platforms"] if v.platform == platform]
    return view.groups


def row(html: str, platform: str, version: str) -> str:
    match = re.search(
        rf'<tr class="version-row" data-platform="{platform}" data-version="{re.escape(version)}">'
        r".*?</tr>",
        html,
        re.S,
    )
    assert match, f"no row for {platform} {version!r}"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(0))).strip()


# --- the page's table ----------------------------------------------------------------


def test_devices_are_grouped_by_platform_and_version_newest_first(staff, fleet):
    response = staff.get(PAGE)
    assert response.status_code == 200
    android = groups_of(response, "android")
    # By version, not by text: 2.10.0 is newer than 2.9.8.
    assert [g.app_version for g in android] == ["2.10.0", "2.9.8", "2.9.1", ""]
    numbers = {
        g.app_version: (g.devices, g.recent, g.pending, g.with_pending, g.reporting)
        for g in android
    }
    assert numbers == {
        "2.10.0": (2, 1, 3, 1, 2),
        "2.9.8": (1, 1, 2, 1, 1),
        "2.9.1": (3, 2, 6, 2, 2),
        "": (1, 0, 0, 0, 0),
    }
    by_version = {g.app_version: g for g in android}
    # The oldest pending edit of the group, the newest sighting.
    assert by_version["2.9.1"].oldest_pending_at == fleet["old-a"].outbox_oldest_at
    assert by_version["2.9.1"].last_seen == fleet["old-a"].last_seen
    assert by_version["2.10.0"].oldest_pending_at == fleet["new-busy"].outbox_oldest_at
    assert by_version[""].last_seen is None and by_version[""].oldest_pending_at is None
    assert [(g.app_version, g.devices, g.pending) for g in groups_of(response, "ios")] == [
        ("3.0", 1, 4)
    ]

    html = response.content.decode()
    assert row(html, "android", "2.9.1") == (
        "2.9.1 3 1 day ago 2 6 2 3 days below minimum: pulls refused, pushes accepted"
    )
    assert row(html, "android", "2.10.0") == "2.10.0 2 2 hours ago 1 3 1 2 hours ok"
    sunset = AppVersionPolicy.objects.get().sunset_at.strftime("%Y-%m-%d")
    assert row(html, "android", "2.9.8") == (
        f"2.9.8 1 1 day ago 1 2 1 1 day deprecated: pulls refused from {sunset}"
    )
    assert row(html, "android", "") == (
        "(not reported) 1 never 0 — 0 — not checked (no version reported)"
    )
    assert row(html, "ios", "3.0") == "3.0 1 1 day ago 1 4 1 5 hours ok"
    # The platform's policy and its totals.
    assert "minimum <strong>2.9.5</strong>" in html
    assert "deprecated below <strong>2.10.0</strong>" in html
    total = re.search(r'<tr class="platform-total" data-platform="android">.*?</tr>', html, re.S)
    assert total is not None
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", total.group(0))).strip()
    assert cells == "All Android 7 2 hours ago 4 11 4 3 days"


def test_the_state_shown_is_what_the_server_answers_that_version(staff, fleet):
    response = staff.get(PAGE)
    for group in groups_of(response, "android"):
        found = versions.verdict("android", group.app_version)
        assert (group.state == "refused") == found.upgrade_required, group.app_version
        assert (group.state == "deprecated") == (
            found.deprecated_at is not None and not found.upgrade_required
        ), group.app_version


def test_after_the_sunset_deprecated_versions_are_shown_refused(staff, fleet):
    AppVersionPolicy.objects.filter(platform="android").update(
        sunset_at=timezone.now() - dt.timedelta(hours=1)
    )
    states = {g.app_version: g.state for g in groups_of(staff.get(PAGE), "android")}
    assert states == {"2.10.0": "ok", "2.9.8": "refused", "2.9.1": "refused", "": "unknown"}


def test_a_group_links_to_its_devices(staff, fleet):
    html = staff.get(PAGE).content.decode()
    link = "/admin/devices/device/?platform__exact=android&amp;app_version=2.9.1"
    assert f'<a href="{link}">3</a>' in html
    listed = staff.get("/admin/devices/device/", {"platform__exact": "android", "app_version": ""})
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 1


def test_the_page_is_linked_from_the_device_and_policy_lists(staff, fleet):
    devices = staff.get("/admin/devices/device/").content.decode()
    assert f'href="{PAGE}" id="app-versions-link"' in devices
    # The device list shows each device's pending pushes.
    assert '<td class="field-outbox_pending">5</td>' in devices
    policies = staff.get(POLICIES).content.decode()
    assert f'href="{PAGE}" id="app-versions-link"' in policies


def test_the_device_page_shows_what_the_app_reported(staff, fleet):
    phone = fleet["old-a"]
    Device.objects.filter(pk=phone.pk).update(schema_versions={"fieldwork.equipment": 2})
    html = staff.get(f"/admin/devices/device/{phone.pk}/change/").content.decode()
    assert "fieldwork.equipment" in html
    assert 'name="schema_versions"' not in html  # shown, not editable
    assert 'name="outbox_pending"' not in html
    assert 'name="outbox_oldest_at' not in html
    assert "Edits waiting to be pushed, as the app last reported." in html


def test_no_devices_and_no_policies(staff):
    response = staff.get(PAGE)
    assert response.status_code == 200
    assert response.context["platforms"] == []
    assert 'id="no-devices"' in response.content.decode()


# --- the cut-off preview ---------------------------------------------------------------


def test_raising_the_minimum_preview_counts_and_lists_the_devices_below(staff, fleet):
    response = staff.get(PAGE, {"platform": "android", "version": "2.10.0"})
    assert response.status_code == 200
    cut = response.context["cutoff"]
    # 2.9.8 and 2.9.1; not 2.10.0 itself, not the device that reported no version, not iOS.
    assert (cut.devices, cut.recent, cut.pending, cut.with_pending) == (4, 3, 8, 3)
    assert cut.refused_now == 3  # 2.9.1 is below today's minimum already
    assert cut.oldest_pending_at == fleet["old-a"].outbox_oldest_at
    # Most pending first; a device that did not report its outbox last.
    assert [item["device"].pk for item in cut.listed] == [
        fleet["old-a"].pk,
        fleet["deprecated"].pk,
        fleet["old-c"].pk,
        fleet["old-b"].pk,
    ]
    assert cut.more == 0

    html = response.content.decode()
    summary = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html.split('id="cutoff-summary">')[1]))
    summary = summary.strip()
    assert summary.startswith(
        "4 Android devices are below 2.10.0, 3 of them seen in the last 30 days. "
        "They hold 8 pending pushes on 3 devices; the oldest has waited 3 days."
    )
    assert "Their pushes still drain." in html
    assert "3 of them are refused pulls already under the current policy (minimum 2.9.5)" in html
    assert html.count('class="cutoff-device"') == 4
    first = re.search(r'<tr class="cutoff-device".*?</tr>', html, re.S)
    assert first is not None
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", first.group(0))).strip()
    assert cells == f"{fleet['old-a'].user.username} Van tablet 2.9.1 1 day ago 5 3 days"
    assert f'href="/admin/devices/device/{fleet["old-a"].pk}/change/"' in html
    # The form keeps what was typed.
    assert 'value="2.10.0"' in html


def test_a_minimum_nobody_is_below_cuts_nobody_off(staff, fleet):
    response = staff.get(PAGE, {"platform": "ios", "version": "2.0"})
    cut = response.context["cutoff"]
    assert (cut.devices, cut.pending, cut.listed) == (0, 0, [])
    html = response.content.decode()
    assert "No iOS device is below 2.0: a minimum of 2.0 cuts nobody off." in html
    # A platform without devices (or a policy) at all.
    response = staff.get(PAGE, {"platform": "web", "version": "1.0.0"})
    assert response.status_code == 200
    assert response.context["cutoff"].devices == 0


def test_the_preview_lists_fifty_devices_and_counts_them_all(staff):
    user = UserFactory()
    now = timezone.now()
    Device.objects.bulk_create(
        Device(
            id=uuid.uuid4(),
            user=user,
            platform="ios",
            app_version=f"1.{i % 3}.0",
            # Half an hour inside each day: 0 to 30 days ago are the last 30 days.
            last_seen=now - dt.timedelta(days=i) + dt.timedelta(minutes=30 if i else 0),
            outbox_pending=i,
            outbox_oldest_at=now - dt.timedelta(hours=1) if i else None,
        )
        for i in range(60)
    )
    device("ios", "2.0.0", user=user, pending=9, oldest_hours_ago=1)
    response = staff.get(PAGE, {"platform": "ios", "version": "2.0.0"})
    cut = response.context["cutoff"]
    assert (cut.devices, cut.recent, cut.pending, cut.with_pending) == (60, 31, sum(range(60)), 59)
    assert len(cut.listed) == 50 and cut.more == 10
    assert [item["device"].outbox_pending for item in cut.listed] == list(range(59, 9, -1))
    assert "… and 10 more" in response.content.decode()


@pytest.mark.parametrize("typed", ["latest", "2..1", "v2.1", "1" * 60, "2.0\x00", " "])
def test_a_bad_version_is_refused_with_a_message(staff, fleet, typed):
    response = staff.get(PAGE, {"platform": "android", "version": typed})
    assert response.status_code == 200
    assert response.context["cutoff"] is None
    html = response.content.decode()
    assert 'id="cutoff-result"' not in html
    errors = response.context["form"].errors["version"]
    assert errors
    if typed.strip() and "\x00" not in typed and len(typed) <= 50:
        assert errors == [versions_message(typed)]
        assert "is not a version: use numbers and dots, such as 2.4.1" in html
    # The table is still there.
    assert 'data-version="2.9.1"' in html


def versions_message(typed: str) -> str:
    return (
        f"“{typed}” is not a version: use numbers and dots, such as 2.4.1 "
        "(an optional -suffix or +build is ignored)."
    )


@pytest.mark.parametrize("platform", ["windows", "\x00", ""])
def test_an_unknown_platform_is_refused_with_a_message(staff, fleet, platform):
    response = staff.get(PAGE, {"platform": platform, "version": "2.0.0"})
    assert response.status_code == 200
    assert response.context["cutoff"] is None
    assert response.context["form"].errors["platform"]


# --- who may see it ------------------------------------------------------------------


def test_only_staff_who_may_view_devices_see_the_page(fleet):
    users = get_user_model().objects
    anonymous = Client(HTTP_X_FORWARDED_PROTO="https")
    response = anonymous.get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")

    # Not staff: to the admin's login, as for every admin page.
    member = users.create_user("member", password="member-pass-1234")
    response = session(member).get(PAGE, {"platform": "android", "version": "3.0"})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")

    # Staff without the permission to view devices.
    clerk = users.create_user("clerk", password="clerk-pass-1234", is_staff=True)
    assert session(clerk).get(PAGE).status_code == 403

    # Staff who may view devices see it, without the links to edit policies.
    looker = users.create_user("looker", password="looker-pass-1234", is_staff=True)
    looker.user_permissions.add(Permission.objects.get(codename="view_device"))
    response = session(looker).get(PAGE, {"platform": "android", "version": "2.10.0"})
    assert response.status_code == 200
    assert response.context["cutoff"].devices == 4
    html = response.content.decode()
    assert "Edit policy" not in html and "Set a policy" not in html
    assert 'id="cutoff-policy-link"' not in html


def test_staff_who_may_edit_policies_get_links_to_them(staff, fleet):
    html = staff.get(PAGE, {"platform": "android", "version": "2.10.0"}).content.decode()
    policy = AppVersionPolicy.objects.get()
    assert f'href="{POLICIES}{policy.pk}/change/">Edit policy</a>' in html
    assert f'href="{POLICIES}add/?platform=ios">Set a policy</a>' in html
    assert 'id="cutoff-policy-link"' in html


# --- the policy's form -----------------------------------------------------------------


def policy_form(**values: str) -> dict[str, str]:
    return {
        "platform": "android",
        "minimum_version": "",
        "deprecated_below": "",
        "sunset_at_0": "",
        "sunset_at_1": "",
        "upgrade_url": "",
        **values,
    }


def test_the_policy_form_shows_its_help(staff):
    html = staff.get(f"{POLICIES}add/").content.decode()
    assert "Below it, pulls are refused (426) and pushes still accepted. Blank: none." in html
    assert "Below it, responses warn (Deprecation / Sunset headers). Blank: none." in html
    assert "When versions below 'deprecated below' stop pulling" in html
    assert "pushes are still accepted, so that edits made offline reach the server" in html
    assert f'<a href="{PAGE}">App versions</a>' in html


def test_a_valid_policy_is_saved(staff):
    response = staff.post(
        f"{POLICIES}add/",
        policy_form(
            minimum_version=" 2.4.0 ",
            deprecated_below="2.6.0-rc.1",
            sunset_at_0="2027-01-01",
            sunset_at_1="00:00:00",
            upgrade_url="https://play.example.test/app",
        ),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = AppVersionPolicy.objects.get()
    assert (policy.platform, policy.minimum_version, policy.deprecated_below) == (
        "android",
        "2.4.0",
        "2.6.0-rc.1",
    )
    assert policy.deprecated_at is not None
    listed = staff.get(POLICIES).content.decode()
    for shown in ("2.4.0", "2.6.0-rc.1", "https://play.example.test/app"):
        assert shown in listed


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"minimum_version": "two"}, "minimum_version", versions_message("two")),
        ({"deprecated_below": "2.x"}, "deprecated_below", versions_message("2.x")),
        (
            {"minimum_version": "2.4.0", "deprecated_below": "2.3.9"},
            "deprecated_below",
            "Deprecated below (2.3.9) is lower than the minimum version (2.4.0): versions "
            "below the minimum are refused already. Set it to 2.4.0 or higher, or leave it "
            "blank.",
        ),
        (
            # Compared as versions, not as text ("2.10" < "2.9" as text).
            {"minimum_version": "2.10", "deprecated_below": "2.9"},
            "deprecated_below",
            "Deprecated below (2.9) is lower than the minimum version (2.10): versions "
            "below the minimum are refused already. Set it to 2.10 or higher, or leave it "
            "blank.",
        ),
        (
            {"sunset_at_0": "2027-01-01", "sunset_at_1": "00:00:00"},
            "sunset_at",
            "A sunset applies to the versions below 'deprecated below': set that too, or "
            "leave the sunset blank.",
        ),
    ],
)
def test_the_policy_form_refuses_what_cannot_be_a_policy(staff, values, field, message):
    response = staff.post(f"{POLICIES}add/", policy_form(**values))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors[field] == [message]
    assert not AppVersionPolicy.objects.exists()


def test_deprecated_below_may_equal_or_exceed_the_minimum(staff):
    for deprecated in ("2.4.0", "2.10"):
        AppVersionPolicy.objects.all().delete()
        response = staff.post(
            f"{POLICIES}add/", policy_form(minimum_version="2.4", deprecated_below=deprecated)
        )
        assert response.status_code == 302, deprecated


def test_an_edited_policy_keeps_its_platform(staff):
    policy = AppVersionPolicy.objects.create(platform="ios", minimum_version="1.0")
    url = f"{POLICIES}{policy.pk}/change/"
    response = staff.post(url, policy_form(platform="android", minimum_version="1.2"))
    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.platform, policy.minimum_version) == ("ios", "1.2")
    response = staff.post(url, policy_form(minimum_version="1.2 beta"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["minimum_version"] == [
        versions_message("1.2 beta")
    ]
