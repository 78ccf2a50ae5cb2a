from __future__ import annotations

from django.core.management.base import BaseCommand

from sync.engine.compaction import feed_compact


class Command(BaseCommand):
    help = (
        "Compact the change feed now: drop superseded rows, tombstones older than "
        "SYNC_RETENTION_DAYS and stored push results older than SYNC_MUTATION_LOG_DAYS. "
        "Celery beat runs the same every SYNC_COMPACT_EVERY_HOURS."
    )

    def handle(self, *args: object, **options: object) -> None:
        stats = feed_compact()
        self.stdout.write(
            self.style.SUCCESS(
                f"Removed {stats['superseded']} superseded changes, {stats['tombstones']} "
                f"expired tombstones and {stats['mutation_records']} old push results."
            )
        )
