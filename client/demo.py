"""`make demo`: three devices edit one work order offline, and converge.

Run against the server of `make run` (`SYNC_URL`, default
http://127.0.0.1:8000). Two devices of `demo` and one of `alice` (both in the
"North crew" team of the demo data) sync, go offline and edit the same team
work order; then they sync one after the other:

- the first edit is applied;
- the second (another field, made on the old version) is merged by the server;
- the third (the same field as the first, to another value) is a conflict: it
  waits in the staff queue in the admin, and here its author resolves it from
  the app through the API instead;

and every device ends identical to a fresh sync of its user's data. Then an
older app, built against `fieldwork.equipment` version 1 (`serial`,
`location`), edits a boiler that a current app edits too: the server
translates both ways, and they converge, each in its own shape.
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from client.errors import ApiError, ClientError, NetworkError
from client.http import RetryPolicy
from client.sync import SyncClient

# The demo logins `make run` prints (fieldwork/management/commands/seed_demo.py).
DEMO_LOGINS = {"demo": "demo-pass-1234", "alice": "alice-pass-1234"}
ORDER = "fieldwork.workorder"
EQUIPMENT = "fieldwork.equipment"
# What the older app was built against (docs/protocol.md, "App versions and schema changes").
OLD_APP_SCHEMA = {
    "fieldwork.customer": 1,
    "fieldwork.workorder": 1,
    "fieldwork.note": 1,
    EQUIPMENT: 1,
}


def main() -> int:
    server = os.environ.get("SYNC_URL", "http://127.0.0.1:8000").rstrip("/")
    with tempfile.TemporaryDirectory(prefix="sync-demo-") as tmp:
        try:
            run(server, Path(tmp))
        except NetworkError:
            print(f"No server at {server}. Start one with `make run` (or set SYNC_URL).")
            return 1
        except ApiError as exc:
            print(f"The server refused: {exc.detail} ({exc.code}). Is it `make run`'s demo data?")
            return 1
        except ClientError as exc:
            print(f"Demo failed: {exc}")
            return 1
    return 0


def run(server: str, tmp: Path) -> None:
    print(f"Sync demo against {server}")
    devices: dict[str, SyncClient] = {}
    for name, user in (("demo-phone", "demo"), ("demo-tablet", "demo"), ("alice-phone", "alice")):
        # Few retries: a demo without a server should say so at once.
        client = SyncClient(tmp / name, base_url=server, retry=RetryPolicy(attempts=2))
        client.login(user, DEMO_LOGINS[user])
        client.register_device(platform="android", name=f"{name} (make demo)")
        report = client.sync()
        print(f"  {name:<12} ({user}) initial sync: {report.pulled} changes")
        devices[name] = client
    phone, tablet, alice = devices["demo-phone"], devices["demo-tablet"], devices["alice-phone"]

    order_id, order = _shared_work_order(phone, alice)
    base = order["title"].split(":")[0]
    version = _version(phone, order_id)
    print(f'\nWork order "{order["title"]}" (version {version}) is on all three. Offline:')
    edits: list[tuple[SyncClient, str, dict[str, Any]]] = [
        (phone, "demo-phone", {"title": f"{base}: replace valve"}),
        (
            tablet,
            "demo-tablet",
            {"priority": "high" if order["priority"] == "urgent" else "urgent"},
        ),
        (alice, "alice-phone", {"title": f"{base}: check pressure"}),
    ]
    for client, name, change in edits:
        client.update(ORDER, order_id, change)
        ((field, value),) = change.items()
        print(f'  {name:<12} {field} → "{value}"')

    print("\nBack online, they sync one after the other:")
    conflict_id = None
    for client, name, _ in edits:
        report = client.sync()
        status = next(iter(report.pushed))
        now = client.get(ORDER, order_id) or {}
        line = {
            "applied": "written as sent",
            "merged": f"the phone's title kept, priority {now.get('priority')} added",
            "conflict": "title changed on both sides: nothing written, queued for a person",
        }.get(status, str(report.rejected))
        print(f"  {name:<12} {status:<9} {line} (version {_version(client, order_id)})")
        if report.conflicts:
            conflict_id = report.conflicts[0]
    if conflict_id is None:
        raise ClientError("expected a conflict; none came")

    print(
        f"\nStaff would resolve it in the admin: {server}/admin/sync/conflict/{conflict_id}/change/"
    )
    combined = f"{base}: replace valve, check pressure"
    answer = alice.resolve(conflict_id, "fields", {"title": combined}, note="make demo")
    endpoint = f"POST /api/v1/sync/conflicts/{conflict_id}/resolve/"
    print(f"Instead alice resolves it from the app ({endpoint}):")
    print(f'  title "{combined}" → version {answer["object"]["version"]}')

    print("\nEveryone syncs again:")
    for name, client in devices.items():
        report = client.sync()
        now = client.get(ORDER, order_id) or {}
        version = _version(client, order_id)
        print(
            f'  {name:<12} pulled {report.pulled}: "{now.get("title")}", '
            f"{now.get('priority')}, version {version}"
        )
    print(_converged(devices))

    _older_app(server, tmp, devices)
    _photo(phone, tablet, order_id)

    # One left open, so that the admin's queue has something to show.
    phone.update(ORDER, order_id, {"title": f"{base}: parts ordered"})
    tablet.update(ORDER, order_id, {"title": f"{base}: waiting for parts"})
    phone.sync()
    left = tablet.sync().conflicts
    if not left:
        raise ClientError("expected a second conflict; none came")
    print(
        "\nOne more, left open for staff: the phone and the tablet retitled it at once.\n"
        f"  Resolve it in the admin (admin / admin-pass-1234): "
        f"{server}/admin/sync/conflict/{left[0]}/change/"
    )


def _photo(phone: SyncClient, tablet: SyncClient, order_id: str) -> None:
    """A photo attached on the phone, shown on the tablet (client/files.py)."""
    print("\nA photo: the phone attaches one to the work order, the tablet shows it.")
    image = _png(160, 120)
    ref = phone.files.attach(image, content_type="image/png", name="boiler-after.png")
    phone.update(ORDER, order_id, {"photo": ref})
    report = phone.sync()  # the edit first, then the bytes
    if report.uploaded != [ref["sha256"]]:
        raise ClientError(f"the photo was not uploaded: {report.uploaded}")
    print(f"  demo-phone   attached {ref['name']} ({ref['size']} bytes), uploaded after the edit")
    tablet.sync()
    shown = (tablet.get(ORDER, order_id) or {}).get("photo")
    if shown != ref:
        raise ClientError("the tablet did not get the photo's reference")
    path = tablet.files.fetch(shown)  # downloaded now, when it is needed
    if path.read_bytes() != image:
        raise ClientError("the tablet's copy of the photo differs")
    print(
        f"  demo-tablet  fetched it when shown: {path.stat().st_size} bytes, "
        f"sha256 {ref['sha256'][:12]}… checked"
    )


def _png(width: int, height: int) -> bytes:
    """A small gradient image, written by hand so the client needs no imaging library."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 255 // width, y * 255 // height, 160))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _older_app(server: str, tmp: Path, devices: dict[str, SyncClient]) -> None:
    """An app still at equipment's version 1 and a current one edit the same boiler."""
    old = SyncClient(
        tmp / "old-phone",
        base_url=server,
        retry=RetryPolicy(attempts=2),
        app_version="1.0.0",
        schema=OLD_APP_SCHEMA,
    )
    old.login("demo", DEMO_LOGINS["demo"])
    old.register_device(platform="android", name="old-phone (make demo)")
    old.sync()
    phone = devices["demo-phone"]
    boilers = [oid for (_, oid), data in phone.all(EQUIPMENT).items() if data["kind"] == "boiler"]
    if not boilers:
        raise ClientError("no boiler in the demo data; is this `make run`'s demo data?")
    equipment_id = sorted(boilers)[0]
    before = old.get(EQUIPMENT, equipment_id) or {}
    print(
        f'\nAn older app (old-phone, equipment schema version 1) sees "{before.get("name")}" '
        f'as serial {before.get("serial")}, location "{before.get("location")}". Offline:'
    )
    old.update(EQUIPMENT, equipment_id, {"location": "Main house, Boiler room"})
    phone.update(EQUIPMENT, equipment_id, {"serial_number": "SN-REPLACED"})
    print('  old-phone    location → "Main house, Boiler room"')
    print('  demo-phone   serial_number → "SN-REPLACED"')
    for client, name in ((phone, "demo-phone"), (old, "old-phone")):
        status = next(iter(client.sync().pushed))
        print(f"  {name:<12} {status}")
    devices["old-phone"] = old
    for client in devices.values():
        client.sync()
    now, then = phone.get(EQUIPMENT, equipment_id) or {}, old.get(EQUIPMENT, equipment_id) or {}
    print(
        f"  demo-phone   serial_number {now.get('serial_number')}, "
        f'building "{now.get("building")}", room "{now.get("room")}", kind {now.get("kind")}'
    )
    print(f'  old-phone    serial {then.get("serial")}, location "{then.get("location")}"')
    print(_converged(devices))


