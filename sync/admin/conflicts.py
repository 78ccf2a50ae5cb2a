"""The staff's conflict queue, resolve page and bulk actions.

Staff see the queue with the `view_conflict` permission and settle conflicts
with `resolve_conflict`; every resolution goes through
`sync.engine.conflicts.conflict_resolve` (or `conflict_dismiss`), so it is a new
version with history, feed and pushes like any write. A conflict is never
deleted: it is the only record of an edit that was not applied.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, IntegerField, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from devices.models import Device
from sync.admin.blobs import blob_html
from sync.admin.guards import GuardedAdmin, pk_or_404
from sync.admin.resolve import (
    PICK,
    PICK_CLIENT,
    PICK_SERVER,
    PICK_VALUE,
    VALUE,
    ConflictView,
    FieldRow,
    as_text,
    conflict_view,
    current_objects,
    device_name,
    name_references,
    object_name,
    outcome_in_words,
    picked_values,
    read_picks,
    short_id,
    shown,
)
from sync.choices import Choice, ConflictStatus
from sync.engine.conflicts import conflict_dismiss, conflict_resolve
from sync.models import Conflict
from syncbase.errors import SyncError

RESOLVE_PERMISSION = "sync.resolve_conflict"


def object_admin_url(label: str, object_id: Any, view: str = "change") -> str | None:
    app_label, model_name = label.split(".", 1)
    try:
        return reverse(f"admin:{app_label}_{model_name}_{view}", args=[object_id])
    except NoReverseMatch:
        return None


def reference_html(row: FieldRow, value: Any) -> str:
    """A row's value on the resolve page: a reference by its object's name, linked
    to the object, with the id as the link's title."""
    if row.type == "blob":
        return blob_html(value)
    pk = row.referred_id(value)
    if pk is None or row.refers_to is None:
        return shown(value)
    name = row.name_of(value)
    text = name if name is not None else f"{short_id(pk)} (not found)"
    url = object_admin_url(row.refers_to._meta.label_lower, pk)
    if url is None or name is None:
        return format_html('<span title="{}">{}</span>', pk, text)
    return format_html('<a href="{}" title="{}">{}</a>', url, pk, text)


def device_html(device_id: Any, name: str | None, platform: str | None) -> str:
    """A device by its name (else platform and short id), linked, its id as the title."""
    if device_id is None:
        return "—"
    text = device_name(name, platform, device_id)
    if name is None and platform is None:  # no such device any more
        return format_html('<span title="{}">{}</span>', device_id, text)
    url = reverse("admin:devices_device_change", args=[device_id])
    return format_html('<a href="{}" title="{}">{}</a>', url, device_id, text)


# Set on each conflict of a queue page: its object as it is now (None if gone).
_CURRENT = "current_object"


