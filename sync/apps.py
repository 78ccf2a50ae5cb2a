from __future__ import annotations

from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"
    verbose_name = "Sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import capture, lookups  # noqa: F401 - lookups registers `__any`
        from .request_log import install_record_factory

        install_record_factory()
        # Every `migrate` installs the triggers that capture writes to synced
        # tables as the code describes them now (sync.capture).
        post_migrate.connect(capture.on_migrate, sender=self, dispatch_uid="sync.capture")
