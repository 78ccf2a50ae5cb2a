"""Initial sync over HTTP, this checkout's server against another revision's,
turn about (`python bench/against.py 42295a9`).

For targets stated against an earlier version ("3x today's figures"): this
machine's pace changes by up to 2x within an hour, so numbers measured at
different times cannot be compared; each round here runs one server, then
the other, a minute apart.

Each side gets its own database, made by its own migrations and its own
write service (schemas differ between versions): `<bench database>_<rev>`
and `<bench database>_head`, with one user owning N customers (default
100,000). The revision is checked out in a git worktree under the system's
temporary directory. Both servers run with this checkout's virtualenv
(gunicorn, 4 workers, DEBUG off, each worker's local-memory cache, as the
older versions' benches did); the client (libcurl, keep-alive) logs in,
registers a device and pulls everything at limit 100 and 1,000
(`bench.serving`, the client of `http_bench.py`).
Prints a table and writes JSON to bench/results/.

With `--interleave`, both servers run at once and the client takes their
pages in turn, page for page (`--syncs` complete syncs per limit and round):
the machine's swings then fall on both sides alike instead of on whichever
ran in a slow minute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serving import SERVER_ENV, Session, gunicorn, pages, pull_all  # noqa: E402

PORT = int(os.environ.get("BENCH_PORT", "8798"))
USER, PASSWORD = "against-customers", "against-pass-1234"

# Run by each side's own code (cwd = its checkout): its migrations, then the
# user's customers through its own write service.
MAKE_DATA = """
import os, random, sys, uuid
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from fieldwork.models import Customer
from sync.engine.write import mutations_apply
call_command("migrate", verbosity=0)
user, _ = get_user_model().objects.get_or_create(username=%(user)r)
user.set_password(%(password)r)
user.save()
# Each run registers its own devices; an account may only have so many.
from devices.models import Device
Device.objects.filter(user=user).delete()
n = %(n)d
have = Customer.objects.filter(owner=user).count()
if have not in (0, n):
    sys.exit(f"{user} owns {have} customers, not {n}: drop the database to start over")
rng = random.Random(5)
for start in range(0, n if have == 0 else 0, 500):
    mutations_apply(user=user, reason="bench", mutations=[
        {"mutation_id": str(uuid.UUID(int=rng.getrandbits(128))), "model": "fieldwork.customer",
         "op": "create", "id": str(uuid.UUID(int=rng.getrandbits(128))), "base_version": None,
         "data": {"name": f"Customer {start + i}", "email": f"c{start + i}@example.com",
                  "phone": f"+1 555 {rng.randrange(10**7):07d}",
                  "address": f"{rng.randrange(1, 999)} Main Street, Springfield"}}
        for i in range(min(500, n - start))])
with connection.cursor() as cursor:
    cursor.execute("ANALYZE")
