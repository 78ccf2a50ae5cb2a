"""`make run`'s server, the embedded default (SQLite, no Redis, Celery eager,
Django's threaded development server), serves live pulls: a push by one
device ends another device's wait, woken in the process (no PostgreSQL
NOTIFY there)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

from tests.live import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_make_runs_server_ends_a_live_pull_at_a_push(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")} | {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DEBUG": "1",
        "LOG_LEVEL": "WARNING",
    }
    manage = [sys.executable, "manage.py"]
    for step in (["migrate", "--noinput"], ["seed_demo"]):
        subprocess.run([*manage, *step], cwd=ROOT, env=env, check=True, capture_output=True)  # noqa: S603
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own server
        [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/sync/models/", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "runserver did not start"
                time.sleep(0.2)
        token = httpx.post(
            f"{base}/auth/token/", json={"username": "demo", "password": "demo-pass-1234"}
        ).json()["token"]

        def device() -> httpx.Client:
            device_id = str(uuid.uuid4())
            auth = {"Authorization": f"Token {token}"}
            assert (
                httpx.post(
                    f"{base}/devices/", json={"id": device_id, "platform": "ios"}, headers=auth
                ).status_code
                == 201
            )
            return httpx.Client(base_url=base, headers=auth | {"X-Device-Id": device_id})

        phone, tablet = device(), device()
        cursor = None
        while True:
            page = tablet.get(
                "/sync/pull/", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}
            ).json()
            cursor = page["cursor"]
            if not page["has_more"]:
                break
        answer: list[httpx.Response] = []
        started = time.monotonic()
        waiting = threading.Thread(
            target=lambda: answer.append(
                tablet.get("/sync/live/", params={"cursor": cursor, "wait": 30}, timeout=60)
            )
        )
        waiting.start()
        time.sleep(1)
        assert waiting.is_alive(), "the live pull did not wait"
        shop = str(uuid.uuid4())
        pushed = phone.post(
            "/sync/push/",
            json={
                "mutations": [
                    {
                        "mutation_id": str(uuid.uuid4()),
                        "model": "fieldwork.customer",
                        "op": "create",
                        "id": shop,
                        "base_version": None,
                        "data": {"name": "Embedded shop"},
                    }
                ]
            },
        )
        assert pushed.status_code == 200, pushed.text
        waiting.join(20)
        assert not waiting.is_alive(), "the push did not end the wait"
        assert time.monotonic() - started < 20
        [response] = answer
        assert response.status_code == 200
        assert [c["id"] for c in response.json()["changes"]] == [shop]
    finally:
        server.terminate()
        server.wait(10)