def _shared_work_order(phone: SyncClient, alice: SyncClient) -> tuple[str, dict[str, Any]]:
    """A team work order that both users see, the same one on every run."""
    theirs = alice.all(ORDER)
    shared = sorted(
        (object_id, data)
        for (_, object_id), data in phone.all(ORDER).items()
        if data.get("team") and (ORDER, object_id) in theirs
    )
    if not shared:
        raise ClientError("no work order shared by demo and alice; is this the demo data?")
    return shared[0]


def _version(client: SyncClient, object_id: str) -> int | None:
    copy = client.store.server_copy(ORDER, object_id)
    return copy.version if copy else None


def _converged(devices: Mapping[str, SyncClient]) -> str:
    """Each device's store must equal what a fresh initial sync of its user
    brings now: the same objects, versions and data."""
    counts: dict[str, int] = {}
    for name, client in devices.items():
        held = {
            key: (copy.version, copy.data) for key, copy in client.store.server_copies().items()
        }
        fresh = client.fetch_all()
        if held != fresh or client.store.pending():
            differ = [k for k in held.keys() | fresh.keys() if held.get(k) != fresh.get(k)]
            raise ClientError(f"{name} did not converge: {len(differ)} objects differ")
        counts[client.username or name] = len(held)
    per_user = sorted(set(counts.values()))
    if len(per_user) == 1:
        return f"converged: {len(devices)} devices, {per_user[0]} objects each"
    listed = ", ".join(f"{user} {n}" for user, n in counts.items())
    return f"converged: {len(devices)} devices ({listed} objects)"


if __name__ == "__main__":
    sys.exit(main())
