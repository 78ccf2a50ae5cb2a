"""The cost of waking devices after a write (`make bench` runs it after run.py).

One write in a team channel whose members have 1,000 devices (or --devices)
with push tokens; measures `wakeups_send` (the Celery task's function) and
the flush it schedules, run at once: SQL queries and wall time, with the
console backend (our own cost) and with
firebase-admin's real sender against a local fake FCM server (our cost plus
one HTTP request per device, as FCM HTTP v1 needs). Needs PostgreSQL
(DATABASE_URL) and uses the cache configured (REDIS_URL for Redis).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/syncserver_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The flush the fan-out schedules runs at once, inside the measured call: the
# time is that of the whole wake-up, coalescing marks and sending included.
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from devices import push  # noqa: E402
from devices.models import Device, PushOutbox  # noqa: E402
from sync.engine.grants import channel_grant  # noqa: E402
from sync.engine.write import mutations_apply  # noqa: E402
from sync.models import ChannelGrant  # noqa: E402
from sync.notify.wakeups import wakeups_send  # noqa: E402
from tests.devices.fake_fcm import FakeFCM  # noqa: E402


def setup(devices: int) -> tuple[object, str]:
    users = get_user_model()
    users.objects.filter(username__regex=r"^fanout-[0-9]+$").delete()
    channel = f"team:fanout-{uuid.uuid4()}"
    author, _ = users.objects.get_or_create(username="fanout-author")
    channel_grant(user=author, channel=channel)
    members = users.objects.bulk_create([users(username=f"fanout-{i}") for i in range(devices)])
    ChannelGrant.objects.bulk_create([ChannelGrant(user=u, channel=channel) for u in members])
    Device.objects.bulk_create(
        [
            Device(
                id=uuid.uuid4(),
                user=u,
                platform=("android", "ios", "web")[i % 3],
                push_token=f"token-{u.pk}",
                push_active=True,
            )
            for i, u in enumerate(members)
        ]
    )
    return author, channel


def one_write(author: object) -> None:
    """A write by `author`, through the whole write path (warms it up)."""
    PushOutbox.objects.all().delete()
    mutations_apply(
        user=author,
        mutations=[
            {
                "mutation_id": str(uuid.uuid4()),
                "model": "fieldwork.customer",
                "op": "create",
                "id": str(uuid.uuid4()),
                "base_version": None,
                "data": {"name": "Fan-out"},
            }
        ],
    )


def measure(author: object, channel: str, runs: int) -> dict[str, float]:
    times, queries, devices = [], [], 0
    for _ in range(runs):
        cache.clear()  # every device outside its coalescing window
        PushOutbox.objects.all().delete()
        row = PushOutbox.objects.create(channels=[channel], origin_device_id=None, seq=1)
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            stats = wakeups_send(row.pk)
            times.append(time.perf_counter() - started)
        queries.append(len(ctx.captured_queries))
        devices = stats.devices if stats else 0
    return {
        "devices": devices,
        "median_ms": round(statistics.median(times) * 1000, 1),
        "best_ms": round(min(times) * 1000, 1),
        "queries": max(queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench needs PostgreSQL (DATABASE_URL)")
    call_command("migrate", verbosity=0)
    author, channel = setup(args.devices)
    one_write(author)  # warm up the write path

    settings.PUSH_BACKEND = "console"
    push._configured.cache_clear()
    import logging

    logging.getLogger("devices").setLevel(logging.WARNING)  # no line per device
    console = measure(author, channel, args.runs)

    fake = FakeFCM().start()
    key = Path(tempfile.mkdtemp()) / "service-account.json"
    key.write_text(json.dumps(fake.service_account()))
    settings.PUSH_BACKEND, settings.FCM_CREDENTIALS, settings.FCM_ENDPOINT = (
        "fcm",
        str(key),
        fake.url,
    )
    push._configured.cache_clear()
    fcm = measure(author, channel, args.runs)
    fake.stop()

    result = {
        "fanout_console": console,
        "fanout_fcm_fake": fcm,
        "cache": settings.CACHES["default"]["BACKEND"],
    }
    print(f"\nfan-out of one write to {console['devices']} devices (wakeups_send):")
    print(f"  console backend   {console['median_ms']:>8} ms median   {console['queries']} queries")
    print(f"  FCM (local fake)  {fcm['median_ms']:>8} ms median   {fcm['queries']} queries")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"fanout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    get_user_model().objects.filter(username__regex=r"^fanout-[0-9]+$").delete()


if __name__ == "__main__":
    main()
