"""Pulls served from a streaming standby beside the primary, in one run
(`make bench` runs it): a primary and its hot standby of their own (made as
tests/scale does: initdb, pg_basebackup, as the postgres user), one user
with OBJECTS customers, and two gunicorn servers on them, one reading from
the primary and one reading from the standby (READ_DATABASE_URL). Each is
measured in turn, twice: initial syncs at limit 100 (objects/s) and caught-up
incremental pulls (pulls/s), by 2 devices at once. Both clusters share this
machine's two cores with the servers and the client: the figures compare the
two paths, they are not the capacity a replica adds on its own hardware.
QUICK=1: 5,000 objects and shorter runs. Needs root (runuser) and
PostgreSQL's server tools.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from bench.serving import SERVER_ENV, Session, gunicorn, pull_all, save  # noqa: E402
from tests.scale.conftest import manage, primary_and_standby  # noqa: E402

QUICK = os.environ.get("QUICK") == "1"
OBJECTS = 5_000 if QUICK else 20_000
SECONDS = 4 if QUICK else 10
PORTS = {"primary": 8193, "standby": 8194}

MAKE_DATA = """
import uuid
from django.contrib.auth import get_user_model
from devices.services import device_register
from sync.accounts.services import token_issue
from sync.engine.write import mutations_apply
user = get_user_model().objects.create(username="standby-bench")
device = uuid.uuid4()
device_register(user=user, device_id=device, data={{"platform": "android"}})
for start in range(0, {n}, 500):
    mutations_apply(user=user, device_id=device, mutations=[
        {{"mutation_id": str(uuid.uuid4()), "model": "fieldwork.customer", "op": "create",
          "id": str(uuid.uuid4()), "base_version": None, "data": {{"name": f"C{{i}}"}}}}
        for i in range(start, min({n}, start + 500))])
print(token_issue(user=user, name="bench")[1], device)
"""


def measure(port: int, token: str, device: str) -> dict[str, float]:
    headers = {"Authorization": f"Token {token}", "X-Device-Id": device}

    def initial(_: int) -> int:
        s, count, deadline = Session(port, headers), 0, time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            count += pull_all(s, 100)["objects"]
        return count

    def incremental(_: int) -> int:
        s = Session(port, headers)
        cursor = None
        while True:  # caught up first
            page = orjson.loads(
                s.get(
                    "/api/v1/sync/pull/", {"limit": 1000, **({"cursor": cursor} if cursor else {})}
                ).content
            )
            cursor = page["cursor"]
            if not page["has_more"]:
                break
        pulls, deadline = 0, time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            s.get("/api/v1/sync/pull/", {"cursor": cursor}).raise_for_status()
            pulls += 1
        return pulls

    out = {}
    for name, fn in (("initial_objects_per_s", initial), ("incremental_pulls_per_s", incremental)):
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            total = sum(pool.map(fn, range(2)))
        out[name] = round(total / (time.monotonic() - started))
    return out


def main() -> None:
    with primary_and_standby() as cluster:
        manage(cluster, "migrate", "--noinput")
        made = manage(cluster, "shell", "-c", MAKE_DATA.format(n=OBJECTS))
        token, device = made.strip().splitlines()[-1].split()
        cluster.sql(cluster.primary_port, "ANALYZE")
        cluster.replayed(120)
        env = {**os.environ, **SERVER_ENV, "DATABASE_URL": cluster.primary}
        env.pop("READ_DATABASE_URL", None)
        servers = {
            "primary": gunicorn(ROOT, PORTS["primary"], 2, env),
            "standby": gunicorn(
                ROOT, PORTS["standby"], 2, {**env, "READ_DATABASE_URL": cluster.standby}
            ),
        }
        try:
            runs: dict[str, list[dict[str, float]]] = {"primary": [], "standby": []}
            for _ in range(2):
                for name in ("primary", "standby"):
                    runs[name].append(measure(PORTS[name], token, device))
                    print(name, runs[name][-1], flush=True)
        finally:
            for server in servers.values():
                server.terminate()
                server.wait(10)
    result = {"objects": OBJECTS, "seconds": SECONDS, **runs}
    save("standby-quick" if QUICK else "standby", result)


if __name__ == "__main__":
    main()
