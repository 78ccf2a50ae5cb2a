"""The hand-rolled baseline: what a team writes first for "give me what changed".

A DRF ModelViewSet per model, its list filtered by `updated_at > since` for the
caller's own objects, with page-number pagination and a ModelSerializer. The
HTTP bench pages through it for the same user and data as an initial sync.
Served only by `bench.settings` (never by the product's URLs).
"""

from __future__ import annotations

from typing import Any

from django.urls import include, path
from rest_framework import pagination, serializers, viewsets
from rest_framework.routers import SimpleRouter

from fieldwork.models import Customer, Note, WorkOrder


class Pages(pagination.PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


def viewset(model: Any) -> type[viewsets.ReadOnlyModelViewSet]:
    serializer = type(
        f"{model.__name__}Serializer",
        (serializers.ModelSerializer,),
        {"Meta": type("Meta", (), {"model": model, "fields": "__all__"})},
    )

    class ViewSet(viewsets.ReadOnlyModelViewSet):
        serializer_class = serializer
        pagination_class = Pages

        def get_queryset(self) -> Any:
            qs = model.objects.filter(owner=self.request.user).order_by("updated_at", "id")
            since = self.request.query_params.get("since")
            return qs.filter(updated_at__gt=since) if since else qs

    return ViewSet


router = SimpleRouter()
for name, model in (("customers", Customer), ("workorders", WorkOrder), ("notes", Note)):
    router.register(name, viewset(model), basename=f"baseline-{name}")

urlpatterns = [path("", include(router.urls))]
