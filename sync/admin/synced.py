"""The admin of synced models: staff edit them, and every write goes through
`sync.engine.write` (`object_write`, `object_restore`) like a device's push.

Nothing here saves, updates or deletes a synced row itself: versions, history,
the change feed and pushes would disagree. The admin shapes input into the
push form (`SyncedModelForm.wire_values`), calls the service, and turns its
result into a message.

Registered models need no code of their own: the form's fields are the
model's registered writable fields plus its owner (staff may set the owner).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import models
from django.db.models import Exists, F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce, NullIf
from django.forms.models import model_to_dict
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from simple_history.admin import SimpleHistoryAdmin
from simple_history.models import to_historic

from devices.models import Device
from sync import registry
from sync.admin.guards import GuardedAdmin, pk_or_404
from sync.choices import ConflictStatus, Op, Status
from sync.codecs import FieldCodec
from sync.engine import write as services
from sync.engine.mutations import MutationResult
from sync.engine.pull import deletion_preview, values_errors
from sync.engine.scope import Scope
from sync.models import Conflict, SyncedModel
from sync.registry import SyncedType
from syncbase.errors import SyncError

# Shown read-only on every synced object's form.
SYNC_FIELDS = ("id", "version", "created_at", "updated_at", "deleted_at", "last_device")
# Appended to every synced changelist, after the model's own columns.
SYNC_COLUMNS = ("version", "updated_at", "last_device", "deleted_at", "open_conflict")
BASE_VERSION = "base_version"

# Set on the request by the write that handled it (see `_Outcome`).
_OUTCOME_ATTR = "_synced_admin_outcome"


def synced_type(model: type[models.Model]) -> SyncedType:
    stype = registry.for_model(model)
    if stype is None:
        raise ImproperlyConfigured(f"{model._meta.label} is not registered with sync.register")
    return stype


def editable_codecs(stype: SyncedType) -> dict[str, FieldCodec]:
    """What staff may write: the registered writable fields and the owner."""
    codecs = dict(stype.writable)
    if stype.owner_field:
        codecs[stype.owner_field] = stype.codecs[stype.owner_field]
    return codecs


def _devices_labelled(device_id: Any) -> Any:
    """A device by id, with its name (else its platform) as `label`."""
    return Device.objects.filter(pk=device_id).annotate(
        label=Coalesce(NullIf(F("name"), Value("")), F("platform"))
    )


def device_label(device_id: Any) -> Subquery:
    """The device's label as a subquery: one query for a whole page of objects."""
    return Subquery(_devices_labelled(device_id).values("label")[:1])


def _wire(codec: FieldCodec, value: Any) -> Any:
    if isinstance(value, models.Model):
        value = value.pk
    if isinstance(value, str) and codec.type in ("string", "text"):
        # Browsers submit textarea line breaks as CRLF (HTML spec); devices send
        # LF. Left alone, an untouched multi-line field would count as an edit
        # in a three-way merge and could raise a false conflict.
        value = value.replace("\r\n", "\n")
    return codec.encode(value)


