from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from config import webapp

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("sync.urls_ops")),
    path("api/v1/", include("sync.urls")),
    # The technician web app (webapp/; built by `npm run build` there).
    path("app/", webapp.index, name="webapp"),
    path("app/<str:name>", webapp.asset, name="webapp-asset"),
]
