"""Staff manage service accounts, issue their tokens (shown once) and revoke
tokens; on the user list, export a user's data or erase it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from sync import registry
from sync.accounts.services import (
    service_account_channels_set,
    service_account_create,
    token_issue,
    token_revoke,
)
from sync.admin.guards import GuardedAdmin
from sync.channels import own_channel, user_channels
from sync.engine.privacy import (
    ErasureFailed,
    export_json,
    user_data_erase,
    user_data_export,
    user_data_summary,
)
from sync.models import ServiceAccount, Token


def synced_model_permissions() -> QuerySet:
    """The view/add/change/delete permissions of every synced model."""
    types = ContentType.objects.get_for_models(*[t.model for t in registry.all_types()])
    return Permission.objects.filter(content_type__in=types.values()).select_related("content_type")


class ServiceAccountForm(forms.ModelForm):
    username = forms.SlugField(max_length=150, help_text="The account's name in logs and history.")
    channels = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="For a restricted account: the channels it may see and write, comma or "
        "line separated (e.g. team:<id>).",
    )
    permissions = forms.ModelMultipleChoiceField(
        queryset=Permission.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="What it may do per model in the data API.",
    )

    class Meta:
        model = ServiceAccount
        fields = ["description", "restricted"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        permissions = self.fields["permissions"]
        assert isinstance(permissions, forms.ModelMultipleChoiceField)  # noqa: S101 - for mypy
        permissions.queryset = synced_model_permissions()
        if self.instance.pk:
            user = self.instance.user
            self.fields["username"].initial = user.username
            self.fields["username"].disabled = True
            self.fields["channels"].initial = ", ".join(
                sorted(user_channels(user.pk) - {own_channel(user.pk)})
            )
            self.fields["permissions"].initial = list(
                user.user_permissions.values_list("pk", flat=True)
            )

    def clean_channels(self) -> set[str]:
        raw = self.cleaned_data.get("channels") or ""
        channels = {c.strip() for c in raw.replace("\n", ",").split(",") if c.strip()}
        bad = [c for c in channels if ":" not in c or len(c) > 120]
        if bad:
            raise forms.ValidationError(f"Not a channel: {', '.join(sorted(bad))}")
        return channels


@admin.register(ServiceAccount)
class ServiceAccountAdmin(GuardedAdmin):
    form = ServiceAccountForm
    list_display = ("__str__", "description", "restricted", "tokens", "issue_link")
    search_fields = ("user__username", "description")
    list_select_related = ("user",)

    fields = ("username", "description", "restricted", "channels", "permissions")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(token_count=Count("user__auth_token_set"))

    @admin.display(description="tokens")
    def tokens(self, obj: ServiceAccount) -> str:
        url = reverse("admin:sync_token_changelist") + f"?user__id__exact={obj.user_id}"
        return format_html('<a href="{}">{}</a>', url, getattr(obj, "token_count", 0))

    @admin.display(description="")
    def issue_link(self, obj: ServiceAccount) -> str:
        url = reverse("admin:sync_serviceaccount_issue", args=[obj.pk])
        return format_html('<a class="button" href="{}">Issue a token</a>', url)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            created = service_account_create(
                username=form.cleaned_data["username"],
                description=obj.description,
                restricted=obj.restricted,
            )
            obj.pk, obj.user = created.pk, created.user
        else:
            obj.save()
        obj.user.user_permissions.set(form.cleaned_data["permissions"])
        service_account_channels_set(
            account=obj, channels=form.cleaned_data["channels"] if obj.restricted else set()
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:account_id>/issue/",
                self.admin_site.admin_view(self.issue_view),
                name="sync_serviceaccount_issue",
            ),
            *super().get_urls(),
        ]

    def issue_view(self, request: HttpRequest, account_id: int) -> HttpResponse:
        """Issue a token and show its secret once: only its digest is stored."""
        account = get_object_or_404(ServiceAccount.objects.select_related("user"), pk=account_id)
        if not self.has_change_permission(request, account):
            raise PermissionDenied
        form = IssueTokenForm(request.POST or None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Issue a token for {account}",
            "account": account,
            "form": form,
        }
        if request.method == "POST" and form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            _, secret = token_issue(
                user=account.user,
                name=form.cleaned_data["name"],
                ttl=dt.timedelta(days=days) if days else None,
                created_by=request.user,
            )
            messages.warning(
                request, "Copy the token now: it is not stored and cannot be shown again."
            )
            context["secret"] = secret
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/sync/serviceaccount/issue.html", context)


class IssueTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. “ERP nightly import”.")
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, help_text="Empty: it never expires."
    )


@admin.register(Token)
class TokenAdmin(GuardedAdmin):
    """Tokens are listed (never shown: only a digest is stored) and revoked here."""

    list_display = (
        "key_prefix",
        "name",
        "user",
        "created",
        "expiry",
        "last_used_at",
        "sliding",
        "created_by",
    )
    list_display_links = None
    list_filter = ("sliding",)
    search_fields = ("user__username", "name", "=token_key")
    list_select_related = ("user", "created_by")
    actions = ["revoke"]

    @admin.display(description="token")
    def key_prefix(self, obj: Token) -> str:
        return f"{obj.token_key[:8]}…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # issued from a service account's page, or by logging in

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Revoke selected tokens", permissions=["delete"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for token in queryset:
            token_revoke(token=token)
            count += 1
        messages.success(request, f"{count} token(s) revoked.")


class UserDataActions(admin.ModelAdmin):
    """A user's data export and erasure (sync/engine/privacy.py), as actions of
    the project's user admin, whatever its class.

    Exporting needs the change permission on users (the file holds everything
    of theirs); erasing needs the delete permission, and a confirmation.
    """

    actions = ["export_data", "erase_data"]

    @admin.action(description="Export data (JSON)", permissions=["change"])
    def export_data(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        users = list(queryset[:2])
        if len(users) != 1:
            messages.error(request, "Select one user to export their data.")
            return None
        user = users[0]
        response = HttpResponse(
            export_json(user_data_export(user=user)), content_type="application/json"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="user-{user.pk}-data.json"'  # the id: no name in a file name
        )
        self.log_change(request, user, "Exported the user's data.")
        return response

    @admin.action(description="Erase data…", permissions=["delete"])
    def erase_data(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        users = list(queryset.order_by("pk"))
        if any(u.pk == request.user.pk for u in users):
            messages.error(request, "You cannot erase your own data from here.")
            return None
        if request.POST.get("post") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Erase users' data",
                "items": [(u, user_data_summary(user=u)) for u in users],
                "action": "erase_data",
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            }
            request.current_app = self.admin_site.name
            return TemplateResponse(request, "admin/auth/user/erase_confirm.html", context)
        for user in users:
            try:
                report = user_data_erase(user=user, by=request.user)
            except ErasureFailed as exc:
                messages.error(request, f"User {user.pk}: {exc}")
                continue
            self.log_change(request, user, "Erased the user's data.")
            messages.success(
                request,
                f"Erased the data of user {user.pk} (now {user.get_username()}): "
                f"{sum(report.deleted.values())} object(s) deleted on devices, "
                f"{sum(report.purged.values())} row(s) removed.",
            )
        return None


def extend_user_admin(site: admin.AdminSite = admin.site) -> bool:
    """Add the data actions to the user model's admin as the project
    registered it (keeping its class and options); False if the user model
    has no admin yet (sync listed before django.contrib.auth: check sync.W104)."""
    user_model = get_user_model()
    current = site._registry.get(user_model)
    if current is None or isinstance(current, UserDataActions):
        return isinstance(current, UserDataActions)
    # Guarded too: the user model's admin sits among ours and gets the same
    # hostile URLs (a NUL byte in its search was a 500 on PostgreSQL).
    extended = type(
        type(current).__name__,
        (UserDataActions, GuardedAdmin, type(current)),
        {"actions": [*(type(current).actions or []), *UserDataActions.actions]},
    )
    site.unregister(user_model)
    site.register(user_model, extended)
    return True


extend_user_admin()
