from __future__ import annotations

from django.apps import AppConfig


class FieldworkConfig(AppConfig):
    name = "fieldwork"
    verbose_name = "Field work (demo domain)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from fieldwork import sync_registration  # noqa: F401
