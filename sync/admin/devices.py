from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from devices.models import Device, PushOutbox
from sync.admin.guards import GuardedAdmin
from sync.notify.wakeups import counters


@admin.register(Device)
class DeviceAdmin(GuardedAdmin):
    list_display = (
        "id",
        "user",
        "platform",
        "name",
        "app_version",
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
            },
        )


@admin.register(PushOutbox)
class PushOutboxAdmin(GuardedAdmin):
    """Wake-ups not sent yet: normally empty within seconds of a write."""

    list_display = ("id", "created_at", "claimed_until", "attempts", "origin_device_id", "seq")
    readonly_fields = [f.name for f in PushOutbox._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
