from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from sync import data_api
from sync.health import healthz, readyz
from sync.metrics import metrics_view
from sync.views import TokenView

api_v1 = [
    path("auth/token/", TokenView.as_view(), name="auth-token"),
    path("devices/", include("devices.urls")),
    path("sync/", include("sync.urls")),
    path("data/", include(data_api.urls())),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include(api_v1)),
]
