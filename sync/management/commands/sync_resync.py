from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from sync import registry
from sync.engine.versions import resync


class Command(BaseCommand):
    help = (
        "Make every device fetch these models again at its next pull (a targeted re-sync: "
        "its other models keep their place). Run it after changing rows in a way the feed "
        "did not carry: a column backfilled with the capture set aside, a restore."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("models", nargs="+", help="Model labels, e.g. fieldwork.equipment.")
        parser.add_argument("--reason", default="", help="Why, for the admin's record.")

    def handle(self, *args: Any, **options: Any) -> None:
        labels = [label.lower() for label in options["models"]]
        unknown = [label for label in labels if registry.get(label) is None]
        if unknown:
            known = ", ".join(t.label for t in registry.all_types())
            raise CommandError(f"Not synced model(s): {', '.join(unknown)}. Synced: {known}.")
        for label in labels:
            number = resync(label, reason=options["reason"])
            done = f"{label}: re-sync #{number}; devices fetch it at their next pull."
            self.stdout.write(self.style.SUCCESS(done))