class ConflictChangeList(ChangeList):
    """The queue: each page's objects read at once (one query per model), so
    that each row shows its object by name."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        page = list(self.result_list)  # evaluated here; the template reuses these rows
        current = current_objects(page)
        for conflict in page:
            setattr(conflict, _CURRENT, current.get((conflict.model, conflict.object_id)))


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("hour", "Under an hour"),
            ("day", "Under a day"),
            ("week", "Under a week"),
            ("older", "Older than a week"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        limits = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
        limits["week"] = limits["older"] = dt.timedelta(days=7)
        value = self.value()
        if value not in limits:
            return queryset
        if value == "older":
            return queryset.filter(created_at__lt=now - limits[value])
        return queryset.filter(created_at__gte=now - limits[value])


@admin.register(Conflict)
class ConflictAdmin(GuardedAdmin):
    list_display = (
        "status_badge",
        "model",
        "object_link",
        "fields_at_stake",
        "user",
        "device",
        "age",
        "resolve_link",
    )
    list_display_links = None
    list_filter = ("status", "model", ("user", admin.RelatedOnlyFieldListFilter), AgeFilter)
    search_fields = ("=object_id", "=id", "user__username")
    search_help_text = "An object id, a conflict id, or a username."
    list_select_related = ("user",)
    list_per_page = 50
    actions = ["resolve_keep_server", "resolve_take_client", "dismiss_selected"]

    # --- the queue ---------------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ConflictChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        devices = Device.objects.filter(pk=OuterRef("device_id"))
        stacked = (
            Conflict.objects.filter(
                model=OuterRef("model"),
                object_id=OuterRef("object_id"),
                status=ConflictStatus.OPEN,
            )
            .order_by()
            .values("object_id")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                device_name=Subquery(devices.values("name")[:1]),
                device_platform=Subquery(devices.values("platform")[:1]),
                open_on_object=Coalesce(Subquery(stacked[:1]), Value(0)),
            )
        )

    def get_ordering(self, request: HttpRequest) -> tuple[Any, ...]:
        # Open conflicts first, oldest first: the longest-waiting edit is next.
        open_first = Case(
            When(status=ConflictStatus.OPEN, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        return (open_first.asc(), "created_at")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Conflict) -> str:
        return format_html(
            '<span class="conflict-status conflict-status-{}">{}</span>', obj.status, obj.status
        )

    @admin.display(description="object")
    def object_link(self, obj: Conflict) -> str:
        url = object_admin_url(obj.model, obj.object_id)
        current = getattr(obj, _CURRENT, None)
        name = object_name(current) if current is not None else short_id(obj.object_id)
        stacked = getattr(obj, "open_on_object", 0)
        extra = (
            format_html(' <span class="conflict-stacked">+{} open here</span>', stacked - 1)
            if obj.status == ConflictStatus.OPEN and stacked > 1
            else ""
        )
        if url is None:
            return format_html('<span title="{}">{}</span>{}', obj.object_id, name, extra)
        return format_html('<a href="{}" title="{}">{}</a>{}', url, obj.object_id, name, extra)

    @admin.display(description="fields at stake")
    def fields_at_stake(self, obj: Conflict) -> str:
        return ", ".join(obj.fields) or obj.get_kind_display()

    @admin.display(description="device")
    def device(self, obj: Conflict) -> str:
        return device_html(
            obj.device_id,
            getattr(obj, "device_name", None),
            getattr(obj, "device_platform", None),
        )

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: Conflict) -> str:
        return timesince(obj.created_at).split(",")[0]

    @admin.display(description="")
    def resolve_link(self, obj: Conflict) -> str:
        url = reverse("admin:sync_conflict_change", args=[obj.pk])
        label = "Resolve" if obj.status == ConflictStatus.OPEN else "View"
        return format_html('<a class="button" href="{}">{}</a>', url, label)

    # --- permissions: a conflict is resolved or dismissed, never added or deleted ------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the resolve page replaces the change form

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RESOLVE_PERMISSION)

    # --- the resolve page ----------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        conflict = get_object_or_404(
            Conflict.objects.select_related("user", "resolved_by"),
            pk=pk_or_404(Conflict, unquote(object_id)),
        )
        if not self.has_view_permission(request, conflict):
            raise PermissionDenied
        may_resolve = self.has_resolve_permission(request)
        if request.method == "POST":
            if not may_resolve:
                raise PermissionDenied
            return self._resolve_posted(request, conflict)
        return self._render(request, conflict, may_resolve=may_resolve)

    def _view(self, conflict: Conflict) -> ConflictView:
        current = current_objects([conflict]).get((conflict.model, conflict.object_id))
        view = conflict_view(conflict, current)
        name_references([view])
        return view

    def _render(
        self,
        request: HttpRequest,
        conflict: Conflict,
        *,
        may_resolve: bool,
        view: ConflictView | None = None,
        errors: dict[str, list[str]] | None = None,
        note: str = "",
        status: int = 200,
    ) -> HttpResponse:
        view = view or self._view(conflict)
        if not errors:
            for row in view.rows:
                row.typed = row.typed or as_text(row.client if row.sent else row.server)
                if not row.pick and row.sent and not row.at_stake:
                    row.pick = PICK_CLIENT  # what a merge would have done with it
        stacked = list(
            Conflict.objects.filter(
                model=conflict.model, object_id=conflict.object_id, status=ConflictStatus.OPEN
            )
            .exclude(pk=conflict.pk)
            .select_related("user")
            .order_by("created_at")
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Conflict on {conflict.model}",
            "conflict": conflict,
            "view": view,
            "rows": [
                {
                    "row": row,
                    "base": reference_html(row, row.base),
                    "server": reference_html(row, row.server)
                    if not view.server_deleted
                    else "(deleted)",
                    "client": reference_html(row, row.client) if row.sent else "",
                }
                for row in view.rows
            ],
            "device": self._device_html(conflict),
            "labels": view.labels,
            "choices": {"server": Choice.SERVER, "client": Choice.CLIENT, "fields": Choice.FIELDS},
            "picks": {"server": PICK_SERVER, "client": PICK_CLIENT, "value": PICK_VALUE},
            "pick_prefix": PICK,
            "value_prefix": VALUE,
            "may_resolve": may_resolve and conflict.status == ConflictStatus.OPEN,
            "lacks_permission": not may_resolve and conflict.status == ConflictStatus.OPEN,
            "is_open": conflict.status == ConflictStatus.OPEN,
            "errors": errors or {},
            "note": note,
            "stacked": stacked,
            "object_url": object_admin_url(conflict.model, conflict.object_id),
            "history_url": object_admin_url(conflict.model, conflict.object_id, "history"),
            "queue_url": reverse("admin:sync_conflict_changelist"),
            "age": timesince(conflict.created_at).split(",")[0],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/sync/conflict/resolve.html", context, status=status)

    def _device_html(self, conflict: Conflict) -> str:
        if conflict.device_id is None:
            return ""
        found = Device.objects.filter(pk=conflict.device_id).values("name", "platform").first()
        return device_html(
            conflict.device_id,
            found["name"] if found else None,
            found["platform"] if found else None,
        )

    def _resolve_posted(self, request: HttpRequest, conflict: Conflict) -> HttpResponse:
        action = request.POST.get("action", "")
        note = request.POST.get("note", "").strip()
        try:
            expected = int(request.POST.get("expected_version", ""))
        except ValueError:
            messages.error(request, "The form lost the version it was loaded at; try again.")
            return HttpResponseRedirect(request.path)
        view = self._view(conflict)
        try:
            if action == "dismiss":
                conflict_dismiss(conflict_id=conflict.pk, user=request.user, note=note)
                messages.success(request, "Conflict dismissed; nothing was written.")
                return HttpResponseRedirect(reverse("admin:sync_conflict_changelist"))
            values = None
            if action == Choice.FIELDS:
                errors = read_picks(view, request.POST)
                if errors:
                    return self._render(
                        request,
                        conflict,
                        may_resolve=True,
                        view=view,
                        errors=errors,
                        note=note,
                        status=400,
                    )
                values = picked_values(view)
            elif action not in (Choice.SERVER, Choice.CLIENT):
                messages.error(request, "Choose how to resolve this conflict.")
                return HttpResponseRedirect(request.path)
            resolved = conflict_resolve(
                conflict_id=conflict.pk,
                user=request.user,
                choice=action,
                values=values,
                expected_version=expected,
                note=note,
                as_staff=True,
            )
        except SyncError as exc:
            return self._refused(request, conflict, view, exc, note)
        version = resolved.object["version"]
        messages.success(
            request,
            f"Conflict resolved: {conflict.model} {str(conflict.object_id)[:8]} is now at "
            f"version {version}.",
        )
        return HttpResponseRedirect(reverse("admin:sync_conflict_changelist"))

    def _refused(
        self,
        request: HttpRequest,
        conflict: Conflict,
        view: ConflictView,
        exc: SyncError,
        note: str,
    ) -> HttpResponse:
        if exc.status_code == 412:
            messages.error(
                request,
                "The object changed while you were looking at it: nothing was written. "
                "Its current values are shown below; resolve again.",
            )
            return self._render(request, conflict, may_resolve=True, note=note, status=412)
        if exc.status_code == 409:
            messages.warning(request, exc.detail)
            return HttpResponseRedirect(request.path)
        for row in view.rows:
            row.errors = (exc.errors or {}).get(row.name, [])
        messages.error(request, exc.detail)
        return self._render(
            request,
            conflict,
            may_resolve=True,
            view=view,
            errors=exc.errors or {"": []},
            note=note,
            status=exc.status_code,
        )

    # --- bulk actions ----------------------------------------------------------------

    @admin.action(description="Resolve selected: keep server", permissions=["resolve"])
    def resolve_keep_server(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._bulk(request, queryset, Choice.SERVER)

    @admin.action(description="Resolve selected: take client", permissions=["resolve"])
    def resolve_take_client(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._bulk(request, queryset, Choice.CLIENT)

    @admin.action(description="Dismiss selected (write nothing)", permissions=["resolve"])
    def dismiss_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._bulk(request, queryset, "dismiss")

    def _bulk(self, request: HttpRequest, queryset: QuerySet, choice: str) -> HttpResponse | None:
        conflicts = list(queryset.select_related("user").order_by("created_at"))
        if request.POST.get("post") != "yes":
            return self._bulk_confirm(request, conflicts, choice)
        done, failed = [], []
        for conflict in conflicts:
            # Each on its own: one that changed or was settled meanwhile does not
            # stop the others.
            try:
                if choice == "dismiss":
                    conflict_dismiss(conflict_id=conflict.pk, user=request.user)
                else:
                    seen = int(request.POST.get(f"version-{conflict.pk}", ""))
                    conflict_resolve(
                        conflict_id=conflict.pk,
                        user=request.user,
                        choice=choice,
                        expected_version=seen,
                        as_staff=True,
                    )
                done.append(conflict)
            except ValueError:
                failed.append((conflict, "it was not on the confirmation page"))
            except SyncError as exc:
                failed.append((conflict, exc.detail))
        verb = "dismissed" if choice == "dismiss" else "resolved"
        if done:
            messages.success(request, f"{len(done)} conflict(s) {verb}.")
        if failed:
            messages.error(
                request,
                format_html(
                    "{} conflict(s) not {}: {}",
                    len(failed),
                    verb,
                    format_html_join(
                        "; ", "{} ({})", ((str(c.object_id)[:8], why) for c, why in failed)
                    ),
                ),
            )
        return None

    def _bulk_confirm(
        self, request: HttpRequest, conflicts: list[Conflict], choice: str
    ) -> HttpResponse:
        current = current_objects(conflicts)
        views, skipped = [], []
        for conflict in conflicts:
            if conflict.status != ConflictStatus.OPEN:
                skipped.append(conflict)
                continue
            views.append(conflict_view(conflict, current.get((conflict.model, conflict.object_id))))
        name_references(views)
        items = []
        for view in views:
            conflict = view.conflict
            items.append(
                {
                    "conflict": conflict,
                    "view": view,
                    "outcome": ["Closed; nothing is written."]
                    if choice == "dismiss"
                    else outcome_in_words(view, choice),
                    "version": view.current.version if view.current is not None else "",
                }
            )
        descriptions = {
            Choice.SERVER: "keep the server's values",
            Choice.CLIENT: "take the client's values",
            "dismiss": "dismiss them (nothing is written)",
        }
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Resolve conflicts",
            "items": items,
            "skipped": skipped,
            "choice_text": descriptions[choice],
            "action": request.POST.get("action", ""),
            "selected": [c.pk for c in conflicts],
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/sync/conflict/bulk_confirm.html", context)


def open_conflicts_count() -> int:
    return Conflict.objects.filter(status=ConflictStatus.OPEN).count()


__all__ = ["ConflictAdmin", "open_conflicts_count"]
