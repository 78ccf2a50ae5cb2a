"""App versions in the admin: each platform's policy (docs/protocol.md, "Too
old: drain first, then stop"), and the "App versions" page, where staff see
which versions are in the field, who still has edits to push, and what
raising a platform's minimum would cut off.

The page is `DeviceAdmin`'s (`admin/devices/device/versions/`): staff who may
view devices may see it. Its numbers are counted by the database, one group
per platform and app version; only the order of the groups (newest version
first) is Python's, since a version's order is not its text's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, F, Max, Min, Q, QuerySet, Sum
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.timesince import timesince

from devices.models import AppVersionPolicy, Device
from devices.versions import below, version_key
from sync.admin.guards import GuardedAdmin

# "Seen lately": a device not seen for longer is likely uninstalled or lost.
RECENT = dt.timedelta(days=30)
# Devices listed under the cut-off preview (the counts cover all of them).
CUTOFF_LISTED = 50
NOT_REPORTED = "(not reported)"


def not_a_version(value: str) -> str:
    return (
        f"“{value}” is not a version: use numbers and dots, such as 2.4.1 "
        "(an optional -suffix or +build is ignored)."
    )


def parse_version(value: str) -> str:
    """`value` stripped, if it is a version; else a ValidationError saying so."""
    value = value.strip()
    if version_key(value) is None:
        raise forms.ValidationError(not_a_version(value), code="not_a_version")
    return value


def age(when: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """`3 days`, `2 hours`: the largest unit only."""
    if when is None:
        return ""
    return timesince(when, now).split(",")[0]


# --- the policy ------------------------------------------------------------------------


POLICY_FIELDS = ("platform", "minimum_version", "deprecated_below", "sunset_at", "upgrade_url")


def policy_formfield(db_field: Any, **kwargs: Any) -> Any:
    if db_field.name == "upgrade_url":
        kwargs["assume_scheme"] = "https"  # an app store's page
    return db_field.formfield(**kwargs)


class AppVersionPolicyForm(forms.ModelForm):
    class Meta:
        model = AppVersionPolicy
        fields = POLICY_FIELDS
        formfield_callback = policy_formfield

    def clean_minimum_version(self) -> str:
        value = self.cleaned_data.get("minimum_version", "").strip()
        return parse_version(value) if value else ""

    def clean_deprecated_below(self) -> str:
        value = self.cleaned_data.get("deprecated_below", "").strip()
        return parse_version(value) if value else ""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        minimum, deprecated = data.get("minimum_version"), data.get("deprecated_below")
        if minimum and deprecated and below(deprecated, minimum):
            self.add_error(
                "deprecated_below",
                f"Deprecated below ({deprecated}) is lower than the minimum version "
                f"({minimum}): versions below the minimum are refused already. Set it to "
                f"{minimum} or higher, or leave it blank.",
            )
        if data.get("sunset_at") and not deprecated and "deprecated_below" not in self.errors:
            self.add_error(
                "sunset_at",
                "A sunset applies to the versions below 'deprecated below': set that too, "
                "or leave the sunset blank.",
            )
        return data


@admin.register(AppVersionPolicy)
class AppVersionPolicyAdmin(GuardedAdmin):
    form = AppVersionPolicyForm
    list_display = (
        "platform",
        "minimum_version",
        "deprecated_below",
        "sunset_at",
        "upgrade_url",
        "updated_at",
    )
    readonly_fields = ("deprecated_at", "updated_at")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        page = reverse("admin:devices_device_versions")
        description = format_html(
            "Below the minimum, an app's pulls are refused (426 upgrade required) while its "
            "pushes are still accepted, so that edits made offline reach the server before its "
            "user upgrades. Raise a minimum in two steps: first <em>deprecated below</em> with a "
            "sunset (apps warn their users), then the minimum. "
            '<a href="{}">App versions</a> shows which versions are in the field and what '
            "raising the minimum would cut off.",
            page,
        )
        return [
            (
                None,
                {
                    "description": description,
                    "fields": (*POLICY_FIELDS, *(self.readonly_fields if obj else ())),
                },
            )
        ]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "upgrade_url":
            kwargs["assume_scheme"] = "https"  # an app store's page
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # One policy per platform: a policy does not move to another one.
        return (*self.readonly_fields, "platform") if obj is not None else self.readonly_fields

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        return super().changelist_view(
            request,
            {**(extra_context or {}), "versions_url": reverse("admin:devices_device_versions")},
        )


# --- the App versions page --------------------------------------------------------------


@dataclass
class VersionGroup:
    """The devices of one platform at one app version."""

    platform: str
    app_version: str
    devices: int
    recent: int
    last_seen: dt.datetime | None
    reporting: int  # devices that said how many edits they hold
    pending: int
    with_pending: int
    oldest_pending_at: dt.datetime | None
    state: str = "ok"
    state_text: str = ""
    devices_url: str = ""
    last_seen_age: str = ""
    oldest_age: str = ""

    @property
    def key(self) -> tuple[int, ...] | None:
        return version_key(self.app_version) if self.app_version else None

    @property
    def label(self) -> str:
        return self.app_version or NOT_REPORTED


@dataclass
class PlatformView:
    platform: str
    name: str
    policy: AppVersionPolicy | None
    groups: list[VersionGroup] = field(default_factory=list)
    policy_url: str = ""
    last_seen_age: str = ""
    oldest_age: str = ""

    def total(self, name: str) -> int:
        return sum(getattr(group, name) for group in self.groups)

    @property
    def devices(self) -> int:
        return self.total("devices")

    @property
    def recent(self) -> int:
        return self.total("recent")

    @property
    def pending(self) -> int:
        return self.total("pending")

    @property
    def with_pending(self) -> int:
        return self.total("with_pending")

    @property
    def reporting(self) -> int:
        return self.total("reporting")

    @property
    def last_seen(self) -> dt.datetime | None:
        return max((g.last_seen for g in self.groups if g.last_seen), default=None)

    @property
    def oldest_pending_at(self) -> dt.datetime | None:
        return min((g.oldest_pending_at for g in self.groups if g.oldest_pending_at), default=None)


def state_of(
    policy: AppVersionPolicy | None, app_version: str, now: dt.datetime
) -> tuple[str, str]:
    """The policy's word on a version, as `devices.versions.verdict` gives it
    to the app (read here from the policy this page shows, not that function's
    per-process copy of it, which may be seconds old): (css class, words)."""
    if not app_version:
        return "unknown", "not checked (no version reported)"
    if version_key(app_version) is None:
        return "unknown", "not checked (not a version)"
    if policy is None:
        return "ok", "ok"
    deprecated = bool(policy.deprecated_below) and below(app_version, policy.deprecated_below)
    sunset_passed = policy.sunset_at is not None and policy.sunset_at <= now
    if below(app_version, policy.minimum_version) or (deprecated and sunset_passed):
        return "refused", "below minimum: pulls refused, pushes accepted"
    if deprecated:
        if policy.sunset_at is not None:
            return (
                "deprecated",
                f"deprecated: pulls refused from {timezone.localtime(policy.sunset_at):%Y-%m-%d}",
            )
        return "deprecated", "deprecated (apps warned, no sunset set)"
    return "ok", "ok"


def sort_key(group: VersionGroup) -> tuple[int, tuple[int, ...], str]:
    """Newest version first; then text that is no version; then no version at all."""
    key = group.key
    if key is not None:
        return (0, tuple(-n for n in key), group.app_version)
    return (1 if group.app_version else 2, (), group.app_version)


def version_groups(queryset: QuerySet[Device], now: dt.datetime) -> list[VersionGroup]:
    """One group per platform and app version, counted by the database."""
    pending = Q(outbox_pending__gt=0)
    rows = (
        queryset.order_by()
        .values("platform", "app_version")
        .annotate(
            n=Count("pk"),
            n_recent=Count("pk", filter=Q(last_seen__gte=now - RECENT)),
            newest_seen=Max("last_seen"),
            n_reporting=Count("outbox_pending"),
            n_pending=Sum("outbox_pending"),
            n_with_pending=Count("pk", filter=pending),
            oldest=Min("outbox_oldest_at", filter=pending),
        )
    )
    return [
        VersionGroup(
            platform=row["platform"],
            app_version=row["app_version"],
            devices=row["n"],
            recent=row["n_recent"],
            last_seen=row["newest_seen"],
            reporting=row["n_reporting"],
            pending=row["n_pending"] or 0,
            with_pending=row["n_with_pending"],
            oldest_pending_at=row["oldest"],
            last_seen_age=age(row["newest_seen"], now),
            oldest_age=age(row["oldest"], now),
        )
        for row in rows
    ]


def platform_views(request: HttpRequest, now: dt.datetime) -> list[PlatformView]:
    """Each platform with devices or a policy, in the order of `Device.Platform`."""
    policies = {p.platform: p for p in AppVersionPolicy.objects.all()}
    groups = version_groups(Device.objects.all(), now)
    names = dict(Device.Platform.choices)
    present = {g.platform for g in groups} | set(policies)
    order = [p for p in names if p in present] + sorted(present - set(names))
    may_change = request.user.has_perm("devices.change_appversionpolicy")
    may_add = request.user.has_perm("devices.add_appversionpolicy")
    devices_url = reverse("admin:devices_device_changelist")
    views = []
    for platform in order:
        policy = policies.get(platform)
        view = PlatformView(platform=platform, name=names.get(platform, platform), policy=policy)
        if policy is not None and may_change:
            view.policy_url = reverse("admin:devices_appversionpolicy_change", args=[policy.pk])
        elif policy is None and may_add and platform in names:
            add = reverse("admin:devices_appversionpolicy_add")
            view.policy_url = f"{add}?{urlencode({'platform': platform})}"
        view.groups = sorted((g for g in groups if g.platform == platform), key=sort_key)
        for group in view.groups:
            group.state, group.state_text = state_of(policy, group.app_version, now)
            query = {"platform__exact": platform, "app_version": group.app_version}
            group.devices_url = f"{devices_url}?{urlencode(query)}"
        view.last_seen_age = age(view.last_seen, now)
        view.oldest_age = age(view.oldest_pending_at, now)
        views.append(view)
    return views


class CutoffForm(forms.Form):
    """What raising a platform's minimum to `version` would cut off."""

    platform = forms.ChoiceField(choices=Device.Platform.choices)
    version = forms.CharField(
        max_length=50,
        label="Minimum version",
        help_text="Devices below it would have their pulls refused.",
        widget=forms.TextInput(attrs={"placeholder": "2.4.0", "size": 10}),
    )

    def clean_version(self) -> str:
        return parse_version(self.cleaned_data["version"])


