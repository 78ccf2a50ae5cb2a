from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from . import (
    admin_conflicts,  # noqa: F401 - registers the conflict queue
    services,
)
from .models import Change, ChannelGrant, MutationRecord


class ReadOnlyAdminMixin:
    """Staff may look, not write: these rows are written only by the sync services."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SyncedModelAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    """Staff view of a synced model and its history.

    Read-only here: every write to synced data goes through `sync.services`
    (versions, history and feed together), so the admin does not save models
    directly.
    """

    readonly_fields = ("id", "version", "created_at", "updated_at", "deleted_at")
    list_filter = ("deleted_at",)
    # Which version each history row is: conflicts and the feed speak in versions.
    history_list_display = ("version",)


@admin.register(Change)
class ChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("seq", "channel", "model", "object_id", "version", "op", "created_at")
    list_filter = ("op", "model")
    search_fields = ("=channel", "=object_id")
    show_full_result_count = False


@admin.register(ChannelGrant)
class ChannelGrantAdmin(admin.ModelAdmin):
    """Granting and revoking go through the services so pulls backfill or delete."""

    list_display = ("user", "channel", "created_at")
    search_fields = ("user__username", "channel")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    fields = ("user", "channel")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ChannelGrant, form: Any, change: bool) -> None:
        services.channel_grant(user=obj.user, channel=obj.channel)
        saved = ChannelGrant.objects.get(user=obj.user, channel=obj.channel)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: ChannelGrant) -> None:
        services.channel_revoke(user=obj.user, channel=obj.channel)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for grant in queryset.select_related("user"):
            services.channel_revoke(user=grant.user, channel=grant.channel)


@admin.register(MutationRecord)
class MutationRecordAdmin(admin.ModelAdmin):
    list_display = ("mutation_id", "user", "model", "object_id", "status", "created_at")
    list_filter = ("status", "model")
    search_fields = ("=mutation_id", "=object_id", "user__username")
    list_select_related = ("user",)
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in MutationRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
