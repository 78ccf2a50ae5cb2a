"""The admin: the conflict queue and resolve page, synced models edited
through the sync service (`SyncedModelAdmin`, for apps' admins), devices,
tokens and service accounts, and the feed and grants for staff to look at."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from sync import registry
from sync.admin import accounts as admin_accounts  # noqa: F401 - tokens, service accounts, users
from sync.admin import blobs as admin_blobs  # noqa: F401 - files
from sync.admin import conflicts as admin_conflicts  # noqa: F401 - registers the conflict queue
from sync.admin import devices as admin_devices  # noqa: F401 - devices and the wake-up outbox
from sync.admin.guards import GuardedAdmin
from sync.admin.synced import SyncedModelAdmin
from sync.engine import grants
from sync.engine.versions import resync
from sync.models import Change, ChannelGrant, MutationRecord, Resync


class ReadOnlyAdminMixin:
    """Staff may look, not write: these rows are written only by the sync services."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Change)
class ChangeAdmin(ReadOnlyAdminMixin, GuardedAdmin):
    list_display = ("seq", "channel", "model", "object_id", "version", "op", "created_at")
    list_filter = ("op", "model")
    search_fields = ("=channel", "=object_id")
    show_full_result_count = False


class ResyncForm(forms.ModelForm):
    model = forms.ChoiceField(help_text="Every device fetches this model again at its next pull.")

    class Meta:
        model = Resync
        fields = ("model", "reason")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        chosen = self.fields["model"]
        assert isinstance(chosen, forms.ChoiceField)  # noqa: S101 - declared above
        chosen.choices = [(t.label, t.label) for t in registry.all_types()]


@admin.register(Resync)
class ResyncAdmin(GuardedAdmin):
    """Targeted re-syncs (docs/protocol.md, "Targeted re-sync"): announced
    here, by `manage.py sync_resync` or `sync.resync()`; kept as a record."""

    form = ResyncForm
    list_display = ("id", "model", "reason", "created_at")
    list_filter = ("model",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a cursor remembers the newest it has seen: the record stays

    def save_model(self, request: HttpRequest, obj: Resync, form: Any, change: bool) -> None:
        obj.pk = resync(obj.model, reason=obj.reason)


@admin.register(ChannelGrant)
class ChannelGrantAdmin(GuardedAdmin):
    """Granting and revoking go through the services so pulls backfill or delete."""

    list_display = ("user", "channel", "created_at")
    search_fields = ("user__username", "channel")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    fields = ("user", "channel")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ChannelGrant, form: Any, change: bool) -> None:
        grants.channel_grant(user=obj.user, channel=obj.channel)
        saved = ChannelGrant.objects.get(user=obj.user, channel=obj.channel)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: ChannelGrant) -> None:
        grants.channel_revoke(user=obj.user, channel=obj.channel)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for grant in queryset.select_related("user"):
            grants.channel_revoke(user=grant.user, channel=grant.channel)


@admin.register(MutationRecord)
class MutationRecordAdmin(GuardedAdmin):
    list_display = ("mutation_id", "user", "model", "object_id", "status", "created_at")
    list_filter = ("status", "model")
    search_fields = ("=mutation_id", "=object_id", "user__username")
    list_select_related = ("user",)
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in MutationRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


__all__ = ["GuardedAdmin", "SyncedModelAdmin"]  # for apps' admins
