from __future__ import annotations

from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"
    verbose_name = "Sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import lookups  # noqa: F401 - registers `__any`
        from .request_log import install_record_factory

        install_record_factory()