"""


def database_url(base: str, suffix: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"{parts.path}_{suffix}"))


def ensure_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def checkout(rev: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"syncserver-{rev}"
    if not path.exists():
        subprocess.run(  # noqa: S603
            ["/usr/bin/git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
            check=True,
            capture_output=True,
        )
    return path


def side_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return {
        **env,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **SERVER_ENV,
        "CELERY_BROKER_URL": "memory://",
        "CELERY_TASK_ALWAYS_EAGER": "0",
    }


def make_data(code: Path, url: str, n: int) -> None:
    ensure_database(url)
    script = MAKE_DATA % {"user": USER, "password": PASSWORD, "n": n}
    subprocess.run([sys.executable, "-c", script], cwd=code, env=side_env(url), check=True)  # noqa: S603


def device_session(port: int) -> Session:
    """The user logged in, with a device of its own registered, on the
    server at `port`, after some pulls: a worker imports and builds its
    caches on its first requests, which a server that has been up a while
    did long ago."""
    s = Session(port, {"Content-Type": "application/json", "Accept-Encoding": "identity"})
    answer = s.post("/api/v1/auth/token/", orjson.dumps({"username": USER, "password": PASSWORD}))
    answer.raise_for_status()
    s.headers["Authorization"] = f"Token {orjson.loads(answer.content)['token']}"
    s.headers["X-Device-Id"] = str(uuid.uuid4())
    device = {"id": s.headers["X-Device-Id"], "platform": "android"}
    s.post("/api/v1/devices/", orjson.dumps(device)).raise_for_status()
    for _ in range(8):
        s.get("/api/v1/sync/pull/", params={"limit": 10}).raise_for_status()
    return s


def initial_syncs(code: Path, url: str, limits: list[int]) -> dict:
    """Start `code`'s server on `url`, log in, register a device, and pull
    everything once per limit."""
    server = gunicorn(code, PORT, 4, side_env(url))
    try:
        s = device_session(PORT)
        found = {}
        for limit in limits:
            pulled = pull_all(s, limit)
            found[str(limit)] = {
                "objects": pulled["objects"],
                "objects_per_s": round(pulled["objects"] / pulled["seconds"]),
                "first_page_ms": round(pulled["first_page_s"] * 1000, 1),
            }
        return found
    finally:
        server.terminate()
        server.wait(10)


def interleaved_syncs(sides: dict[str, tuple[Path, str]], limits: list[int], syncs: int) -> dict:
    """Both servers up at once, each with its own client session, their pages
    taken in turn: one page from the first, one from the second, and so on,
    `syncs` complete initial syncs per limit each. Both sides' syncs have as
    many pages, so every page of one meets the machine in the state a page
    of the other met a moment before; a side's objects/s is its objects over
    the time its own pages took."""
    servers, sessions = [], {}
    try:
        for k, (name, (code, url)) in enumerate(sides.items()):
            servers.append(gunicorn(code, PORT + k, 4, side_env(url)))
            sessions[name] = device_session(PORT + k)
        found: dict[str, dict] = {name: {} for name in sides}
        for limit in limits:
            objects = dict.fromkeys(sides, 0)
            seconds = dict.fromkeys(sides, 0.0)
            firsts: dict[str, list[float]] = {name: [] for name in sides}
            for _ in range(syncs):
                runs = {name: pages(s, limit) for name, s in sessions.items()}
                fresh = set(runs)
                while runs:
                    for name in list(runs):
                        page = next(runs[name], None)
                        if page is None:
                            del runs[name]
                            continue
                        if name in fresh:
                            firsts[name].append(page[1])
                            fresh.discard(name)
                        objects[name] += page[0]
                        seconds[name] += page[1]
            for name in sides:
                found[name][str(limit)] = {
                    "objects": objects[name],
                    "syncs": syncs,
                    "objects_per_s": round(objects[name] / seconds[name]),
                    "first_page_ms": round(statistics.median(firsts[name]) * 1000, 1),
                }
        return found
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the revision to measure against, e.g. 42295a9")
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="both servers at once, their pages in turn (each round: --syncs syncs per limit)",
    )
    parser.add_argument("--syncs", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/syncserver_bench")
    rev = subprocess.run(  # noqa: S603
        ["/usr/bin/git", "-C", str(ROOT), "rev-parse", "--short", args.rev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    sides = {
        rev: (checkout(rev), database_url(base, rev)),
        "head": (ROOT, database_url(base, "head")),
    }
    for name, (code, url) in sides.items():
        print(f"data: {args.objects:,} customers for {name} ({url})", flush=True)
        make_data(code, url, args.objects)
    limits = [100, 1000]
    rounds = []
    for k in range(args.rounds):
        if args.interleave:
            one = interleaved_syncs(sides, limits, args.syncs)
        else:
            one = {name: initial_syncs(code, url, limits) for name, (code, url) in sides.items()}
        rounds.append(one)
        for limit in limits:
            old, new = one[rev][str(limit)], one["head"][str(limit)]
            print(
                f"round {k + 1}, limit {limit:>5}: {rev} {old['objects_per_s']:>7,}/s, "
                f"head {new['objects_per_s']:>7,}/s, "
                f"{new['objects_per_s'] / old['objects_per_s']:.2f}x",
                flush=True,
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"against-{rev}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    result = {
        "rev": rev,
        "objects": args.objects,
        "cores": os.cpu_count(),
        "mode": "interleaved" if args.interleave else "turn about",
        "rounds": rounds,
    }
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
