"""`python -m client`: the reference client from a terminal.

    python -m client --state-dir /tmp/phone login demo        # asks for the password
    python -m client --state-dir /tmp/phone register --name "test phone"
    python -m client --state-dir /tmp/phone sync
    python -m client --state-dir /tmp/phone list workorder
    python -m client --state-dir /tmp/phone edit workorder <id> status=done
    python -m client --state-dir /tmp/phone status
    python -m client --state-dir /tmp/phone follow                 # live, until Ctrl-C

State (server URL, token, device id, local store) lives in the state
directory: `--state-dir`, else `$SYNC_STATE_DIR`, else `~/.sync-client`. The
server is `--url`, else `$SYNC_URL`, else the one used at login; live pulls
go to `--live-url`, else `$SYNC_LIVE_URL`, else the one kept, else the server.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bar
from rich.table import Table

from client.errors import (
    ApiError,
    ClientError,
    NetworkError,
    NotLoggedIn,
    UpgradeRequired,
    ValidationError,
)
from client.http import Deprecation
from client.schema import ModelSpec
from client.sync import Progress, SyncClient, SyncReport

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DEFAULT_STATE_DIR = "~/.sync-client"
TRUE, FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state_dir = args.state_dir or os.environ.get("SYNC_STATE_DIR") or DEFAULT_STATE_DIR
    url = args.url or os.environ.get("SYNC_URL")
    live_url = args.live_url or os.environ.get("SYNC_LIVE_URL")
    try:
        with SyncClient(state_dir, base_url=url, live_url=live_url) as client:
            handler: Callable[[SyncClient, argparse.Namespace], int | None] = args.handler
            return handler(client, args) or 0
    except NotLoggedIn as exc:
        err.print(f"[red]Not logged in[/] ({exc}). Run: python -m client login USERNAME")
    except ValidationError as exc:
        err.print("[red]Not saved:[/] " + _errors_text(exc.errors))
    except UpgradeRequired as exc:
        where = f" ({exc.upgrade_url})" if exc.upgrade_url else ""
        err.print(
            f"[red]This app version can no longer sync:[/] upgrade to {exc.minimum_version} "
            f"or later{where}. Pending edits were sent first; local data is kept."
        )
    except ApiError as exc:
        wait = f" Try again in {exc.retry_after:.0f} s." if exc.retry_after else ""
        err.print(f"[red]The server refused ({exc.status} {exc.code}):[/] {exc.detail}{wait}")
    except NetworkError as exc:
        err.print(f"[red]The server is unreachable[/] ({exc}). Local edits are kept.")
    except ClientError as exc:
        err.print(f"[red]{exc}[/]")
    except BrokenPipeError:
        # The reader stopped reading (`| head -n 1`): what it wanted it got.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", help=f"this device's state (default {DEFAULT_STATE_DIR})")
    parser.add_argument("--url", help="the server (default $SYNC_URL, else the one logged in to)")
    parser.add_argument(
        "--live-url", help="where live pulls are served, if not by the server ($SYNC_LIVE_URL)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[..., int | None], helptext: str) -> Any:
        sub = commands.add_parser(name, help=helptext, description=helptext)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("login", cmd_login, "log in and keep the token")
    sub.add_argument("username")
    sub.add_argument("--password", help="default: $SYNC_PASSWORD, else asked for")
    sub = command("logout", cmd_logout, "send pending edits, then sign out and forget local data")
    sub.add_argument("--everywhere", action="store_true", help="revoke every token of the user")
    sub.add_argument("--discard-unsent", action="store_true", help="drop edits not yet sent")
    sub = command("register", cmd_register, "register this device (done by the first sync too)")
    sub.add_argument("--platform", choices=["android", "ios", "web"], default="android")
    sub.add_argument("--name")
    command("models", cmd_models, "the synced models and their fields (discovery)")
    sub = command("list", cmd_list, "list local records of a model")
    sub.add_argument("model")
    sub.add_argument("--fields", help="comma-separated fields to show")
    sub.add_argument("--ids", action="store_true", help="only the ids, one a line (for scripts)")
    sub = command("show", cmd_show, "one record, as JSON")
    sub.add_argument("model")
    sub.add_argument("id")
    sub = command("create", cmd_create, "create a record offline: field=value (or field:=json)")
    sub.add_argument("model")
    sub.add_argument("values", nargs="*", metavar="FIELD=VALUE")
    sub = command("edit", cmd_edit, "change fields of a record offline")
    sub.add_argument("model")
    sub.add_argument("id")
    sub.add_argument("values", nargs="+", metavar="FIELD=VALUE")
    sub = command("delete", cmd_delete, "delete a record offline")
    sub.add_argument("model")
    sub.add_argument("id")
    sub = command("sync", cmd_sync, "push pending edits, then pull what changed")
    sub.add_argument("--page-size", type=int, default=500)
    sub = command("follow", cmd_follow, "sync, then follow live changes until Ctrl-C")
    sub.add_argument("--wait", type=int, default=30, help="seconds a live pull waits (30)")
    sub.add_argument(
        "--poll-every", type=float, default=60.0, help="seconds between syncs without them (60)"
    )
    command("status", cmd_status, "pending edits, last sync, open conflicts")
    sub = command("conflicts", cmd_conflicts, "this user's conflicts (from the server)")
    sub.add_argument("--local", action="store_true", help="do not ask the server")
    sub = command("resolve", cmd_resolve, "settle a conflict: server, client or fields")
    sub.add_argument("conflict_id")
    sub.add_argument("choice", choices=["server", "client", "fields"])
    sub.add_argument("values", nargs="*", metavar="FIELD=VALUE", help="for `fields`")
    sub.add_argument("--note", default="")
    sub = command("rejections", cmd_rejections, "edits the server refused, with its reasons")
    sub.add_argument("--dismiss", metavar="MUTATION_ID")
    return parser


# --- commands ---------------------------------------------------------------


def cmd_login(client: SyncClient, args: argparse.Namespace) -> None:
    password = args.password or os.environ.get("SYNC_PASSWORD") or getpass.getpass()
    client.login(args.username, password)
    out.print(f"Logged in to {client.server} as [bold]{args.username}[/].")


def cmd_logout(client: SyncClient, args: argparse.Namespace) -> None:
    revoked = client.logout(everywhere=args.everywhere, discard_unsent=args.discard_unsent)
    out.print(f"Logged out ({revoked} token(s) revoked); this device's local data is gone.")


def cmd_register(client: SyncClient, args: argparse.Namespace) -> None:
    device_id = client.register_device(platform=args.platform, name=args.name)
    out.print(f"Device {device_id} registered ({args.platform}).")


def cmd_models(client: SyncClient, args: argparse.Namespace) -> None:
    for label, spec in client.refresh_models().items():
        table = Table(title=f"{label}  (policy {spec.conflict_policy})", title_justify="left")
        for column in ("field", "type", "required", "details"):
            table.add_column(column)
        for name, f in spec.fields.items():
            details = []
            if f.read_only:
                details.append("read-only")
            if f.nullable:
                details.append("nullable")
            if f.choices:
                details.append("one of " + "|".join(map(str, f.choices)))
            if f.model:
                details.append(f"→ {f.model}")
            if f.max_length:
                details.append(f"≤ {f.max_length} chars")
            if f.format:
                details.append(f.format)
            if f.has_default:
                details.append(f"default {json.dumps(f.default)}")
            table.add_row(name, f.type, "yes" if f.required else "", ", ".join(details))
        out.print(table)


def cmd_list(client: SyncClient, args: argparse.Namespace) -> None:
    spec = client.spec(args.model)
    rows = client.all(spec.label)
    pending = {m.object_id: m.op for m in client.store.pending() if m.model == spec.label}
    if args.ids:
        sys.stdout.write("".join(f"{object_id}\n" for _, object_id in rows))
        sys.stdout.flush()
        return
    fields = args.fields.split(",") if args.fields else _summary_fields(spec)
    table = Table(title=f"{spec.label}: {len(rows)}", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=36)
    for name in fields:
        table.add_column(name)
    table.add_column("")
    for (_, object_id), data in rows.items():
        mark = f"[yellow]{pending[object_id]} pending[/]" if object_id in pending else ""
        table.add_row(object_id, *(_cell(data.get(name)) for name in fields), mark)
    out.print(table)


def cmd_show(client: SyncClient, args: argparse.Namespace) -> None:
    data = client.get(args.model, args.id)
    if data is None:
        err.print("No such record here.")
        return
    out.print_json(json.dumps(data))


def cmd_create(client: SyncClient, args: argparse.Namespace) -> None:
    spec = client.spec(args.model)
    object_id = client.create(spec.label, _values(spec, args.values))
    out.print(f"Created {spec.label} {object_id} (pending; run `sync`).")


def cmd_edit(client: SyncClient, args: argparse.Namespace) -> None:
    spec = client.spec(args.model)
    if client.update(spec.label, args.id, _values(spec, args.values)) is None:
        out.print("Nothing changed.")
    else:
        out.print("Saved locally (pending; run `sync`).")


def cmd_delete(client: SyncClient, args: argparse.Namespace) -> None:
    spec = client.spec(args.model)
    client.delete(spec.label, args.id)
    out.print("Deleted locally (pending; run `sync`).")


def cmd_sync(client: SyncClient, args: argparse.Namespace) -> None:
    client.page_size = args.page_size
    with _ProgressBar() as bar:
        report = client.sync(progress=bar.update)
    out.print(_report_text(report))
    for mutation_id in report.rejected:
        rejection = next(r for r in client.rejections() if r.mutation_id == mutation_id)
        out.print(
            f"  [red]rejected[/] {rejection.op} {rejection.model} {rejection.object_id}: "
            + _errors_text(rejection.errors)
        )
    for conflict_id in report.conflicts:
        out.print(
            f"  [yellow]conflict[/] {conflict_id}: `resolve {conflict_id} server|client|fields`"
        )
    if client.deprecation is not None:
        out.print(_deprecation_text(client.deprecation))


def cmd_follow(client: SyncClient, args: argparse.Namespace) -> None:
    out.print(f"Following {client.live_server} (Ctrl-C to stop).")

    def synced(report: SyncReport) -> None:
        out.print(f"{datetime.now().astimezone():%H:%M:%S} {_report_text(report)}")

    try:
        # Nothing sets the event: Ctrl-C ends it, which is safe anywhere.
        client.follow(threading.Event(), wait=args.wait, poll_every=args.poll_every, on_sync=synced)
    except KeyboardInterrupt:
        out.print("Stopped.")


def cmd_status(client: SyncClient, args: argparse.Namespace) -> None:
    status = client.status()
    out.print(f"server      {status.server}")
    out.print(f"user        {status.username or '(not logged in)'}")
    out.print(f"device      {status.device_id or '(not registered)'}")
    synced = status.last_sync or "never"
    if status.last_sync and not status.initial_sync_done:
        synced += " (initial sync not finished)"
    out.print(f"last sync   {synced}")
    out.print(f"objects     {status.objects}")
    out.print(f"pending     {len(status.pending)}")
    for m in status.pending:
        sent = " (sent, awaiting its result)" if m.sent else ""
        out.print(f"  {m.op} {m.model} {m.object_id} {json.dumps(m.data) if m.data else ''}{sent}")
    out.print(f"conflicts   {len(status.open_conflicts)} open")
    for c in status.open_conflicts:
        out.print(
            f"  {c.conflict_id} {c.op} {c.model} {c.object_id} yours: {json.dumps(c.client_data)}"
        )
    if status.rejections:
        out.print(f"rejected    {len(status.rejections)} (see `rejections`)")
    if status.deprecation is not None:
        out.print(_deprecation_text(status.deprecation))


def cmd_conflicts(client: SyncClient, args: argparse.Namespace) -> None:
    conflicts = client.conflicts("open") if args.local else client.refresh_conflicts()
    if not conflicts:
        out.print("No open conflicts.")
    for c in conflicts:
        out.print(f"[bold]{c.conflict_id}[/] {c.op} {c.model} {c.object_id}")
        if not args.local:
            details = client.conflict_details(c.conflict_id)
            server, base = details.get("server_data") or {}, details.get("base_data") or {}
            mine = details.get("client_data") or {}
            for name in details.get("fields") or []:
                out.print(
                    f"  {name}: base {_cell(base.get(name))} | server {_cell(server.get(name))}"
                    f" | yours {_cell(mine.get(name))}"
                )


def cmd_resolve(client: SyncClient, args: argparse.Namespace) -> None:
    values = None
    if args.choice == "fields":
        model = client.conflict_details(args.conflict_id)["model"]
        values = _values(client.spec(model), args.values)
    answer = client.resolve(args.conflict_id, args.choice, values, note=args.note)
    obj = answer["object"]
    out.print(f"Resolved: {obj['model']} {obj['id']} is now version {obj['version']}.")


def cmd_rejections(client: SyncClient, args: argparse.Namespace) -> None:
    if args.dismiss:
        client.dismiss_rejection(args.dismiss)
        return
    rejections = client.rejections()
    if not rejections:
        out.print("Nothing was rejected.")
    for r in rejections:
        out.print(f"{r.mutation_id} {r.op} {r.model} {r.object_id}: {_errors_text(r.errors)}")


# --- helpers ----------------------------------------------------------------


class _ProgressBar:
    """A bar for syncs that take more than a page; nothing for quick ones."""

    def __init__(self) -> None:
        self._bar: Bar | None = None
        self._task: Any = None

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, progress: Progress) -> None:
        if self._bar is None:
            if progress.remaining == 0:
                return
            self._bar = Bar(
                TextColumn("initial sync" if progress.initial else "pulling"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("pull", total=progress.total)
        self._bar.update(self._task, completed=progress.pulled, total=progress.total)


def _report_text(report: SyncReport) -> str:
    pushed = ", ".join(f"{n} {status}" for status, n in sorted(report.pushed.items()))
    kind = "initial sync" if report.initial else "sync"
    if report.resynced:
        kind = "full resync (the server no longer had our position)"
    elif report.refetched:
        kind = f"sync, fetching {', '.join(report.refetched)} again"
    return f"{kind}: pushed {pushed or 'nothing'}; pulled {report.pulled} changes."


def _deprecation_text(notice: Deprecation) -> str:
    by = f" by {notice.sunset_at:%Y-%m-%d}" if notice.sunset_at else ""
    where = f": {notice.url}" if notice.url else ""
    return f"[yellow]This app version is deprecated; please update{by}{where}[/]"


def _values(spec: ModelSpec, items: Sequence[str]) -> dict[str, Any]:
    """`field=value` typed by discovery (`estimated_hours=2.5` is a number), or
    `field:=json` taken as JSON (`team:=null`)."""
    values: dict[str, Any] = {}
    for item in items:
        if ":=" in item:
            name, raw = item.split(":=", 1)
            values[name] = json.loads(raw)
            continue
        if "=" not in item:
            raise ClientError(f"{item!r}: expected FIELD=VALUE")
        name, raw = item.split("=", 1)
        field = spec.fields.get(name)
        kind = field.type if field else "string"
        if raw == "null" and field is not None and field.nullable:
            values[name] = None
        elif kind == "integer" or (kind == "reference" and field and field.model == "auth.user"):
            values[name] = int(raw)
        elif kind == "number":
            values[name] = float(raw)
        elif kind == "boolean":
            if raw.lower() not in TRUE | FALSE:
                raise ClientError(f"{name}: expected true or false")
            values[name] = raw.lower() in TRUE
        elif kind == "json":
            values[name] = json.loads(raw)
        else:
            values[name] = raw
    return values


def _summary_fields(spec: ModelSpec) -> list[str]:
    preferred = [n for n in spec.writable if spec.fields[n].type in ("string",)]
    return preferred[:4] or spec.writable[:4]


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _errors_text(errors: dict[str, list[str]]) -> str:
    return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())


if __name__ == "__main__":
    sys.exit(main())
