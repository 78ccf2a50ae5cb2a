"""The whole HTTP API, for a project to mount once:

    path("api/v1/", include("sync.urls")),

- `auth/token/`: a login's token; `auth/logout/`: revoking it; `devices/`: the app installations;
- `sync/`: pull, push, discovery and the app's conflicts (docs/protocol.md);
- `data/`: the back-office API, one resource per synced model;
- `schema/` and `docs/`: the OpenAPI document and its Swagger UI.

Probes and metrics are separate (`sync.urls_ops`), usually mounted at the root.
"""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from sync.api import blobs, data, devices, live, views
from sync.api.openapi import SCHEMA_SETTINGS

sync_patterns = [
    path("pull/", views.PullView.as_view(), name="sync-pull"),
    # The same page, waiting for a change when there is none (async: sync.api.live).
    path("live/", live.live_pull, name="sync-live"),
    path("push/", views.PushView.as_view(), name="sync-push"),
    path("models/", views.ModelsView.as_view(), name="sync-models"),
    path("conflicts/", views.ConflictsView.as_view(), name="sync-conflicts"),
    path("conflicts/<uuid:conflict_id>/", views.ConflictDetailView.as_view(), name="sync-conflict"),
    path(
        "conflicts/<uuid:conflict_id>/resolve/",
        views.ConflictResolveView.as_view(),
        name="sync-conflict-resolve",
    ),
]

blob_patterns = [
    path("", blobs.BlobLimitsView.as_view(), name="blob-limits"),
    path("uploads/", blobs.UploadsView.as_view(), name="blob-uploads"),
    path("uploads/<uuid:upload_id>/", blobs.UploadView.as_view(), name="blob-upload"),
    path(
        "uploads/<uuid:upload_id>/complete/",
        blobs.UploadCompleteView.as_view(),
        name="blob-upload-complete",
    ),
    path(
        "uploads/<uuid:upload_id>/parts/<int:number>/",
        blobs.PartView.as_view(),
        name="blob-part",
    ),
    path("<str:sha256>/", blobs.BlobView.as_view(), name="blob"),
    path("<str:sha256>/content/", blobs.ContentView.as_view(), name="blob-content"),
]

device_patterns = [
    path("", devices.DeviceListView.as_view(), name="device-list"),
    path("<uuid:device_id>/", devices.DeviceDetailView.as_view(), name="device-detail"),
    path("webpush-key/", devices.WebPushKeyView.as_view(), name="device-webpush-key"),
]

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="auth-token"),
    path("auth/logout/", views.LogoutView.as_view(), name="auth-logout"),
    path("devices/", include(device_patterns)),
    path("blobs/", include(blob_patterns)),
    path("sync/", include(sync_patterns)),
    path("data/", include(data.urls())),
    # Not described in the document themselves (schema=None), whatever the
    # project's DEFAULT_SCHEMA_CLASS.
    path(
        "schema/",
        SpectacularAPIView.as_view(custom_settings=SCHEMA_SETTINGS, schema=None),
        name="schema",
    ),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema", schema=None), name="docs"),
]
