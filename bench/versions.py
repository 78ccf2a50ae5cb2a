"""What serving an older app costs (`make bench` runs it): gunicorn (2
workers) on PostgreSQL, one user with OBJECTS pieces of the demo's equipment
(schema version 4). Measured in turn, alternated, twice each:

- initial syncs at limit 1,000 (objects/s; the equipment and one customer)
  by an app speaking the current schema, and by one built against version
  1 (every upsert downgraded: `serial`, `location`, no `kind`);
- pushes of 500 creates (ms each), in the current shape and in version 1's
  (each upgraded before it is checked).

QUICK=1: 5,000 objects and shorter runs.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from bench.serving import SERVER_ENV, Session, gunicorn, pull_all, save  # noqa: E402
from devices.services import device_register  # noqa: E402
from sync.accounts.services import token_issue  # noqa: E402
from sync.engine.write import mutations_apply  # noqa: E402

QUICK = os.environ.get("QUICK") == "1"
OBJECTS = 5_000 if QUICK else 20_000
SECONDS = 4 if QUICK else 10
PUSHES = 6 if QUICK else 15
PORT = 8195
V1 = "fieldwork.customer=1, fieldwork.workorder=1, fieldwork.note=1, fieldwork.equipment=1"


def make_data() -> tuple[str, str, str]:
    user = get_user_model().objects.create(username=f"versions-bench-{uuid.uuid4().hex[:8]}")
    device = uuid.uuid4()
    device_register(user=user, device_id=device, data={"platform": "android"})
    customer = str(uuid.uuid4())
    made = _create("fieldwork.customer", {"name": "Bench"}, customer)
    mutations_apply(user=user, mutations=[made])
    for start in range(0, OBJECTS, 500):
        mutations_apply(
            user=user,
            mutations=[
                _create("fieldwork.equipment", _current(customer, i))
                for i in range(start, min(OBJECTS, start + 500))
            ],
        )
    return token_issue(user=user, name="bench")[1], str(device), customer


def _create(model: str, data: dict, object_id: str | None = None) -> dict:
    return {
        "mutation_id": str(uuid.uuid4()),
        "model": model,
        "op": "create",
        "id": object_id or str(uuid.uuid4()),
        "base_version": None,
        "data": data,
    }


def _current(customer: str, i: int) -> dict:
    return {
        "customer": customer,
        "name": f"Boiler {i}",
        "kind": "boiler",
        "serial_number": f"SN-{i}",
        "building": "Main house",
        "room": "Basement",
    }


def _v1(customer: str, i: int) -> dict:
    return {
        "customer": customer,
        "name": f"Boiler {i}",
        "serial": f"SN-{i}",
        "location": "Main house, Basement",
    }


def initial(session: Session) -> float:
    count, started = 0, time.monotonic()
    while time.monotonic() - started < SECONDS:
        count += pull_all(session, 1000)["objects"]
    return count / (time.monotonic() - started)


def push_ms(session: Session, customer: str, shape) -> float:  # noqa: ANN001
    times = []
    for _ in range(PUSHES):
        made = [_create("fieldwork.equipment", shape(customer, i)) for i in range(500)]
        body = {"mutations": made}
        started = time.perf_counter()
        answer = session.post("/api/v1/sync/push/", orjson.dumps(body))
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        statuses = {r["status"] for r in orjson.loads(answer.content)["results"]}
        assert statuses == {"applied"}, statuses  # noqa: S101 - a bench that measures refusals lies
    return statistics.median(times)


def main() -> None:
    call_command("migrate", "--noinput", verbosity=0)
    token, device, customer = make_data()
    server = gunicorn(ROOT, PORT, 2, {**os.environ, **SERVER_ENV})
    base = {
        "Authorization": f"Token {token}",
        "X-Device-Id": device,
        "Content-Type": "application/json",
    }
    apps = {"current": base, "version_1": {**base, "X-Schema-Version": V1}}
    shapes = {"current": _current, "version_1": _v1}
    runs: dict[str, dict[str, list[float]]] = {
        name: {"initial_objects_per_s": [], "push_500_ms": []} for name in apps
    }
    try:
        for _ in range(2):
            for name, headers in apps.items():
                session = Session(PORT, headers)
                runs[name]["initial_objects_per_s"].append(round(initial(session)))
                runs[name]["push_500_ms"].append(round(push_ms(session, customer, shapes[name]), 1))
                print(name, {k: v[-1] for k, v in runs[name].items()}, flush=True)
    finally:
        server.terminate()
        server.wait(10)
    save("versions-quick" if QUICK else "versions", {"objects": OBJECTS, **runs})


if __name__ == "__main__":
    main()
