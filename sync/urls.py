from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("pull/", views.PullView.as_view(), name="sync-pull"),
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
