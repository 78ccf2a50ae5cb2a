"""Files in the admin: the blob list (what is stored, how big, by whom), and
a staff-only view of a file's bytes that the conflict resolve page uses to
show two clashing photos side by side."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.html import format_html

from sync.admin.guards import GuardedAdmin
from sync.engine.blobstore import S3Store, disposition, store
from sync.fields import SHA256
from sync.models import Blob


def content_url(sha256: str) -> str:
    return reverse("admin:sync_blob_content", args=[sha256])


def blob_html(value: Any, blob: Blob | None = None) -> str:
    """A file reference on an admin page: the image (its thumbnail when there
    is one) when it is an uploaded image, else its name; name, size and state
    under it. `blob`: the file's row when the caller has it (a list page)."""
    if not isinstance(value, dict) or not isinstance(value.get("sha256"), str):
        return format_html("{}", "(empty)" if value is None else str(value))
    sha = value["sha256"]
    if blob is None and SHA256.fullmatch(sha):
        blob = Blob.objects.filter(pk=sha).select_related("thumbnail").first()
    name = str(value.get("name") or sha[:12])
    size = value.get("size")
    caption = f"{name} · {filesizeformat(size) if isinstance(size, int) else '?'}"
    if blob is None or blob.state != Blob.State.COMPLETE:
        state = "not uploaded yet" if blob is None else "uploading"
        return format_html(
            '<figure class="blob" data-sha256="{}"><figcaption>{} ({})</figcaption></figure>',
            sha,
            caption,
            state,
        )
    if blob.content_type.startswith("image/"):
        shown = blob.thumbnail or blob
        return format_html(
            '<figure class="blob" data-sha256="{}"><a href="{}"><img src="{}" alt="{}" '
            'loading="lazy"></a><figcaption>{}</figcaption></figure>',
            sha,
            content_url(sha),
            content_url(shown.sha256),
            name,
            caption,
        )
    return format_html(
        '<figure class="blob" data-sha256="{}"><a href="{}">{}</a></figure>',
        sha,
        content_url(sha),
        caption,
    )


@admin.register(Blob)
class BlobAdmin(GuardedAdmin):
    list_display = (
        "short",
        "preview",
        "content_type",
        "size_shown",
        "state",
        "uploaded_by",
        "created_at",
    )
    list_filter = ("state", "is_thumbnail", "content_type")
    list_select_related = ("thumbnail", "uploaded_by")
    search_fields = ("sha256", "uploaded_by__username")
    readonly_fields = (
        "sha256",
        "preview",
        "size",
        "content_type",
        "state",
        "uploaded_by",
        "thumbnail",
        "is_thumbnail",
        "created_at",
        "completed_at",
    )
    fields = readonly_fields
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="sha256")
    def short(self, blob: Blob) -> str:
        return f"{blob.sha256[:12]}…"

    @admin.display(description="size", ordering="size")
    def size_shown(self, blob: Blob) -> str:
        return filesizeformat(blob.size)

    @admin.display(description="preview")
    def preview(self, blob: Blob) -> str:
        return blob_html(
            {
                "sha256": blob.sha256,
                "size": blob.size,
                "content_type": blob.content_type,
                "name": "",
            },
            blob,
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<str:sha256>/content/",
                self.admin_site.admin_view(self.content_view),
                name="sync_blob_content",
            ),
            *super().get_urls(),
        ]

    def content_view(self, request: HttpRequest, sha256: str) -> HttpResponseBase:
        """The bytes, for staff who may look at files or at conflicts."""
        if not (self.has_view_permission(request) or request.user.has_perm("sync.view_conflict")):
            raise PermissionDenied
        if not SHA256.fullmatch(sha256):
            raise Http404("No such file.")
        blob = Blob.objects.filter(pk=sha256, state=Blob.State.COMPLETE).first()
        if blob is None:
            raise Http404("No such file.")
        bytes_store = store()
        if isinstance(bytes_store, S3Store):
            return HttpResponseRedirect(bytes_store.download_url(blob, blob.sha256, request))
        response = FileResponse(bytes_store.open(blob.key), content_type=blob.content_type)
        response["Content-Disposition"] = disposition(blob.sha256).replace(
            "attachment", "inline", 1
        )
        response["Content-Security-Policy"] = "sandbox; default-src 'none'"
        response["X-Content-Type-Options"] = "nosniff"
        return response
