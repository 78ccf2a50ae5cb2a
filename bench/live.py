"""Instant: how soon a change reaches devices (`make bench` runs it last).

1. Wake-ups: write-to-wake-up latency of isolated writes (each for a device
   whose window is quiet), through the real path: the write commits, a real
   Celery worker (prefork, on Redis) fans it out, firebase-admin's sender
   posts it to a local fake FCM server, which notes when it arrived.
2. A burst of 100 writes for one device: the messages it gets.
3. Live pulls: commit-to-delivery latency for devices waiting on
   `manage.py serve_live` (uvicorn), each woken by a write of its user.
4. A thousand devices waiting on live pulls (held by a separate process):
   the live server's memory and threads, ordinary pull throughput on
   gunicorn beside it (against the same without the waiters), and how long
   one write to a channel all of them share takes to reach the last one.

Writes are made in this process (`mutations_apply`) at an offered load (a
pause between them), as devices do; latencies are from the moment the write
returned (committed, its fan-out queued) to the moment the message or the
page arrived, on one machine's monotonic clock. QUICK=1: smaller counts.
Needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL, a database of its own).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
QUICK = os.environ.get("QUICK") == "1"
WAIT = 50  # seconds a live pull waits (the server's maximum)


# --- the holder of a thousand live pulls (a process of its own, no Django) ---------------


async def _get(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str, headers: str
) -> tuple[int, bytes]:
    """One HTTP/1.1 GET on a kept-alive connection. Plain asyncio streams:
    httpx's pool looks through its connections on every request, which with
    a thousand of them made the client, not the server, the slow side."""
    reader, writer = conn
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def _hold_one(port: int, token: str, device: str, answers: list) -> None:
    headers = f"Authorization: Token {token}\r\nX-Device-Id: {device}\r\n"
    cursor = None
    conn = None
    while True:
        query = f"wait={WAIT}" + (f"&cursor={cursor}" if cursor else "")
        try:
            conn = conn or await asyncio.open_connection("127.0.0.1", port)
            status, body = await _get(conn, f"/api/v1/sync/live/?{query}", headers)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            conn = None
            await asyncio.sleep(1)
            continue
        if status != 200:
            answers.append((time.monotonic(), -status))
            await asyncio.sleep(1)
            continue
        page = json.loads(body)
        answers.append((time.monotonic(), len(page["changes"])))
        cursor = page["cursor"]


async def _hold(port: int, devices: list[tuple[str, str]], out: Path) -> None:
    answers: list[tuple[float, int]] = []
    tasks = [asyncio.create_task(_hold_one(port, t, d, answers)) for t, d in devices]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    out.write_text(json.dumps(answers))


def hold_main(argv: list[str]) -> None:
    port, devices_file, out = int(argv[0]), Path(argv[1]), Path(argv[2])
    asyncio.run(_hold(port, json.loads(devices_file.read_text()), out))


if __name__ == "__main__" and sys.argv[1:2] == ["hold"]:
    hold_main(sys.argv[2:])
    sys.exit(0)


# --- the bench ---------------------------------------------------------------------------

sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/syncserver_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/3")
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402

from bench.serving import SERVER_ENV, Session, gunicorn, pull_all, save  # noqa: E402
from config.celery import app  # noqa: E402
from devices.models import PushOutbox  # noqa: E402
from devices.services import device_register  # noqa: E402
from fieldwork.models import Team  # noqa: E402
from fieldwork.services import team_member_add  # noqa: E402
from sync.accounts.services import token_issue  # noqa: E402
from sync.engine.write import mutations_apply  # noqa: E402
from tests.devices.fake_fcm import FakeFCM  # noqa: E402
from tests.factories import customer, update  # noqa: E402

RUN = uuid.uuid4().hex[:8]
GUNICORN_PORT, LIVE_PORT = 8191, 8192
WINDOW = 10  # PUSH_COALESCE_SECONDS, the default


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def summary(latencies: list[float]) -> dict[str, Any]:
    return {
        "n": len(latencies),
        "p50_ms": ms(pct(latencies, 50)),
        "p99_ms": ms(pct(latencies, 99)),
        "max_ms": ms(max(latencies)),
    }


class Device:
    def __init__(self, user: Any, token: str | None = None) -> None:
        self.user = user
        self.id = uuid.uuid4()
        data: dict[str, Any] = {"platform": "android"}
        if token:
            data["push_token"] = token
        device_register(user=user, device_id=self.id, data=data)
        self.push_token = token

    def write(self, mutation: dict[str, Any]) -> float:
        """Apply one mutation as this device; returns when it had committed."""
        result = mutations_apply(user=self.user, mutations=[mutation], device_id=self.id)
        assert result.results[0].status in ("applied", "merged"), result.results[0]
        return time.monotonic()


def user(name: str) -> Any:
    return get_user_model().objects.create(username=f"live-{RUN}-{name}")


def rss_threads(pid: int) -> tuple[float, int]:
    rss, threads = 0.0, 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return round(rss, 1), threads


def waiting_now(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("sync_live_pulls_waiting "):
            return float(line.split()[1])
    return 0.0


def until(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- 1 and 2: wake-ups -------------------------------------------------------------------


def worker(fake: FakeFCM, credentials: Path) -> subprocess.Popen:
    app.control.purge()
    env = {
        **os.environ,
        "PUSH_BACKEND": "fcm",
        "FCM_CREDENTIALS": str(credentials),
        "FCM_ENDPOINT": fake.url,
        "PUSH_COALESCE_SECONDS": str(WINDOW),
    }
    proc = subprocess.Popen(  # noqa: S603 - our own worker
        [
            str(Path(sys.executable).with_name("celery")),
            "-A",
            "config",
            "worker",
            "-c",
            "2",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
    )
    until(lambda: bool(app.control.ping(timeout=0.5)), 60, "the Celery worker")
    return proc


def wakeups(fake: FakeFCM, writes: int, pause: float) -> dict[str, Any]:
    pairs = []
    for i in range(writes + 1):
        someone = user(f"w{i}")
        pairs.append((Device(someone), Device(someone, token=f"phone-{RUN}-{i}")))
    until(lambda: not PushOutbox.objects.exists(), 60, "the registrations' wake-ups")
    # A worker's first send fetches an OAuth token and opens connections, which
    # a worker that has been up for a while did long ago: not measured.
    writer, _ = pairs.pop()
    writer.write(customer(f"Warm-up {RUN}"))
    until(lambda: len(fake.arrivals) > 0, 60, "the warm-up wake-up")
    time.sleep(1)
    fake.arrivals.clear()
    committed: dict[str, float] = {}
    for writer, phone in pairs:
        assert phone.push_token is not None
        committed[phone.push_token] = writer.write(customer(f"Isolated {RUN}"))
        time.sleep(pause)
    until(lambda: len(fake.arrivals) >= writes, 60, "every wake-up")
    arrived = {token: at for token, at in fake.arrivals}
    return summary([arrived[token] - at for token, at in committed.items()])


def burst(fake: FakeFCM, writes: int = 100) -> dict[str, Any]:
    someone = user("burst")
    writer = Device(someone)
    phones = [Device(someone, token=f"burst-{RUN}-{i}") for i in range(10)]
    until(lambda: not PushOutbox.objects.exists(), 60, "the registrations' wake-ups")
    for phone in phones:  # quiet windows for everyone
        cache.delete(f"push:window:{phone.id}")
    time.sleep(1)
    made = customer(f"Burst {RUN}")
    started = time.monotonic()
    writer.write(made)
    for version in range(1, writes):
        writer.write(update("fieldwork.customer", made["id"], version, name=f"v{version}"))
    took = time.monotonic() - started
    time.sleep(WINDOW + 3)  # the trailing message comes at the window's end
    per_device = [len(fake.sent_to(p.push_token or "")) for p in phones]
    return {
        "writes": writes,
        "devices": len(phones),
        "burst_s": round(took, 2),
        "messages_per_device": sorted(set(per_device)),
        "window_s": WINDOW,
    }


# --- 3 and 4: live pulls -----------------------------------------------------------------


def serve_live(env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(  # noqa: S603 - our own server
        [sys.executable, "manage.py", "serve_live", "--port", str(LIVE_PORT)], cwd=ROOT, env=env
    )

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{LIVE_PORT}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    until(up, 60, "serve_live")
    return proc


def live_delivery(n: int, pause: float) -> dict[str, Any]:
    pairs = []
    for i in range(n):
        someone = user(f"l{i}")
        pairs.append((Device(someone), Device(someone), token_issue(user=someone, name="b")[1]))
    arrived: dict[int, float] = {}
    ready = threading.Barrier(n + 1)

    def wait_on(i: int) -> None:
        _, tablet, token = pairs[i]
        headers = {"Authorization": f"Token {token}", "X-Device-Id": str(tablet.id)}
        with httpx.Client(base_url=f"http://127.0.0.1:{LIVE_PORT}", headers=headers) as c:
            cursor = None
            while True:  # up to date first
                page = c.get("/api/v1/sync/pull/", params={"cursor": cursor} if cursor else {})
                cursor = page.json()["cursor"]
                if not page.json()["has_more"]:
                    break
            ready.wait()
            r = c.get("/api/v1/sync/live/", params={"cursor": cursor, "wait": WAIT}, timeout=90)
            arrived[i] = time.monotonic()
            assert r.status_code == 200 and len(r.json()["changes"]) == 1, r.text

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(wait_on, i) for i in range(n)]
        ready.wait()
        until(lambda: waiting_now(LIVE_PORT) >= n, 30, "the live pulls to wait")
        committed = {}
        for i, (writer, _, _) in enumerate(pairs):
            committed[i] = writer.write(customer(f"Live {RUN}"))
            time.sleep(pause)
        for f in futures:
            f.result()
    return summary([arrived[i] - committed[i] for i in range(n)])


def reader_with(objects: int) -> tuple[str, str]:
    someone = user("reader")
    device = Device(someone)
    for start in range(0, objects, 500):
        batch = [customer(f"R{i}") for i in range(start, min(objects, start + 500))]
        mutations_apply(user=someone, mutations=batch, device_id=device.id)
    return token_issue(user=someone, name="bench")[1], str(device.id)


def pull_throughput(token: str, device: str, seconds: float, threads: int = 2) -> float:
    """Initial syncs at limit 100 by `threads` devices for `seconds`: objects/s."""
    headers = {"Authorization": f"Token {token}", "X-Device-Id": device}
    deadline = time.monotonic() + seconds
    counted = [0] * threads

    def run(k: int) -> None:
        s = Session(GUNICORN_PORT, headers)
        while time.monotonic() < deadline:
            counted[k] += pull_all(s, 100)["objects"]

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(threads)))
    return round(sum(counted) / (time.monotonic() - started))


def thousand_waiters(live: subprocess.Popen, waiters: int, seconds: float) -> dict[str, Any]:
    team = Team.objects.create(name=f"live-{RUN}")
    devices = []
    for i in range(waiters):
        someone = user(f"t{i}")
        team_member_add(team=team, user=someone)
        devices.append((token_issue(user=someone, name="b")[1], str(Device(someone).id)))
    token, device = reader_with(2000)
    idle_rss, idle_threads = rss_threads(live.pid)
    alone = [pull_throughput(token, device, seconds)]

    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    (tmp / "devices.json").write_text(json.dumps(devices))
    holder = subprocess.Popen(  # noqa: S603 - this script
        [
            sys.executable,
            __file__,
            "hold",
            str(LIVE_PORT),
            str(tmp / "devices.json"),
            str(tmp / "a"),
        ],
    )
    started = time.monotonic()
    until(lambda: waiting_now(LIVE_PORT) >= waiters, 120, f"{waiters} live pulls to wait")
    established = time.monotonic() - started
    held_rss, held_threads = rss_threads(live.pid)
    beside = pull_throughput(token, device, seconds)

    # One write in the channel all of them share.
    someone = get_user_model().objects.get(username=f"live-{RUN}-t0")
    committed = Device(someone).write(customer(f"Everyone {RUN}", team=str(team.pk)))
    # Every one answered, and asked again.
    until(lambda: waiting_now(LIVE_PORT) < waiters, 30, "the live pulls to answer")
    until(lambda: waiting_now(LIVE_PORT) >= waiters, 120, "the live pulls to be asked again")
    holder.send_signal(signal.SIGTERM)
    holder.wait(30)
    held = json.loads((tmp / "a").read_text())
    answers = [(at, n) for at, n in held if n == 1 and at > committed]
    alone.append(pull_throughput(token, device, seconds))
    return {
        "waiters": waiters,
        "established_s": round(established, 1),
        "live_server_rss_mb": {"idle": idle_rss, f"{waiters}_waiting": held_rss},
        "live_server_threads": {"idle": idle_threads, f"{waiters}_waiting": held_threads},
        "pull_objects_per_s": {"without_waiters": alone, f"beside_{waiters}_waiters": beside},
        "one_write_to_all": {
            "answered": len(answers),
            "last_ms": ms(max(at for at, _ in answers) - committed) if answers else None,
            "p50_ms": ms(pct([at - committed for at, _ in answers], 50)) if answers else None,
        },
    }


def main() -> None:
    call_command("migrate", verbosity=0)
    # Wake-ups earlier runs left behind (their worker gone, their tasks purged).
    PushOutbox.objects.all().delete()
    result: dict[str, Any] = {"quick": QUICK}
    fake = FakeFCM().start()
    credentials = Path(tempfile.mkdtemp(prefix="bench-fcm-")) / "key.json"
    credentials.write_text(json.dumps(fake.service_account()))
    celery = worker(fake, credentials)
    try:
        result["wakeup_latency"] = wakeups(fake, 40 if QUICK else 200, pause=0.05)
        print("wake-up latency:", result["wakeup_latency"], flush=True)
        result["burst"] = burst(fake)
        print("burst:", result["burst"], flush=True)
    finally:
        celery.terminate()
        celery.wait(30)
        fake.stop()

    env = {**os.environ, **SERVER_ENV, "METRICS_ALLOWED_IPS": "127.0.0.1/32"}
    live = serve_live(env)
    web = gunicorn(ROOT, GUNICORN_PORT, 2, env)
    try:
        result["live_delivery"] = live_delivery(20 if QUICK else 50, pause=0.1)
        print("live pull delivery:", result["live_delivery"], flush=True)
        result["thousand"] = thousand_waiters(live, 200 if QUICK else 1000, 5 if QUICK else 10)
        print("waiters:", result["thousand"], flush=True)
    finally:
        for proc in (web, live):
            proc.terminate()
            proc.wait(30)
    save("live-quick" if QUICK else "live", result)


if __name__ == "__main__":
    main()
