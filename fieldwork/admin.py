from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from fieldwork.models import Customer, Note, Team, TeamMembership, WorkOrder
from fieldwork.services import team_member_add, team_member_remove
from sync.admin.guards import GuardedAdmin
from sync.admin.synced import SyncedModelAdmin


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
    raw_id_fields = ("user",)
    extra = 1


@admin.register(Team)
class TeamAdmin(GuardedAdmin, admin.ModelAdmin):
    list_display = ("name",)
    search_fields = ("name",)
    inlines = [TeamMembershipInline]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        # Memberships are channel grants: add and remove them through the service
        # so that members' next pulls backfill or delete the team's objects.
        team = form.instance
        for obj in formset.save(commit=False):
            team_member_add(team=team, user=obj.user)
        for obj in formset.deleted_objects:
            team_member_remove(team=team, user=obj.user)


@admin.register(Customer)
class CustomerAdmin(SyncedModelAdmin):
    list_display = ("name", "email", "owner", "team")
    search_fields = ("name", "email", "=id")
    list_select_related = ("owner", "team")


@admin.register(WorkOrder)
class WorkOrderAdmin(SyncedModelAdmin):
    list_display = ("title", "status", "priority", "customer", "owner")
    list_filter = ("status", "priority")
    search_fields = ("title", "=id")
    list_select_related = ("customer", "owner")


@admin.register(Note)
class NoteAdmin(SyncedModelAdmin):
    list_display = ("__str__", "work_order", "owner", "pinned")
    search_fields = ("body", "=id")
    list_select_related = ("work_order", "owner")
