from __future__ import annotations

from django.urls import include, path

from config.urls import urlpatterns as product

urlpatterns = [*product, path("bench/baseline/", include("bench.baseline"))]