@dataclass
class Cutoff:
    platform: str
    platform_name: str
    version: str
    devices: int
    recent: int
    pending: int
    with_pending: int
    refused_now: int  # of those devices, how many the current policy refuses already
    oldest_pending_at: dt.datetime | None
    minimum: str  # the platform's minimum now ("" for none)
    listed: list[dict[str, Any]]
    policy_url: str = ""
    oldest_age: str = ""

    @property
    def more(self) -> int:
        return self.devices - len(self.listed)


def cutoff(platform: str, version: str, views: Iterable[PlatformView], now: dt.datetime) -> Cutoff:
    """The devices of `platform` below `version`: counted from the groups, and
    the first of them (most pending edits first) read."""
    view = next((v for v in views if v.platform == platform), None)
    groups = [g for g in view.groups if below(g.app_version, version)] if view else []
    devices = (
        Device.objects.filter(platform=platform, app_version__in=[g.app_version for g in groups])
        .select_related("user")
        .order_by(
            F("outbox_pending").desc(nulls_last=True),
            F("last_seen").desc(nulls_last=True),
            "pk",
        )[:CUTOFF_LISTED]
        if groups
        else []
    )
    listed = [
        {
            "device": device,
            "url": reverse("admin:devices_device_change", args=[device.pk]),
            "last_seen_age": age(device.last_seen, now),
            "oldest_age": age(device.outbox_oldest_at, now) if device.outbox_pending else "",
        }
        for device in devices
    ]
    policy = view.policy if view else None
    oldest = min((g.oldest_pending_at for g in groups if g.oldest_pending_at), default=None)
    return Cutoff(
        platform=platform,
        platform_name=dict(Device.Platform.choices)[platform],
        version=version,
        devices=sum(g.devices for g in groups),
        recent=sum(g.recent for g in groups),
        pending=sum(g.pending for g in groups),
        with_pending=sum(g.with_pending for g in groups),
        refused_now=sum(g.devices for g in groups if g.state == "refused"),
        oldest_pending_at=oldest,
        minimum=policy.minimum_version if policy else "",
        listed=listed,
        policy_url=view.policy_url if view else "",
        oldest_age=age(oldest, now),
    )


def versions_context(request: HttpRequest) -> dict[str, Any]:
    """What the App versions page shows."""
    now = timezone.now()
    views = platform_views(request, now)
    asked = "version" in request.GET or "platform" in request.GET
    initial = {"platform": next((v.platform for v in views if v.groups), "android")}
    form = CutoffForm(request.GET if asked else None, initial=initial)
    found = None
    if asked and form.is_valid():
        found = cutoff(form.cleaned_data["platform"], form.cleaned_data["version"], views, now)
    return {
        "platforms": views,
        "form": form,
        "cutoff": found,
        "recent_days": RECENT.days,
        "listed_at_most": CUTOFF_LISTED,
        "policies_url": reverse("admin:devices_appversionpolicy_changelist"),
        "not_reported": NOT_REPORTED,
        "now": now,
    }


__all__ = ["AppVersionPolicyAdmin", "versions_context"]
