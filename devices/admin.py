from __future__ import annotations

from django.contrib import admin

from .models import Device


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "platform", "name", "app_version", "push_active", "last_seen")
    list_filter = ("platform", "push_active")
    search_fields = ("id", "name", "user__username")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    readonly_fields = ("last_cursor", "last_seen", "created_at", "updated_at")
