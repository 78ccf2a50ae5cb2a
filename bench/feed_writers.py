"""Feed-appending write transactions per second, with and without a global lock.

Each transaction does what the tail of a push does to the feed: append two
rows to `sync_change` (and, with `--wakeups`, record its wake-up: an outbox
row, whose trigger NOTIFYs live pulls and workers at commit; measured with
the trigger on and off, since PostgreSQL serialises the commits of
transactions that NOTIFY). `lock` takes the transaction-scoped advisory lock the
feed used to serialise its tail with (until commit); `xid` is today's feed
(sync.engine.feed): it asks for its transaction id and inserts, with no lock. Run by
pgbench (a C client, so the client is not the bottleneck) with 1, 16 and 64
writers, synchronous commit, against the bench database.

Usage: python bench/feed_writers.py [--seconds 10] [--writers 1 16 64]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/syncserver_bench")

PGBENCH = shutil.which("pgbench") or "/usr/bin/pgbench"

INSERT = (
    "INSERT INTO sync_change (tx, channel, model, object_id, version, op, created_at) VALUES "
    "({tx}, 'team:bench', 'fieldwork.customer', gen_random_uuid(), 1, 1, now()), "
    "({tx}, 'user:1', 'fieldwork.customer', gen_random_uuid(), 1, 1, now());"
)
SCRIPTS = {
    # The old tail: lock (its old key, "SYNCFEED"), then insert, held until commit.
    "lock": "BEGIN;\nSELECT pg_advisory_xact_lock(6005917628923987268);\n"
    + INSERT.format(tx=0)
    + "\nCOMMIT;\n",
    # Today's: the transaction id, then insert; nothing waits for anyone.
    "xid": "BEGIN;\nSELECT pg_current_xact_id()::text::bigint;\n"
    + INSERT.format(tx="pg_current_xact_id()::text::bigint")
    + "\nCOMMIT;\n",
}
# Today's, with its wake-up recorded (devices migration 0005's trigger NOTIFYs).
WAKEUP = (
    "INSERT INTO devices_pushoutbox (channels, seq, created_at, attempts, captured) "
    'VALUES (\'["team:bench", "user:1"]\', 1, now(), 0, false);'
)
SCRIPTS["xid+wakeup"] = SCRIPTS["xid"].replace("\nCOMMIT;", f"\n{WAKEUP}\nCOMMIT;")
NOTIFY_TRIGGER = "ALTER TABLE devices_pushoutbox {} TRIGGER devices_outbox_notify"


PSQL = shutil.which("psql") or "/usr/bin/psql"


def psql(db: dict[str, str], sql: str) -> None:
    subprocess.run(  # noqa: S603 - our own fixed arguments
        [
            PSQL,
            "-q",
            "-h",
            db["host"],
            "-p",
            db["port"],
            "-U",
            db["user"],
            "-d",
            db["name"],
            "-c",
            sql,
        ],
        check=True,
    )


def run(script: str, writers: int, seconds: int, db: dict[str, str]) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        out = subprocess.run(  # noqa: S603 - our own fixed arguments
            [
                PGBENCH,
                "-n",
                "-h",
                db["host"],
                "-p",
                db["port"],
                "-U",
                db["user"],
                "-c",
                str(writers),
                "-j",
                str(min(writers, 4)),
                "-T",
                str(seconds),
                "-f",
                path,
                db["name"],
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(path)
    match = re.search(r"tps = ([0-9.]+)", out)
    if not match:
        sys.exit(f"pgbench printed no tps:\n{out}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument(
        "--wakeups", action="store_true", help="also with a wake-up, NOTIFY on and off"
    )
    args = parser.parse_args()
    url = urlparse(os.environ["DATABASE_URL"])
    db = {
        "host": url.hostname or "127.0.0.1",
        "port": str(url.port or 5432),
        "user": url.username or "postgres",
        "name": url.path.lstrip("/"),
    }
    results: dict[str, dict[int, float]] = {"lock": {}, "xid": {}}
    print(f"{'writers':>8}{'lock tx/s':>12}{'xid tx/s':>12}{'xid/lock':>10}")
    for writers in args.writers:
        for mode in ("lock", "xid"):
            results[mode][writers] = run(SCRIPTS[mode], writers, args.seconds, db)
        ratio = results["xid"][writers] / results["lock"][writers]
        print(
            f"{writers:>8}{results['lock'][writers]:>12.0f}{results['xid'][writers]:>12.0f}"
            f"{ratio:>10.2f}"
        )
    if args.wakeups:
        results["wakeup_notify"], results["wakeup_quiet"] = {}, {}
        print(f"{'writers':>8}{'NOTIFY tx/s':>14}{'quiet tx/s':>12}{'ratio':>8}")
        for writers in args.writers:
            try:
                psql(db, NOTIFY_TRIGGER.format("DISABLE"))
                quiet = run(SCRIPTS["xid+wakeup"], writers, args.seconds, db)
            finally:
                psql(db, NOTIFY_TRIGGER.format("ENABLE"))
            loud = run(SCRIPTS["xid+wakeup"], writers, args.seconds, db)
            results["wakeup_notify"][writers], results["wakeup_quiet"][writers] = loud, quiet
            print(f"{writers:>8}{loud:>14.0f}{quiet:>12.0f}{loud / quiet:>8.2f}")
        psql(db, "DELETE FROM devices_pushoutbox")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"feed-writers-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"cores": os.cpu_count(), **results}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
