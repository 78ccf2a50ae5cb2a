"""Probes and metrics, for a project to mount at its root:

    path("", include("sync.urls_ops")),

`healthz` (the process answers), `readyz` (database, cache and broker answer)
and `metrics` (Prometheus; see METRICS_TOKEN and METRICS_ALLOWED_IPS).
"""

from __future__ import annotations

from django.urls import path

from sync.api.metrics import metrics_view
from syncbase.health import healthz, readyz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]
