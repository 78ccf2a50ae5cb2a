"""Create (or update) a service account and print a new token for it: the
admin's "Service accounts" page, for scripts and first set-ups."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.accounts.services import service_account_channels_set, service_account_create, token_issue
from sync.models import ServiceAccount


class Command(BaseCommand):
    help = "Create or update a service account and print a new API token for it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--perm",
            action="append",
            default=[],
            help="A model permission, e.g. fieldwork.view_customer (repeatable).",
        )
        parser.add_argument(
            "--channel",
            action="append",
            default=[],
            help="Restrict the account to this channel (repeatable); none: it sees everything.",
        )
        parser.add_argument("--token-name", default="issued from the command line")
        parser.add_argument("--days", type=int, default=None, help="Token expiry; none: never.")

    def handle(self, *args: Any, **options: Any) -> None:
        account = ServiceAccount.objects.filter(user__username=options["username"]).first()
        if account is None:
            account = service_account_create(username=options["username"])
        perms = []
        for name in options["perm"]:
            app_label, _, codename = name.partition(".")
            perm = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if perm is None:
                raise CommandError(f"No permission {name!r}")
            perms.append(perm)
        if perms:
            account.user.user_permissions.add(*perms)
        account.restricted = bool(options["channel"])
        account.save(update_fields=["restricted"])
        service_account_channels_set(account=account, channels=set(options["channel"]))
        days = options["days"]
        _, secret = token_issue(
            user=account.user,
            name=options["token_name"],
            ttl=dt.timedelta(days=days) if days else None,
        )
        self.stdout.write(secret)