class SyncedModelForm(forms.ModelForm):
    """A synced object's fields, checked as the write service will check them,
    and the version the staff member started from."""

    # The object's version when the form was built, read from the database, so
    # that the history revert form (whose instance is an old version) also
    # carries the current one. Sent back as the write's base_version: an edit
    # on a form that went stale is merged like a device's, never written blind.
    base_version = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=0)

    # Set per request by `SyncedModelAdmin.get_form`.
    staff: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stype = synced_type(self._meta.model)
        self.adding = self.instance._state.adding
        self.historic = to_historic(self.instance)
        # The values as loaded, before the form parses them back (see wire_values).
        self.loaded = {
            name: codec.encode(getattr(self.instance, codec.attname))
            for name, codec in editable_codecs(self.stype).items()
        }
        if self.is_bound and not self.adding and self.historic is None:
            self._edits_relative_to_base()
        if not self.adding and not self.is_bound:
            # The change form's instance was read in the same query as its
            # values; a version read separately could be newer than what the
            # form shows, and an edit based on it would overwrite unseen writes.
            self.fields[BASE_VERSION].initial = (
                self.instance.version
                if self.historic is None
                else self.stype.model._default_manager.filter(pk=self.instance.pk)
                .values_list("version", flat=True)
                .first()
            )

    def _edits_relative_to_base(self) -> None:
        """Judge what the staff member edited against the values they were shown.

        A submitted change form is bound to the object as it is now; if someone
        wrote since the form was opened, every field they changed would look
        edited here, and the form would send the old values back over theirs.
        Against the version the form was opened at, only real edits differ.
        """
        try:
            base_version = int(self.data.get(BASE_VERSION, ""))
        except ValueError:
            return  # refused in clean()
        if base_version == self.instance.version:
            return
        history = self.stype.model.history.model
        base = history.objects.filter(id=self.instance.pk, version=base_version).first()
        if base is not None:
            self.initial.update(model_to_dict(base.instance, fields=list(self.loaded)))

    @cached_property
    def changed_data(self) -> list[str]:
        # The version is bookkeeping, not an edit (nor worth a line in the admin log).
        return [name for name in super().changed_data if name != BASE_VERSION]

    def wire_values(self) -> dict[str, Any]:
        """The push's `data`, from the cleaned values.

        A create sends every field. A revert sends every field too: it makes
        the object what that version was. An edit sends the fields the staff
        member changed, like a device: an untouched field sent along would be
        part of the conflict's client values (so "take the client's" would undo
        others' changes to it), would settle the author's open conflicts on it,
        and would have to pass validation again (a reference deleted since).

        An untouched field of a revert is sent exactly as loaded rather than as
        the form parsed it back: the round trip can be lossy (the admin's time
        widget drops microseconds).
        """
        out: dict[str, Any] = {}
        for name, codec in editable_codecs(self.stype).items():
            if name not in self.cleaned_data:
                continue  # a field with errors: the form is not saved
            touched = self.adding or name in self.changed_data
            if touched:
                out[name] = _wire(codec, self.cleaned_data[name])
            elif self.historic is not None:
                out[name] = self.loaded[name]
        return out

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if (
            not self.adding
            and cleaned.get(BASE_VERSION) is None
            and BASE_VERSION not in self.errors
        ):
            self.add_error(
                None,
                "This form does not say which version it was opened at; "
                "reload the page and make the changes again.",
            )
        errors = values_errors(
            scope=Scope.everything(self.staff),
            stype=self.stype,
            data=self.wire_values(),
            full=self.adding,
        )
        for name, field_errors in errors.items():
            if name in self.errors:
                continue  # already told (a value missing here is "required" there too)
            self.add_error(name if name in self.fields else None, field_errors)
        return cleaned


class StateFilter(admin.SimpleListFilter):
    """Live objects unless asked otherwise: deleted ones are kept (soft deletes)
    but are rarely what staff look for."""

    title = "state"
    parameter_name = "state"
    LIVE, DELETED, ALL = "live", "deleted", "all"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(self.LIVE, "Live"), (self.DELETED, "Deleted"), (self.ALL, "All")]

    def state(self) -> str:
        value = self.value()
        return value if value in (self.DELETED, self.ALL) else self.LIVE

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        state = self.state()
        if state == self.ALL:
            return queryset
        return queryset.filter(deleted_at__isnull=state == self.LIVE)

    def choices(self, changelist: Any) -> Iterator[Any]:
        # Unlike a plain filter, no parameter means Live, and All is a choice of its own.
        counts = self.get_facet_queryset(changelist) if changelist.add_facets else None
        for i, (lookup, title) in enumerate(self.lookup_choices):
            if counts is not None:
                title = f"{title} ({counts.get(f'{i}__c', '-')})"
            yield {
                "selected": self.state() == lookup,
                "query_string": (
                    changelist.get_query_string(remove=[self.parameter_name])
                    if lookup == self.LIVE
                    else changelist.get_query_string({self.parameter_name: lookup})
                ),
                "display": title,
            }


