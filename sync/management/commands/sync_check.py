from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.engine.integrity import CHUNK, integrity_check


class Command(BaseCommand):
    help = (
        "Check the sync invariants: versions against history, the change feed against "
        "current versions (allowing for compaction), open conflicts, references between "
        "synced objects and stored push results. Lists each problem and exits 1 if any."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=CHUNK,
            help=f"Objects read per query (default {CHUNK}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = integrity_check(chunk_size=options["chunk_size"])
        if report.ok:
            self.stdout.write(self.style.SUCCESS(f"sync_check ok: {report.summary()}"))
            return
        for problem in report.problems:
            self.stdout.write(str(problem))
        raise CommandError(
            f"sync_check found {len(report.problems)} problem(s) in {report.summary()}"
        )
