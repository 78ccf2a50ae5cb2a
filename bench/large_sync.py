"""One user's complete initial sync over HTTP at a large size (`docs/scaling.md`).

    DATABASE_URL=postgres://.../syncserver_bench python bench/large_sync.py --objects 1000000

Makes the objects once through the write service (about 15 minutes for a
million on 2 cores; reused afterwards), then runs gunicorn like
`bench/http_bench.py` and pulls everything at limit 1,000 from a separate
client: time, objects/s, first page, the workers' peak RSS, and the EXPLAIN of
a page's feed query and object query in the middle of the sync.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import http_bench as hb  # the bench beside this file (its sys.path set-up included)
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sync.engine import feed
from sync.engine.cursor import Cursor
from sync.engine.pull import pull_page


def explain_middle(user_id: int, objects: int) -> dict[str, list[str]]:
    """EXPLAIN ANALYZE of the statements of a real page (pull_page, limit
    1,000) halfway through the user's feed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tx, seq FROM sync_change WHERE channel = %s ORDER BY tx, seq OFFSET %s LIMIT 1",
            [f"user:{user_id}", objects // 2],
        )
        tx, seq = cursor.fetchone()
    halfway = Cursor(s=(tx, seq), g=feed.horizon_and_grants(user_id)[1].last_event, u=user_id)
    with CaptureQueriesContext(connection) as page:
        pull_page(user_id=user_id, cursor=halfway.encode(), limit=1000, models=None)
    plans = {}
    with connection.cursor() as cursor:
        for query in page.captured_queries:
            sql = query["sql"]
            name = "horizon_and_grants" if "pg_snapshot_xip" in sql else "feed_rows_and_objects"
            if name == "feed_rows_and_objects" and not sql.startswith("WITH f AS"):
                continue
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plans[name] = [r[0] for r in cursor.fetchall()]
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--out", default=str(hb.ROOT / "bench" / "results"))
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("bench needs PostgreSQL (DATABASE_URL)")
    hb.call_command("migrate", verbosity=0)
    user = hb.user_with(f"httpbench-{args.objects}", args.objects)
    hb.Device.objects.filter(user=user).delete()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    token, device = hb.device_token(user)
    server = hb.Server(args.workers)
    try:
        hb.warm_up(token, device, args.workers)
        sync = hb.initial_sync(token, device, 1000, gzip=False)
        sync["server_peak_rss_mb"] = server.peak_rss_mb()
    finally:
        server.stop()
    result = {"objects": args.objects, "limit": 1000, "workers": args.workers, **sync}
    result["explain"] = explain_middle(user.pk, args.objects)
    print(json.dumps({k: v for k, v in result.items() if k != "explain"}, indent=2))
    for name, plan in result["explain"].items():
        print(f"\n{name}:\n" + "\n".join(plan))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"large-{args.objects}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
