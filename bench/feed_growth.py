"""The change feed at 10 million rows, time-boxed, on this machine.

A database of its own (`FEED_DATABASE_URL`, default `syncserver_feed`): one
user with 1,000 objects written first (the feed's tail), then `--rows`
filler rows in 100,000 other channels (100,000 devices' worth of scopes),
then a second user with 1,000 objects (the head). Measured in process, the
median of repeated calls: a pull's first page (limit 100) and a complete
initial sync (limit 1,000) for each user, an incremental pull from each
user's up-to-date cursor, and compaction's time over the whole feed. The
filler rows are written by SQL straight into `sync_change` (their objects do
not exist: nobody pulls those channels here); what is measured is what a
large feed does to the pulls of the users in it.

Usage: python bench/feed_growth.py [--rows 10000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
URL = os.environ.get("FEED_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/syncserver_feed")
os.environ["DATABASE_URL"] = URL
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import psycopg  # noqa: E402

with psycopg.connect(URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as _admin:
    _name = URL.rsplit("/", 1)[1]
    if not _admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [_name]).fetchone():
        _admin.execute(f'CREATE DATABASE "{_name}"')

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from bench.serving import save  # noqa: E402
from sync.engine.compaction import feed_compact  # noqa: E402
from sync.engine.pull import pull_page  # noqa: E402
from sync.engine.write import mutations_apply  # noqa: E402

CHANNELS = 100_000
CHUNK = 1_000_000


def user_with(name: str, objects: int) -> object:
    user = get_user_model().objects.create(username=f"{name}-{uuid.uuid4().hex[:6]}")
    for start in range(0, objects, 500):
        mutations_apply(
            user=user,
            mutations=[
                {
                    "mutation_id": str(uuid.uuid4()),
                    "model": "fieldwork.customer",
                    "op": "create",
                    "id": str(uuid.uuid4()),
                    "base_version": None,
                    "data": {"name": f"{name} {i}"},
                }
                for i in range(start, min(objects, start + 500))
            ],
        )
    return user


def filler(rows: int) -> float:
    started = time.monotonic()
    with connection.cursor() as cursor:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            cursor.execute(
                "INSERT INTO sync_change (tx, channel, model, object_id, version, op, created_at) "
                "SELECT pg_current_xact_id()::text::bigint, 'filler:' || (g %% %s), "
                "'fieldwork.customer', gen_random_uuid(), 1, 1, now() "
                "FROM generate_series(1, %s) AS g",
                [CHANNELS, n],
            )
            print(f"  filler: {start + n:,} rows, {time.monotonic() - started:.0f} s", flush=True)
    return time.monotonic() - started


def ms(fn, repeat: int = 15) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def caught_up(user: object) -> str:
    cursor = None
    while True:
        page = pull_page(user_id=user.pk, cursor=cursor, limit=1000, models=None)
        cursor = page.cursor
        if not page.has_more:
            return cursor


def measure(user: object) -> dict[str, float]:
    cursor = caught_up(user)
    return {
        "first_page_limit_100_ms": ms(
            lambda: pull_page(user_id=user.pk, cursor=None, limit=100, models=None)
        ),
        "initial_sync_1000_objects_ms": ms(lambda: caught_up(user), repeat=7),
        "incremental_empty_pull_ms": ms(
            lambda: pull_page(user_id=user.pk, cursor=cursor, limit=100, models=None), repeat=50
        ),
    }


def size() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), pg_size_pretty(pg_total_relation_size('sync_change')) "
            "FROM sync_change"
        )
        rows, total = cursor.fetchone()
    return f"{rows:,} rows, {total} with indexes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    result: dict[str, object] = {"filler_rows": args.rows}
    tail = user_with("tail", 1000)
    result["before"] = {"feed": size(), "tail": measure(tail)}
    print("before:", result["before"], flush=True)
    result["filler_s"] = round(filler(args.rows), 1)
    head = user_with("head", 1000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    result["after"] = {"feed": size(), "tail": measure(tail), "head": measure(head)}
    print("after:", result["after"], flush=True)
    started = time.monotonic()
    compacted = feed_compact()
    result["compaction"] = {"seconds": round(time.monotonic() - started, 1), **compacted}
    print("compaction:", result["compaction"], flush=True)
    save(f"feed-growth-{args.rows}", result)


if __name__ == "__main__":
    main()
