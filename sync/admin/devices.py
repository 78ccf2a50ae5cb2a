from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from devices.models import Device, PushOutbox
from sync.admin.guards import GuardedAdmin
from sync.admin.versions import versions_context  # also registers the app version policies
from sync.notify.wakeups import counters


@admin.register(Device)
class DeviceAdmin(GuardedAdmin):
    list_display = (
        "id",
        "user",
        "platform",
        "name",
        "app_version",
        "outbox_pending",
        "push_active",
        "last_push_at",
        "last_push_outcome",
        "last_seen",
    )
    list_filter = ("platform", "push_active", "last_push_outcome")
    search_fields = ("=id", "name", "user__username")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    readonly_fields = (
        "last_cursor",
        "last_seen",
        "last_push_at",
        "last_push_outcome",
        # What the app reported on its last sync call, not for staff to edit.
        "schema_versions",
        "outbox_pending",
        "outbox_oldest_at",
        "created_at",
        "updated_at",
    )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # What the push sender has done lately, for whoever is on call.
        return super().changelist_view(
            request,
            {
                **(extra_context or {}),
                "push_counters": counters(),
                "push_outbox_waiting": PushOutbox.objects.count(),
                "versions_url": reverse("admin:devices_device_versions"),
            },
        )

    def get_urls(self) -> list[Any]:
        return [
            # Before Django's own: its `<path:object_id>/` would take "versions/".
            path(
                "versions/",
                self.admin_site.admin_view(self.versions_view),
                name="devices_device_versions",
            ),
            *super().get_urls(),
        ]

    def versions_view(self, request: HttpRequest) -> HttpResponse:
        """App versions in the field, and what raising a minimum would cut off
        (sync.admin.versions)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "App versions",
            **versions_context(request),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/devices/device/versions.html", context)


@admin.register(PushOutbox)
class PushOutboxAdmin(GuardedAdmin):
    """Wake-ups not sent yet: normally empty within seconds of a write."""

    list_display = ("id", "created_at", "claimed_until", "attempts", "origin_device_id", "seq")
    readonly_fields = [f.name for f in PushOutbox._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
