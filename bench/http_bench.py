"""The sync paths measured over HTTP (`make bench`; `make bench QUICK=1` for a
small version in about a minute).

A real server (gunicorn, several workers, DEBUG off) serves the bench database,
with its cache (throttle counters) in Redis (REDIS_URL, database 3 unless
set); this process is the client, over keep-alive connections (libcurl).
Measured:

- an initial sync of one user's objects at limit 100 and 1,000: objects/s,
  time to first page, bytes per object on the wire without and with gzip,
  and the server workers' peak RSS;
- incremental pulls of a few changes by 1, 8 and 32 concurrent devices:
  p50 / p95 / p99 latency;
- pushes in batches of 500 (no conflicts, and 10% conflicting) from one device,
  the same from four devices at once (with the CPU time of the server's
  workers and PostgreSQL per batch), and many small pushes (64 devices pushing
  1-5 mutations each): mutations/s and requests/s;
- two references on the same data: the hand-rolled baseline (`bench/baseline.py`,
  a DRF ModelViewSet paged by number), and the raw floor: the faster of
  psycopg + orjson and PostgreSQL building each page's JSON, with no HTTP;
- SQL queries per pull page and per push batch (in process, same code).

Prints a table with ratios, writes JSON and a PNG chart to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/syncserver_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The cache (throttle counters) in Redis, as in production; wake-ups are
# enqueued to an in-memory broker (no worker runs).
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/3")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "0")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("THROTTLE_USER", "100000000/min")
os.environ.setdefault("LOG_FORMAT", "plain")

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from bench.serving import SERVER_ENV, Session, gunicorn, pull_all  # noqa: E402
from devices.models import Device  # noqa: E402
from devices.services import device_register  # noqa: E402
from sync import registry  # noqa: E402
from sync.accounts.services import token_issue  # noqa: E402
from sync.engine.write import mutations_apply  # noqa: E402

CUSTOMER, ORDER, NOTE = "fieldwork.customer", "fieldwork.workorder", "fieldwork.note"
PORT = int(os.environ.get("BENCH_PORT", "8799"))
BASE = f"http://127.0.0.1:{PORT}"


# --- data -------------------------------------------------------------------------------


def _m(model: str, object_id: str, data: dict, op: str = "create", base: int | None = None):
    return {
        "mutation_id": str(uuid.uuid4()),
        "model": model,
        "op": op,
        "id": object_id,
        "base_version": base,
        "data": data,
    }


def objects_for(n: int, rng: random.Random) -> list[dict]:
    """n creates over the three demo models, about 150 bytes of user data each."""
    out: list[dict] = []
    while len(out) < n:
        c, o = str(uuid.uuid4()), str(uuid.uuid4())
        i = len(out)
        out.append(
            _m(
                CUSTOMER,
                c,
                {
                    "name": f"Customer {i}",
                    "email": f"contact{i}@example.com",
                    "phone": f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
                    "address": f"{rng.randint(1, 200)} Main Street, Springfield",
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
                    "scheduled_for": "2026-12-01",
                    "estimated_hours": 1.5,
                },
            )
        )
        out.append(_m(NOTE, str(uuid.uuid4()), {"work_order": o, "body": "Gate code 1234."}))
    return out[:n]


def user_with(username: str, n: int) -> object:
    """A user owning exactly n objects (made through the push service once)."""
    users = get_user_model()
    user, _ = users.objects.get_or_create(username=username)
    have = sum(t.model.objects.filter(owner=user).count() for t in registry.all_types())
    if have not in (0, n):
        sys.exit(f"{username} owns {have} objects, not {n}: drop the bench database to start over")
    if have == 0 and n:
        rng = random.Random(n)
        mutations = objects_for(n, rng)
        started = time.perf_counter()
        for start in range(0, n, 500):
            mutations_apply(user=user, mutations=mutations[start : start + 500], reason="bench")
            if start % 50_000 == 0:
                # What autovacuum does as tables grow (it may be off on a bench
                # machine): without statistics, the plans that psycopg prepares
                # early, on small tables, stay in use as they grow.
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE")
        print(f"  made {n:,} objects for {username} in {time.perf_counter() - started:.0f} s")
    return user


def device_token(user: object) -> tuple[str, str]:
    _, secret = token_issue(user=user, name="bench")
    device_id = uuid.uuid4()
    device_register(user=user, device_id=device_id, data={"platform": "android"})
    return secret, str(device_id)


# --- the server -------------------------------------------------------------------------


class Server:
    """gunicorn serving the bench database; samples its workers' memory."""

    def __init__(self, workers: int) -> None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", **SERVER_ENV}
        self.proc = gunicorn(ROOT, PORT, workers, env)
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def worker_pids(self) -> list[int]:
        out = subprocess.run(  # noqa: S603
            ["/usr/bin/pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def _sample(self) -> None:
        while not self._stop.is_set():
            for pid in self.worker_pids():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmRSS:"):
                        kb = int(line.split()[1])
                        self.peak[pid] = max(self.peak.get(pid, 0), kb)
            time.sleep(0.05)

    def peak_rss_mb(self) -> float:
        return round(max(self.peak.values(), default=0) / 1024, 1)

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        self.proc.wait(10)


def session(token: str, device: str | None = None, gzip: bool = False) -> Session:
    headers = {
        "Authorization": f"Token {token}",
        "Accept-Encoding": "gzip" if gzip else "identity",
        "Content-Type": "application/json",
    }
    if device:
        headers["X-Device-Id"] = device
    return Session(PORT, headers)


# --- measurements -----------------------------------------------------------------------


def warm_up(token: str, device: str, workers: int) -> None:
    """A few pulls and pushes through every worker first: a worker's first
    requests import modules and build caches, which a server that has been up
    for a while has done long ago."""

    def one(_: int) -> None:
        s = session(token, device)
        for limit in (10, 1000):
            s.get(f"{BASE}/api/v1/sync/pull/", params={"limit": limit})
        r = s.post(f"{BASE}/api/v1/sync/push/", orjson.dumps({"mutations": []}))
        assert r.status_code == 200, r.content[:300]

    with ThreadPoolExecutor(workers * 2) as pool:
        list(pool.map(one, range(workers * 4)))


def first_pages(token: str, device: str, limit: int, n: int = 7) -> list[float]:
    """The time to the first page of `n` initial syncs started afresh (ms): one
    request is too few to say what a first page takes."""
    s = session(token, device)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        r = s.get(f"{BASE}/api/v1/sync/pull/", params={"limit": limit})
        r.raise_for_status()
        times.append(round((time.perf_counter() - started) * 1000, 1))
    return times


def initial_sync(token: str, device: str, limit: int, gzip: bool) -> dict:
    found = pull_all(session(token, device, gzip), limit)
    count, seconds = found["objects"], found["seconds"]
    return {
        "objects": count,
        "seconds": round(seconds, 3),
        "objects_per_s": round(count / seconds),
        "first_page_ms": round(found["first_page_s"] * 1000, 1),
        "bytes_per_object": round(found["wire_bytes"] / max(count, 1), 1),
    }


def baseline_sync(token: str, page_size: int) -> dict:
    s = session(token)
    count, started = 0, time.perf_counter()
    for name in ("customers", "workorders", "notes"):
        url = f"{BASE}/bench/baseline/{name}/?page_size={page_size}&since=2000-01-01T00:00:00Z"
        while url:
            page = orjson.loads(s.get(url).content)
            count += len(page["results"])
            url = page["next"]
    seconds = time.perf_counter() - started
    return {"objects": count, "seconds": round(seconds, 3), "objects_per_s": round(count / seconds)}


def floor_psycopg(user_id: int, limit: int) -> tuple[int, float]:
    """The initial sync's rows fetched and encoded with psycopg + orjson."""
    dsn = _dsn()
    tables = {t.label: (t.model._meta.db_table, t) for t in registry.all_types()}
    count, after, started = 0, 0, time.perf_counter()
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
                for rec in conn.execute(
                    f"SELECT id, version, {', '.join(cols)} FROM {table} WHERE id = ANY(%s)",  # noqa: S608
                    (oids,),
                ).fetchall():
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


def floor_json_agg(user_id: int, limit: int) -> tuple[int, float]:
    """The same pages, PostgreSQL building their JSON (json_agg) itself."""
    dsn = _dsn()
    tables = {t.label: t.model._meta.db_table for t in registry.all_types()}
    count, after, started = 0, 0, time.perf_counter()
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
            parts = []
            for model, oids in by_model.items():
                (text,) = conn.execute(
                    "SELECT json_agg(json_build_object('model', %s::text, 'id', o.id, "
                    "'op', 'upsert', 'version', o.version, "
                    f"'data', to_jsonb(o) - 'id' - 'version'))::text FROM {tables[model]} o "  # noqa: S608
                    "WHERE o.id = ANY(%s)",
                    (model, oids),
                ).fetchone()
                parts.append(text or "[]")
                count += len(oids)
            b'{"changes":' + ",".join(parts).encode() + b"}"
    return count, time.perf_counter() - started


def _dsn() -> str:
    db = settings.DATABASES["default"]
    return f"host={db['HOST']} port={db['PORT'] or 5432} dbname={db['NAME']} user={db['USER']}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _write_every(user: object, pause: float, stop: Any) -> None:
    """Changes one of the first 50 customers of `user` every `pause` seconds
    until `stop` is set (the writer of `incremental`, in its own process)."""
    ids = list(
        registry.get(CUSTOMER).model.objects.filter(owner=user).values_list("pk", "version")[:50]
    )
    versions = {str(pk): v for pk, v in ids}
    keys = list(versions)
    while not stop.is_set():
        key = random.choice(keys)  # noqa: S311
        r = mutations_apply(
            user=user,
            mutations=[
                _m(CUSTOMER, key, {"phone": str(random.random())}, "update", versions[key])  # noqa: S311
            ],
        )
        versions[key] = r.results[0].version or versions[key]
        stop.wait(pause)
    connection.close()


def incremental(
    devices: list[tuple[str, str]],
    writer: object,
    seconds: float,
    every: float = 0.0,
) -> dict:
    """Each device pulls its increments in a loop while a writer changes a few
    objects of the user `writer`; latency of every pull. With `every`, a
    device pulls once per that many seconds (at a random phase), as devices on
    a timer or woken by a push do; without, back to back (the server's
    saturation)."""
    sessions = [session(t, d) for t, d in devices]
    cursors: list[str | None] = [None] * len(devices)
    # Each device first catches up (an initial sync of the small data set).
    for k, s in enumerate(sessions):
        while True:
            params = {"limit": 1000, **({"cursor": cursors[k]} if cursors[k] else {})}
            page = orjson.loads(s.get(f"{BASE}/api/v1/sync/pull/", params=params).content)
            cursors[k] = page["cursor"]
            if not page["has_more"]:
                break
    stop = threading.Event()
    fork = multiprocessing.get_context("fork")
    writing = fork.Event()
    # The writer runs in a process of its own: as a thread of this one it held
    # the interpreter for a few milliseconds at a time while it wrote, and the
    # devices' threads, back from the server, waited for it before they could
    # stop their clocks (p99 70-77 ms with it here, 59-62 in its own process,
    # same server and load).
    connection.close()  # the child opens its own
    writer_process = fork.Process(target=_write_every, args=(writer, 0.05, writing))
    writer_process.start()

    latencies: list[float] = []
    lock = threading.Lock()

    def device(k: int) -> None:
        s = sessions[k]
        pace = random.Random(k)
        if every:
            stop.wait(pace.uniform(0, every))
        while not stop.is_set():
            t0 = time.perf_counter()
            page = orjson.loads(
                s.get(
                    f"{BASE}/api/v1/sync/pull/", params={"cursor": cursors[k], "limit": 500}
                ).content
            )
            with lock:
                latencies.append((time.perf_counter() - t0) * 1000)
            cursors[k] = page["cursor"]
            if every:
                stop.wait(max(0.0, every - (time.perf_counter() - t0)))

    threads = [threading.Thread(target=device, args=(k,)) for k in range(len(devices))]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    writing.set()
    for t in threads:
        t.join()
    writer_process.join()
    return {
        "devices": len(devices),
        "pulls": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
    }


def push_batches(token: str, device: str, batches: list[list[dict]]) -> dict:
    s = session(token, device)
    statuses: dict[str, int] = {}
    started = time.perf_counter()
    for batch in batches:
        r = s.post(f"{BASE}/api/v1/sync/push/", orjson.dumps({"mutations": batch}))
        assert r.status_code == 200, r.content[:300]
        for result in orjson.loads(r.content)["results"]:
            statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    seconds = time.perf_counter() - started
    n = sum(map(len, batches))
    return {"mutations": n, "mutations_per_s": round(n / seconds), "statuses": statuses}


def cpu_seconds(pids: list[int], children: bool = False) -> float:
    """User + system CPU time the processes have used so far; with
    `children`, also that of their children that have ended (PostgreSQL's
    postmaster collects the time of backends that exit)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # gone
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
        if children:
            total += int(fields[13]) + int(fields[14])
    return total / tick


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL process, those that have ended included
    (a backend that exits during a measurement took its time with it: the
    difference came out negative)."""
    return cpu_seconds(postgres_pids(), children=True)


def postgres_pids() -> list[int]:
    out = subprocess.run(  # noqa: S603
        ["/usr/bin/pgrep", "-x", "postgres"], capture_output=True, text=True
    ).stdout
    return [int(p) for p in out.split()]


def push_concurrent(server: Server, pushers: list[tuple[str, str, list[list[dict]]]]) -> dict:
    """Several devices (each its own user) pushing batches at once: what the
    server, not one device's round trips, sustains; with the CPU time the
    server's workers and PostgreSQL spent on it."""
    workers = server.worker_pids()
    before = (cpu_seconds(workers), postgres_cpu_seconds(), time.process_time())
    started = time.perf_counter()
    with ThreadPoolExecutor(len(pushers)) as pool:
        runs = list(pool.map(lambda p: push_batches(*p), pushers))
    seconds = time.perf_counter() - started
    after = (cpu_seconds(workers), postgres_cpu_seconds(), time.process_time())
    n = sum(r["mutations"] for r in runs)
    statuses: dict[str, int] = {}
    for r in runs:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    per_500 = {
        name: round((a - b) / n * 500 * 1000, 1)
        for name, a, b in zip(("server_workers", "postgres", "client"), after, before, strict=True)
    }
    return {
        "devices": len(pushers),
        "mutations": n,
        "mutations_per_s": round(n / seconds),
        "statuses": statuses,
        "cpu_ms_per_500": per_500,
    }


def small_pushes(devices: list[tuple[str, str]], seconds: float) -> dict:
    counts = {"requests": 0, "mutations": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def device(token: str, device_id: str) -> None:
        s = session(token, device_id)
        rng = random.Random(device_id)
        while not stop.is_set():
            batch = [
                _m(CUSTOMER, str(uuid.uuid4()), {"name": f"small {rng.random():.6f}"})
                for _ in range(rng.randint(1, 5))
            ]
            r = s.post(f"{BASE}/api/v1/sync/push/", orjson.dumps({"mutations": batch}))
            assert r.status_code == 200, r.content[:300]
            with lock:
                counts["requests"] += 1
                counts["mutations"] += len(batch)

    started = time.perf_counter()
    with ThreadPoolExecutor(len(devices)) as pool:
        futures = [pool.submit(device, t, d) for t, d in devices]
        time.sleep(seconds)
        stop.set()
        for f in futures:
            f.result()
    elapsed = time.perf_counter() - started
    return {
        "devices": len(devices),
        "requests_per_s": round(counts["requests"] / elapsed),
        "mutations_per_s": round(counts["mutations"] / elapsed),
    }


def queries_in_process(user: object, limit: int) -> dict:
    """SQL statements per pull page and per push batch of 500, counted in process."""
    secret, device = device_token(user)
    client = Client(HTTP_AUTHORIZATION=f"Token {secret}", HTTP_X_DEVICE_ID=device)
    with CaptureQueriesContext(connection) as ctx:
        client.get("/api/v1/sync/pull/", {"limit": limit})
    pull = len(ctx)
    pusher = user_with(f"httpbench-q-{uuid.uuid4().hex[:8]}", 0)
    secret, device = device_token(pusher)
    client = Client(HTTP_AUTHORIZATION=f"Token {secret}", HTTP_X_DEVICE_ID=device)
    batch = objects_for(500, random.Random(3))
    with CaptureQueriesContext(connection) as ctx:
        r = client.post(
            "/api/v1/sync/push/",
            orjson.dumps({"mutations": batch}),
            content_type="application/json",
        )
    assert r.status_code == 200, r.content[:300]
    return {"pull_queries_per_page": pull, "push_queries_per_batch": len(ctx)}


# --- the run ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") == "1")
    parser.add_argument("--objects", type=int, default=None)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench needs PostgreSQL (DATABASE_URL)")
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        sys.exit(f"bench needs Redis (REDIS_URL={settings.REDIS_URL}): {exc}")
    quick = args.quick
    n = args.objects or (10_000 if quick else 100_000)
    seconds = 4 if quick else 12
    call_command("migrate", verbosity=0)
    print(f"data: one user with {n:,} objects ({'quick' if quick else 'full'} run)")
    big = user_with(f"httpbench-{n}", n)
    small = user_with("httpbench-inc", 300)
    Device.objects.filter(user__username__startswith="httpbench").delete()
    # Fresh tables have no statistics until autovacuum gets round to them, and
    # without them the planner reads a whole channel and sorts it (ten times
    # slower than the index scan it picks once it knows the table).
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    token, device = device_token(big)
    inc_devices = [device_token(small) for _ in range(32)]

    result: dict = {"cores": os.cpu_count(), "gunicorn_workers": args.workers, "dataset": {}}
    result["dataset"] = {"objects": n, "incremental_user_objects": 300}
    server = Server(args.workers)
    try:
        warm_up(token, device, args.workers)
        pulls = {}
        for limit in (100, 1000):
            pulls[limit] = initial_sync(token, device, limit, gzip=False)
            firsts = first_pages(token, device, limit)
            # The sync's own first page, and the median of a few more.
            pulls[limit]["first_pages_ms"] = firsts
            pulls[limit]["first_page_median_ms"] = percentile(firsts, 50)
            print(f"  pull limit {limit}: {pulls[limit]['objects_per_s']:,} objects/s")
        gz = initial_sync(token, device, 1000, gzip=True)
        result["initial_pull"] = {str(k): v for k, v in pulls.items()}
        result["initial_pull_gzip"] = gz
        result["baseline"] = {str(k): baseline_sync(token, k) for k in (100, 1000)}
        result["incremental"] = {
            str(k): incremental(inc_devices[:k], small, seconds) for k in (1, 8, 32)
        }
        result["incremental_paced"] = {
            "32": {"every_s": 1.0, **incremental(inc_devices, small, seconds * 2, every=1.0)}
        }
        run_id = uuid.uuid4().hex[:8]  # writers of this run start empty
        pusher = user_with(f"httpbench-pusher-{run_id}", 0)
        ptoken, pdevice = device_token(pusher)
        creates = objects_for(5_000 if quick else 10_000, random.Random(7))
        # Creates reference customers of the same batch only when they fit in it.
        batches = [creates[i : i + 500] for i in range(0, len(creates), 500)]
        result["push"] = push_batches(ptoken, pdevice, batches)
        # The same creates from four devices at once, half as many each.
        together = []
        for k in range(4):
            tok, dev = device_token(user_with(f"httpbench-pusher-{run_id}-{k}", 0))
            mine = objects_for(len(creates) // 2, random.Random(100 + k))
            together.append((tok, dev, [mine[i : i + 500] for i in range(0, len(mine), 500)]))
        result["push_concurrent"] = push_concurrent(server, together)
        made = list(
            registry.get(CUSTOMER)
            .model.objects.filter(owner=pusher)
            .values_list("pk", "version")[:5000]
        )
        rng = random.Random(9)
        ups = []
        for pk, version in made:
            if rng.random() < 0.1:  # stale, on a field the server also changed
                ups.append(
                    _m(CUSTOMER, str(pk), {"name": f"clash {rng.random()}"}, "update", version)
                )
            else:
                ups.append(_m(CUSTOMER, str(pk), {"phone": str(rng.random())}, "update", version))
        # The server moves on first for the stale tenth: a device changed the name.
        stale = [m for m in ups if m["data"].get("name")]
        for i in range(0, len(stale), 500):
            mutations_apply(
                user=pusher,
                mutations=[
                    _m(CUSTOMER, m["id"], {"name": "server moved on"}, "update", m["base_version"])
                    for m in stale[i : i + 500]
                ],
            )
        result["push_conflicting"] = push_batches(
            ptoken, pdevice, [ups[i : i + 500] for i in range(0, len(ups), 500)]
        )
        pushers = [device_token(user_with(f"httpbench-small-{run_id}-{k}", 0)) for k in range(64)]
        result["small_pushes"] = small_pushes(pushers, seconds)
        result["server_peak_rss_mb"] = server.peak_rss_mb()
    finally:
        server.stop()

    floors = []
    for _ in range(2):
        floors.append(floor_psycopg(big.pk, 1000))
        floors.append(floor_json_agg(big.pk, 1000))
    floor_n, floor_s = min(floors, key=lambda f: f[1] / max(f[0], 1))
    result["floor"] = {"objects": floor_n, "objects_per_s": round(floor_n / floor_s)}
    result.update(queries_in_process(big, 1000))

    p1000 = result["initial_pull"]["1000"]
    summary = {
        "pull_objects_per_s": p1000["objects_per_s"],
        "pull_objects_per_s_limit_100": result["initial_pull"]["100"]["objects_per_s"],
        "first_page_ms_limit_100": result["initial_pull"]["100"]["first_page_median_ms"],
        "floor_objects_per_s": result["floor"]["objects_per_s"],
        "baseline_objects_per_s": result["baseline"]["1000"]["objects_per_s"],
        "push_mutations_per_s": result["push"]["mutations_per_s"],
        "push_conflicting_mutations_per_s": result["push_conflicting"]["mutations_per_s"],
        "push_concurrent_mutations_per_s": result["push_concurrent"]["mutations_per_s"],
        "small_push_requests_per_s": result["small_pushes"]["requests_per_s"],
        "pull_queries_per_page": result["pull_queries_per_page"],
        "push_queries_per_batch": result["push_queries_per_batch"],
        "incremental_pull_p99_ms": result["incremental"]["32"]["p99_ms"],
        "incremental_pull_paced_p99_ms": result["incremental_paced"]["32"]["p99_ms"],
        "server_peak_rss_mb": result["server_peak_rss_mb"],
        "bytes_per_object": p1000["bytes_per_object"],
        "bytes_per_object_gzip": result["initial_pull_gzip"]["bytes_per_object"],
    }
    result["summary"] = summary
    rows = [
        (
            "initial pull, limit 100",
            f"{summary['pull_objects_per_s_limit_100']:,} objects/s",
            f"first page {summary['first_page_ms_limit_100']} ms (median of "
            f"{len(result['initial_pull']['100']['first_pages_ms'])}; the sync's own "
            f"{result['initial_pull']['100']['first_page_ms']} ms)",
        ),
        (
            "initial pull, limit 1000",
            f"{summary['pull_objects_per_s']:,} objects/s",
            f"{summary['pull_objects_per_s'] / summary['floor_objects_per_s']:.2f} x floor, "
            f"{summary['pull_objects_per_s'] / summary['baseline_objects_per_s']:.1f} x baseline",
        ),
        ("raw floor", f"{summary['floor_objects_per_s']:,} objects/s", "no HTTP"),
        (
            "hand-rolled baseline",
            f"{summary['baseline_objects_per_s']:,} objects/s",
            "DRF ModelViewSet, page numbers",
        ),
        (
            "bytes per object",
            f"{summary['bytes_per_object']} B",
            f"gzip {summary['bytes_per_object_gzip']} B "
            f"({summary['bytes_per_object'] / summary['bytes_per_object_gzip']:.1f}x)",
        ),
        (
            "incremental, back to back",
            f"p99 {summary['incremental_pull_p99_ms']} ms",
            " / ".join(
                f"{k}: p50 {v['p50_ms']} p99 {v['p99_ms']}"
                for k, v in result["incremental"].items()
            ),
        ),
        (
            "  32 devices, 1 pull/s each",
            f"p99 {summary['incremental_pull_paced_p99_ms']} ms",
            f"p50 {result['incremental_paced']['32']['p50_ms']} ms, "
            f"{result['incremental_paced']['32']['pulls']} pulls",
        ),
        (
            "push, 500/batch",
            f"{summary['push_mutations_per_s']:,} mutations/s",
            f"10% conflicting: {summary['push_conflicting_mutations_per_s']:,}/s",
        ),
        (
            "push, 4 devices at once",
            f"{summary['push_concurrent_mutations_per_s']:,} mutations/s",
            "CPU per 500: "
            + ", ".join(
                f"{k} {v} ms" for k, v in result["push_concurrent"]["cpu_ms_per_500"].items()
            ),
        ),
        (
            "small pushes, 64 devices",
            f"{summary['small_push_requests_per_s']:,} requests/s",
            f"{result['small_pushes']['mutations_per_s']:,} mutations/s",
        ),
        (
            "queries",
            f"{summary['pull_queries_per_page']} per page",
            f"{summary['push_queries_per_batch']} per push of 500",
        ),
        ("server peak RSS", f"{summary['server_peak_rss_mb']} MB", "largest worker"),
    ]
    print(f"\nover HTTP, gunicorn {args.workers} workers, {os.cpu_count()} cores, {n:,} objects")
    for name, value, extra in rows:
        print(f"{name:<26} {value:>22}   {extra}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"http-{stamp}.json").write_text(json.dumps(result, indent=2))
    chart(result, out / f"http-{stamp}.png")
    print(f"\nwrote {out / f'http-{stamp}.json'} and the chart beside it")


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    names = ["pull 100", "pull 1000", "baseline", "floor"]
    values = [
        result["initial_pull"]["100"]["objects_per_s"],
        result["initial_pull"]["1000"]["objects_per_s"],
        result["baseline"]["1000"]["objects_per_s"],
        result["floor"]["objects_per_s"],
    ]
    left.bar(names, values, color=["#417690", "#417690", "#999999", "#cccccc"])
    left.set_title("Initial sync (objects/s)")
    pushes = {"1 device": "push", "10% conflicting": "push_conflicting"}
    if "push_concurrent" in result:
        pushes["4 devices"] = "push_concurrent"
    middle.bar(list(pushes), [result[k]["mutations_per_s"] for k in pushes.values()])
    middle.set_title("Push, batches of 500 (mutations/s)")
    for k in ("p50_ms", "p95_ms", "p99_ms"):
        right.plot(
            [int(d) for d in result["incremental"]],
            [v[k] for v in result["incremental"].values()],
            marker="o",
            label=k.removesuffix("_ms"),
        )
    right.set_title("Incremental pull latency (ms)")
    right.set_xlabel("concurrent devices")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