@dataclass(frozen=True)
class _Outcome:
    """What a write from this request did: whether anything was written, and
    whether the staff member must go back to the form."""

    written: bool
    back_to_form: bool = False


if TYPE_CHECKING:
    # simple-history has no types, so to mypy this base is Any, as it was
    # before the guard was mixed in: mixing it in visibly would check every
    # override below against django-stubs' ModelAdmin, a change of its own.
    class _SyncedAdminBase(SimpleHistoryAdmin):
        pass

else:

    class _SyncedAdminBase(GuardedAdmin, SimpleHistoryAdmin):
        """simple-history's admin, with ids and query strings checked (guards.py)."""


class SyncedModelAdmin(_SyncedAdminBase):
    """Staff view and edit a synced model through the write service.

    Edits are pushes at the version the form was opened at (merged under the
    model's policy when someone wrote in between), deletes are soft deletes,
    and reverting to a version from the history writes a new version (or
    restores a deleted object). Deleted objects are read-only.
    """

    form = SyncedModelForm
    # `last_device` cannot clash with a model's field: SyncedModel's
    # last_device_id already owns that name.
    history_list_display = ["version", "last_device"]
    raw_id_fields: Sequence[str] = ()

    def __init__(self, model: type[models.Model], admin_site: Any) -> None:
        super().__init__(model, admin_site)
        # References as raw ids: a select of every customer (or user) is
        # unusable at 100k rows. Taken from the model because the sync registry
        # is filled in apps' ready(), after the admin has been discovered.
        references = [f.name for f in model._meta.concrete_fields if f.many_to_one]
        self.raw_id_fields = tuple(dict.fromkeys([*type(self).raw_id_fields, *references]))

    # --- reading ---------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> Any:
        conflicts = Conflict.objects.filter(
            model=self.model._meta.label_lower,
            object_id=OuterRef("pk"),
            status=ConflictStatus.OPEN,
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                sync_device=device_label(OuterRef("last_device_id")),
                sync_open_conflict=Exists(conflicts),
            )
        )

    def get_list_display(self, request: HttpRequest) -> Sequence[Any]:
        own = [c for c in super().get_list_display(request) if c not in SYNC_COLUMNS]
        return [*own, *SYNC_COLUMNS]

    def get_list_filter(self, request: HttpRequest) -> Sequence[Any]:
        own = [f for f in super().get_list_filter(request) if f not in (StateFilter, "deleted_at")]
        return [StateFilter, *own]

    def get_history_queryset(
        self, request: HttpRequest, history_manager: Any, pk_name: str, object_id: Any
    ) -> Any:
        qs = super().get_history_queryset(request, history_manager, pk_name, object_id)
        # Read by `last_device` for each row: one query for the page.
        return qs.annotate(sync_device=device_label(OuterRef("last_device_id")))

    @admin.display(description="last device", ordering="sync_device")
    def last_device(self, obj: SyncedModel) -> str:
        if obj.last_device_id is None:
            return self.get_empty_value_display()
        if hasattr(obj, "sync_device"):
            label = obj.sync_device
        else:  # a single object without the annotation: a revert form
            label = _devices_labelled(obj.last_device_id).values_list("label", flat=True).first()
        url = reverse("admin:devices_device_change", args=[quote(obj.last_device_id)])
        return format_html('<a href="{}">{}</a>', url, label or str(obj.last_device_id)[:8])

    @admin.display(description="conflict", ordering="sync_open_conflict")
    def open_conflict(self, obj: SyncedModel) -> str:
        if not getattr(obj, "sync_open_conflict", False):
            return ""
        query = urlencode({"object_id": str(obj.pk), "status__exact": ConflictStatus.OPEN})
        return format_html(
            '<a href="{}?{}">open conflict</a>', reverse("admin:sync_conflict_changelist"), query
        )

    # --- forms -----------------------------------------------------------------

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = cast(type[SyncedModelForm], super().get_form(request, obj, change, **kwargs))
        if not issubclass(form, SyncedModelForm):
            raise ImproperlyConfigured(f"{type(self).__name__}.form must be a SyncedModelForm")
        form.staff = request.user  # a fresh class per call (modelform_factory)
        return form

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[tuple[Any, Any]]:
        editable = list(editable_codecs(synced_type(self.model)))
        if obj is None:
            return [(None, {"fields": editable})]
        if self._editable(request, obj):
            editable.append(BASE_VERSION)
        return [(None, {"fields": editable}), ("Sync", {"fields": SYNC_FIELDS})]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        return [*super().get_readonly_fields(request, obj), *SYNC_FIELDS]

    def _editable(self, request: HttpRequest, obj: SyncedModel) -> bool:
        if to_historic(obj) is not None:
            return bool(self.has_change_history_permission(request, obj))
        return bool(self.has_change_permission(request, obj))

    # --- permissions -----------------------------------------------------------

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A deleted object is shown read-only: it comes back by reverting to a
        # version from its history (a restore), not by editing it.
        if obj is not None and obj.is_deleted and to_historic(obj) is None:
            return False
        return bool(super().has_change_permission(request, obj))

    def has_change_history_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_deleted and to_historic(obj) is not None:
            return False  # a deletion is not a state to revert to: delete instead
        if self.enforce_history_permissions:
            return bool(super().has_change_history_permission(request, obj))
        # Reverting is allowed on a deleted object too: that is how it is restored.
        return bool(admin.ModelAdmin.has_change_permission(self, request, obj))

    # --- views -----------------------------------------------------------------

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        if obj is not None and obj.is_deleted:
            if request.method == "POST":
                # Deleted while this form was open: say so rather than a bare 403.
                self.message_user(
                    request,
                    f"The {self.opts.verbose_name} “{obj}” was deleted while you were editing "
                    "it; nothing was written. To bring it back, revert to a version from its "
                    "history.",
                    messages.WARNING,
                )
                return HttpResponseRedirect(request.path)
            self.message_user(
                request,
                f"This {self.opts.verbose_name} was deleted; it is shown read-only. To bring it "
                "back, revert to a version from its history.",
                messages.WARNING,
            )
            extra_context = {**(extra_context or {}), "show_delete": False}
        return super().changeform_view(request, object_id, form_url, extra_context)

    def history_form_view(
        self,
        request: HttpRequest,
        object_id: str,
        version_id: str,
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # simple-history looks both up as given: an id that cannot be one is a 404 here.
        pk_or_404(self.model, unquote(object_id))
        pk_or_404(self.model.history.model, unquote(version_id))
        return super().history_form_view(request, object_id, version_id, extra_context)

    # --- writing ---------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        stype = synced_type(self.model)
        if not isinstance(form, SyncedModelForm):
            raise ImproperlyConfigured("Synced objects are saved from a SyncedModelForm only")
        data = form.wire_values()
        staff = request.user
        name = staff.get_username()
        historic = to_historic(obj)
        if historic is not None and not self.has_change_history_permission(request, obj):
            # simple-history's revert view saves without checking this itself.
            raise PermissionDenied
        if not change:
            object_id = uuid.uuid4()
            result = services.object_write(
                user=staff,
                mutation={
                    "op": Op.CREATE,
                    "model": stype.label,
                    "id": str(object_id),
                    "base_version": None,
                    "data": data,
                },
                reason=f"admin edit by {name}",
            )
            obj.pk = object_id
            self._report_write(request, obj, result, base_version=None)
        elif historic is not None and self._is_deleted(obj.pk):
            self._restore(
                request,
                obj,
                form,
                data,
                reason=f"admin restore of version {historic.version} by {name}",
            )
        else:
            base_version = form.cleaned_data[BASE_VERSION]
            result = services.object_write(
                user=staff,
                mutation={
                    "op": Op.UPDATE,
                    "model": stype.label,
                    "id": str(obj.pk),
                    "base_version": base_version,
                    "data": data,
                },
                reason=(
                    f"admin revert to version {historic.version} by {name}"
                    if historic is not None
                    else f"admin edit by {name}"
                ),
            )
            self._report_write(request, obj, result, base_version=base_version)
        if self._outcome(request).written:
            # The service's state (version, timestamps), for the log and the redirect.
            obj.refresh_from_db()

    def _is_deleted(self, pk: Any) -> bool:
        return self.model._default_manager.filter(pk=pk, deleted_at__isnull=False).exists()

    def _restore(
        self,
        request: HttpRequest,
        obj: Any,
        form: SyncedModelForm,
        data: dict[str, Any],
        reason: str,
    ) -> None:
        try:
            body = services.object_restore(
                user=request.user,
                stype=synced_type(self.model),
                object_id=obj.pk,
                expected_version=form.cleaned_data[BASE_VERSION],
                values=data,
                reason=reason,
            )
        except SyncError as exc:
            self._report(
                request,
                format_html(
                    "The {} “{}” was not restored: {} {}",
                    self.opts.verbose_name,
                    obj,
                    exc.detail,
                    _errors_text(exc.errors),
                ),
                messages.ERROR,
                _Outcome(written=False, back_to_form=exc.status_code != 412),
            )
            return
        self._report(
            request,
            format_html(
                "The {} “{}” was restored as version {}.",
                self.opts.verbose_name,
                obj,
                body["version"],
            ),
            messages.SUCCESS,
            _Outcome(written=True),
        )

    def _report_write(
        self, request: HttpRequest, obj: Any, result: MutationResult, base_version: int | None
    ) -> None:
        """Tell the staff member what the service did with their edit."""
        what = self.opts.verbose_name
        if result.status == Status.APPLIED:
            if base_version is not None and result.version == base_version:
                message = format_html("No changes to the {} “{}”.", what, obj)
            else:
                message = format_html(
                    "The {} “{}” was saved as version {}.", what, obj, result.version
                )
            self._report(request, message, messages.SUCCESS, _Outcome(written=True))
        elif result.status == Status.MERGED:
            message = format_html(
                "The {} “{}” had changed since you opened the form (at version {}); your edits "
                "were merged with those changes under its conflict policy (now version {}).",
                what,
                obj,
                base_version,
                result.version,
            )
            self._report(request, message, messages.WARNING, _Outcome(written=True))
        elif result.status == Status.CONFLICT:
            url = reverse("admin:sync_conflict_change", args=[quote(str(result.conflict_id))])
            message = format_html(
                "The {} “{}” had changed since you opened it (at version {}), and your change "
                'overlaps: nothing was written. Your change waits in <a href="{}">this '
                "conflict</a>.",
                what,
                obj,
                base_version,
                url,
            )
            self._report(request, message, messages.WARNING, _Outcome(written=False))
        else:
            message = format_html(
                "The {} was not saved: {}", what, _errors_text(result.errors) or result.status
            )
            self._report(
                request, message, messages.ERROR, _Outcome(written=False, back_to_form=True)
            )

    def _report(self, request: HttpRequest, message: str, level: int, outcome: _Outcome) -> None:
        # Past the filter in message_user: a bulk delete reports several outcomes.
        super().message_user(request, message, level)
        setattr(request, _OUTCOME_ATTR, outcome)

    def _outcome(self, request: HttpRequest) -> _Outcome:
        outcome = getattr(request, _OUTCOME_ATTR, None)
        return outcome if isinstance(outcome, _Outcome) else _Outcome(written=False)

    def message_user(
        self,
        request: HttpRequest,
        message: str,
        level: int | str = messages.INFO,
        extra_tags: str = "",
        fail_silently: bool = False,
    ) -> None:
        # Once the service's outcome has been reported, Django's generic "was
        # changed successfully" would contradict a merge, a conflict or a no-op.
        if hasattr(request, _OUTCOME_ATTR) and level == messages.SUCCESS:
            return
        super().message_user(request, message, level, extra_tags, fail_silently)

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        if self._outcome(request).back_to_form:
            return HttpResponseRedirect(request.path)  # the add form: nothing was created
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        if self._outcome(request).back_to_form:
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if self._outcome(request).written:
            return super().log_addition(request, obj, message)
        return None

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if self._outcome(request).written:
            return super().log_change(request, obj, message)
        return None

    # --- deleting --------------------------------------------------------------

    def get_deleted_objects(
        self, objs: Sequence[Any], request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        # What the write service will do: the soft delete follows each
        # reference's on_delete (cascade, clear, or protect), by the same rules.
        preview = deletion_preview(
            scope=Scope.everything(request.user), stype=synced_type(self.model), objects=objs
        )
        deleted = [_object_link(stype, obj) for stype, obj in preview.deleted]
        deleted += [
            format_html("{} (its {} will be cleared)", _object_link(stype, obj), attname)
            for stype, obj, attname in preview.cleared
        ]
        counts: dict[str, int] = {}
        for stype, _ in preview.deleted:
            name = str(stype.model._meta.verbose_name_plural)
            counts[name] = counts.get(name, 0) + 1
        protected = [_object_link(stype, obj) for stype, obj in preview.blocking]
        return deleted, counts, set(), protected

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        return super().log_deletions(request, [o for o in queryset if not o.is_deleted])

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        result = self._delete(request, obj)
        if result is None:
            self._report(
                request,
                format_html("The {} “{}” was already deleted.", self.opts.verbose_name, obj),
                messages.INFO,
                _Outcome(written=False),
            )
        elif _deleted(result):
            self._report(
                request,
                format_html(
                    "The {} “{}” was deleted (version {}); devices will receive the deletion.",
                    self.opts.verbose_name,
                    obj,
                    result.version,
                ),
                messages.SUCCESS,
                _Outcome(written=True),
            )
        else:
            self._report_delete_refused(request, obj, result)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        deleted = 0
        for obj in queryset:
            result = self._delete(request, obj)
            if result is not None and _deleted(result):
                deleted += 1
            elif result is not None:
                self._report_delete_refused(request, obj, result)
        self._report(
            request,
            format_html(
                "Deleted {} {}; devices will receive the deletions.",
                deleted,
                self.opts.verbose_name_plural if deleted != 1 else self.opts.verbose_name,
            ),
            messages.SUCCESS,
            _Outcome(written=bool(deleted)),
        )

    def _report_delete_refused(
        self, request: HttpRequest, obj: Any, result: MutationResult
    ) -> None:
        """A delete that met a newer version (someone wrote since it was read)."""
        if result.status == Status.MERGED:  # the model's policy kept the object
            self._report(
                request,
                format_html(
                    "The {} “{}” had changed since it was read (at version {}); under its "
                    "conflict policy it was kept (version {}).",
                    self.opts.verbose_name,
                    obj,
                    obj.version,
                    result.version,
                ),
                messages.WARNING,
                _Outcome(written=False),
            )
        else:
            self._report_write(request, obj, result, base_version=obj.version)

    def _delete(self, request: HttpRequest, obj: Any) -> MutationResult | None:
        """Soft-delete one object at the version it was read at; None when it
        already was (deleting twice changes nothing)."""
        if obj.is_deleted:
            return None
        return services.object_write(
            user=request.user,
            mutation={
                "op": Op.DELETE,
                "model": synced_type(self.model).label,
                "id": str(obj.pk),
                "base_version": obj.version,
                "data": None,
            },
            reason=f"admin delete by {request.user.get_username()}",
        )


def _deleted(result: MutationResult) -> bool:
    # A stale delete may be "merged" and still leave the object (server_wins).
    return result.status in (Status.APPLIED, Status.MERGED) and result.data is None


def _errors_text(errors: dict[str, list[str]] | None) -> SafeString:
    return format_html_join(
        "; ", "{}: {}", ((name, " ".join(msgs)) for name, msgs in (errors or {}).items())
    )


def _object_link(stype: SyncedType, obj: Any) -> SafeString:
    opts = stype.model._meta
    return format_html(
        '{}: <a href="{}">{}</a>',
        capfirst(opts.verbose_name),
        reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)]),
        obj,
    )
