"""A user's data on their request: `user_data export <username> [--out FILE]`
writes it as JSON; `user_data erase <username> --yes` erases it (see
sync/engine/privacy.py for what that covers). The admin's user list has the same
two actions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.engine.privacy import (
    ErasureFailed,
    export_json,
    user_data_erase,
    user_data_export,
    user_data_summary,
)


class Command(BaseCommand):
    help = "Export a user's data as JSON, or erase it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["export", "erase"])
        parser.add_argument("username")
        parser.add_argument("--out", help="export: write here instead of standard output")
        parser.add_argument("--yes", action="store_true", help="erase: yes, really")
        parser.add_argument(
            "--by",
            help="erase: the staff member doing it (the author of the deletes); "
            "default: written as the user themselves",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()._default_manager
        user = users.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r}")
        if options["action"] == "export":
            body = export_json(user_data_export(user=user))
            if options["out"]:
                Path(options["out"]).write_bytes(body)
                self.stderr.write(f"Wrote {len(body)} bytes to {options['out']}")
            else:
                self.stdout.write(body.decode())
            return
        if not options["yes"]:
            summary = ", ".join(f"{k}: {v}" for k, v in user_data_summary(user=user).items())
            raise CommandError(
                f"This erases the data of {user.get_username()} ({summary}) for good; "
                "add --yes to go ahead."
            )
        by = None
        if options["by"]:
            by = users.filter(username=options["by"], is_staff=True).first()
            if by is None:
                raise CommandError(f"No staff member {options['by']!r}")
        try:
            report = user_data_erase(user=user, by=by)
        except ErasureFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Erased the data of user {user.pk}, now {user.get_username()}:")
        sections: list[tuple[str, dict[str, int]]] = [
            ("deleted through the write service", report.deleted),
            ("rows removed", report.purged),
            ("rows kept, emptied (other users' objects reference them)", report.emptied),
        ]
        for heading, counts in sections:
            if counts:
                self.stdout.write(f"  {heading}:")
                for label, n in sorted(counts.items()):
                    self.stdout.write(f"    {label}: {n}")
