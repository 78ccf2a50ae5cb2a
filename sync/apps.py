from __future__ import annotations

from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"
    verbose_name = "Sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from sync import checks, tasks, writers  # noqa: F401 - checks; Celery tasks by name
        from sync.api import schema  # noqa: F401 - the OpenAPI description of tokens
        from sync.engine import capture
        from sync.notify import wakeups
        from syncbase import lookups  # noqa: F401 - registers `__any`
        from syncbase.request_log import install_record_factory

        install_record_factory()
        # Wake-ups of writes the database captured go out once they commit.
        writers.on_captured_commit(wakeups.enqueue_captured)
        # Every `migrate` installs the triggers that capture writes to synced
        # tables as the code describes them now (sync.engine.capture).
        post_migrate.connect(capture.on_migrate, sender=self, dispatch_uid="sync.capture")
