from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.DeviceListView.as_view(), name="device-list"),
    path("<uuid:device_id>/", views.DeviceDetailView.as_view(), name="device-detail"),
]
