"""Reproducible benchmark of the sync paths (`make bench`).

Generates a data set through the real push service (default: 100,000 objects
over 1,000 users and 3 models, plus one user with 10,000), then measures, in
process through Django's test client (so the numbers are the server's own
cost, without an HTTP server in front):

- initial-sync pull throughput for the big user, and the same work done by a
  raw-SQL floor (psycopg + orjson, same rows) as the physical limit;
- incremental pull latency;
- push throughput in batches of 500, and the conflict path;
- SQL queries per request, and peak RSS.

Prints a table and writes JSON (bench/results/) so runs can be compared.
Needs PostgreSQL: DATABASE_URL, default postgres://postgres@127.0.0.1:5432/syncserver_bench.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/syncserver_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("THROTTLE_USER", "1000000/min")
# Wake-ups are handed to an in-memory broker, as cheap as a Redis LPUSH, instead
# of running the fan-out inside each push (the eager default without REDIS_URL).
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "0")

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402
import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from devices.models import Device  # noqa: E402
from devices.services import device_register  # noqa: E402
from sync import registry  # noqa: E402
from sync.accounts.services import token_issue  # noqa: E402
from sync.engine.write import mutations_apply  # noqa: E402

CUSTOMER, ORDER, NOTE = "fieldwork.customer", "fieldwork.workorder", "fieldwork.note"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def objects_for(n: int) -> list[dict]:
    """n create mutations over the three demo models (customers, their orders, notes)."""
    out: list[dict] = []
    while len(out) < n:
        c, o = str(uuid.uuid4()), str(uuid.uuid4())
        out.append(
            _m(
                CUSTOMER,
                c,
                {
                    "name": f"Customer {len(out)}",
                    "email": "a@b.test",
                    "address": "1 Main Street, Springfield",
                },
            )
        )
        out.append(
            _m(
                ORDER,
                o,
                {
                    "customer": c,
                    "title": "Service visit",
                    "status": "open",
                    "priority": "normal",
                    "scheduled_for": "2026-12-01",
                    "estimated_hours": 1.5,
                },
            )
        )
        out.append(_m(NOTE, str(uuid.uuid4()), {"work_order": o, "body": "Gate code 1234."}))
    return out[:n]


def _m(model: str, object_id: str, data: dict, op: str = "create", base: int | None = None) -> dict:
    return {
        "mutation_id": str(uuid.uuid4()),
        "model": model,
        "op": op,
        "id": object_id,
        "base_version": base,
        "data": data,
    }


def generate(users: int, per_user: int, big: int) -> tuple[object, list[dict]]:
    call_command("flush", interactive=False, verbosity=0)
    user_model = get_user_model()
    started = time.perf_counter()
    created = 0
    for i in range(users):
        user = user_model.objects.create_user(f"bench{i}")
        outcome = mutations_apply(user=user, mutations=objects_for(per_user), reason="bench")
        created += len(outcome.results)
    big_user = user_model.objects.create_user("bench-big")
    mutations = objects_for(big)
    for start in range(0, big, 500):
        mutations_apply(user=big_user, mutations=mutations[start : start + 500], reason="bench")
    created += big
    elapsed = time.perf_counter() - started
    print(f"generated {created} objects in {elapsed:.1f}s ({created / elapsed:.0f}/s)")
    return big_user, mutations


def client_for(user: object) -> tuple[Client, str]:
    _, secret = token_issue(user=user, name="bench")
    device_id = uuid.uuid4()
    # A reused data set keeps earlier runs' devices, which count against the
    # per-user device limit.
    Device.objects.filter(user=user).delete()
    device_register(user=user, device_id=device_id, data={"platform": "android"})
    client = Client(HTTP_AUTHORIZATION=f"Token {secret}", HTTP_X_DEVICE_ID=str(device_id))
    return client, str(device_id)


def pull_all(
    client: Client, limit: int, cursor: str | None = None
) -> tuple[int, str, list[int], float]:
    count, queries, started = 0, [], time.perf_counter()
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        with CaptureQueriesContext(connection) as ctx:
            response = client.get("/api/v1/sync/pull/", params)
        assert response.status_code == 200, response.content
        page = orjson.loads(response.content)
        queries.append(len(ctx))
        count += len(page["changes"])
        cursor = page["cursor"]
        if not page["has_more"]:
            return count, cursor, queries, time.perf_counter() - started


def raw_floor(user_id: int, limit: int) -> tuple[int, float]:
    """The same rows as an initial sync, fetched and encoded with psycopg + orjson."""
    db = settings.DATABASES["default"]
    dsn = f"host={db['HOST']} port={db['PORT'] or 5432} dbname={db['NAME']} user={db['USER']}"
    tables = {t.label: (t.model._meta.db_table, t) for t in registry.all_types()}
    count, after, started = 0, 0, time.perf_counter()
    # prepare_threshold=None: psycopg would otherwise switch to prepared generic
    # plans after five runs, which are slower for `= ANY(...)` than Django's
    # literal IN lists, and the floor would no longer be a floor.
    with psycopg.connect(dsn, prepare_threshold=None) as conn:
        while True:
            rows = conn.execute(
                "SELECT seq, model, object_id FROM sync_change WHERE channel = ANY(%s) "
                "AND seq > %s ORDER BY seq LIMIT %s",
                ([f"user:{user_id}"], after, limit),
            ).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            by_model: dict[str, list] = {}
            for _, model, oid in rows:
                by_model.setdefault(model, []).append(oid)
            changes = []
            for model, oids in by_model.items():
                table, stype = tables[model]
                cols = [c.attname for c in stype.codecs.values()]
                cur = conn.execute(
                    f"SELECT id, version, {', '.join(cols)} FROM {table} WHERE id = ANY(%s)",  # noqa: S608
                    (oids,),
                )
                for rec in cur.fetchall():
                    changes.append(
                        {
                            "model": model,
                            "id": rec[0],
                            "op": "upsert",
                            "version": rec[1],
                            "data": dict(zip(cols, rec[2:], strict=True)),
                        }
                    )
            orjson.dumps({"changes": changes, "cursor": str(after), "has_more": True})
            count += len(changes)
    return count, time.perf_counter() - started


def push_batches(client: Client, batches: list[list[dict]]) -> tuple[int, float, list[int], dict]:
    statuses: dict[str, int] = {}
    queries, started = [], time.perf_counter()
    for batch in batches:
        with CaptureQueriesContext(connection) as ctx:
            response = client.post(
                "/api/v1/sync/push/",
                orjson.dumps({"mutations": batch}),
                content_type="application/json",
            )
        assert response.status_code == 200, response.content
        queries.append(len(ctx))
        for r in orjson.loads(response.content)["results"]:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return sum(map(len, batches)), time.perf_counter() - started, queries, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=1_000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument(
        "--reuse", action="store_true", help="measure the data set of the previous run again"
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench needs PostgreSQL (DATABASE_URL)")
    call_command("migrate", verbosity=0)

    if args.reuse:
        big_user = get_user_model().objects.get(username="bench-big")
        created = [
            {"model": t.label, "id": str(pk)}
            for t in registry.all_types()
            for pk in t.model.objects.filter(owner=big_user).values_list("pk", flat=True)
        ]
    else:
        big_user, created = generate(args.users, args.objects // args.users, args.big)
    client, _ = client_for(big_user)
    rss_before = rss_mb()

    # Best of three, interleaved, so neither side profits from a warmer cache.
    pulls, floors = [], []
    for _ in range(3):
        pulls.append(pull_all(client, args.limit))
        floors.append(raw_floor(big_user.pk, args.limit))
    n, cursor, pull_queries, pull_s = min(pulls, key=lambda p: p[3])
    floor_n, floor_s = min(floors, key=lambda f: f[1])

    customers = [m for m in created if m["model"] == CUSTOMER]
    latencies = []
    for i in range(20):
        mutations_apply(
            user=big_user,
            mutations=[_m(CUSTOMER, customers[i]["id"], {"phone": str(i)}, "update", 1)],
        )
        t0 = time.perf_counter()
        _, cursor, _, _ = pull_all(client, args.limit, cursor)
        latencies.append((time.perf_counter() - t0) * 1000)

    orders = [m["id"] for m in created if m["model"] == ORDER][:5000]
    before = dict(
        registry.get(ORDER).model.objects.filter(pk__in=orders).values_list("pk", "version")
    )
    push = [
        [
            _m(ORDER, oid, {"title": f"Visit {k}"}, "update", before[uuid.UUID(oid)])
            for oid in orders[k * 500 : (k + 1) * 500]
        ]
        for k in range(10)
    ]
    push_n, push_s, push_queries, push_status = push_batches(client, push)
    # Conflict path: base_version from before that push, same field changed on both sides.
    stale = [
        [
            _m(ORDER, oid, {"title": f"Clash {k}"}, "update", before[uuid.UUID(oid)])
            for oid in orders[k * 500 : (k + 1) * 500]
        ]
        for k in range(10)
    ]
    conflict_n, conflict_s, conflict_queries, conflict_status = push_batches(client, stale)

    result = {
        "dataset": {
            "objects": args.objects + args.big,
            "users": args.users + 1,
            "big_user": args.big,
        },
        "initial_pull": {
            "objects": n,
            "seconds": round(pull_s, 3),
            "objects_per_s": round(n / pull_s),
            "page_limit": args.limit,
            "queries_per_page": max(pull_queries),
        },
        "raw_floor": {
            "objects": floor_n,
            "seconds": round(floor_s, 3),
            "objects_per_s": round(floor_n / floor_s),
        },
        "pull_vs_floor": round((n / pull_s) / (floor_n / floor_s), 2),
        "incremental_pull_ms": {
            "median": round(statistics.median(latencies), 2),
            "p95": round(sorted(latencies)[int(len(latencies) * 0.95) - 1], 2),
        },
        "push": {
            "mutations": push_n,
            "mutations_per_s": round(push_n / push_s),
            "queries_per_500": max(push_queries),
            "statuses": push_status,
        },
        "conflict_push": {
            "mutations": conflict_n,
            "mutations_per_s": round(conflict_n / conflict_s),
            "queries_per_500": max(conflict_queries),
            "statuses": conflict_status,
        },
        "peak_rss_mb": {"after_generate": round(rss_before, 1), "end": round(rss_mb(), 1)},
    }
    rows = [
        (
            "initial pull",
            f"{result['initial_pull']['objects_per_s']:,} objects/s",
            f"{max(pull_queries)} queries/page",
        ),
        (
            "raw SQL floor",
            f"{result['raw_floor']['objects_per_s']:,} objects/s",
            f"pull = {result['pull_vs_floor']} x floor",
        ),
        (
            "incremental pull",
            f"{result['incremental_pull_ms']['median']} ms median",
            f"p95 {result['incremental_pull_ms']['p95']} ms",
        ),
        (
            "push (500/batch)",
            f"{result['push']['mutations_per_s']:,} mutations/s",
            f"{max(push_queries)} queries/request",
        ),
        (
            "conflict path",
            f"{result['conflict_push']['mutations_per_s']:,} mutations/s",
            f"{max(conflict_queries)} queries/request",
        ),
        ("peak RSS", f"{result['peak_rss_mb']['end']} MB", ""),
    ]
    print()
    for name, value, extra in rows:
        print(f"{name:<18} {value:>26}   {extra}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
