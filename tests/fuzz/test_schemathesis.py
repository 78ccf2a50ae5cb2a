"""Fuzzing the API against its own OpenAPI document (schemathesis).

A live gunicorn on PostgreSQL serves `/api/v1/schema/`; schemathesis' CLI
generates requests from it, valid and invalid ones (its examples, coverage,
fuzzing and stateful phases), and checks every response: no 5xx, a status
code the schema documents for that operation, the documented content type,
and a body that matches the documented schema.

Three runs, each with its own token:
- a device user with a registered device (sent as `X-Device-Id`): auth,
  discovery, pull, push and conflicts;
- the same user on the device endpoints, last, since the fuzzer may delete
  the device the other run needs;
- an unrestricted service account with every model permission: the
  back-office data API.

`FUZZ_EXAMPLES` is the number of examples per operation (CI-sized default);
`FUZZ_SEED` replays a run (its seed is printed on failure).
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from devices.services import device_register
from sync.accounts.services import service_account_create, token_issue
from sync.choices import Op
from sync.engine.push import push_apply
from tests.factories import UserFactory, customer, mutation, update, work_order
from tests.live import gunicorn

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
SEED = os.environ.get("FUZZ_SEED")
CONFIG = Path(__file__).with_name("schemathesis.toml")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)
UUID = re.compile(r"[0-9a-fA-F-]{32,36}")


@pytest.fixture(scope="module")
def server(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The live server; its log (a line per refused request, and the traceback
    of any 5xx) is shown when a run fails."""
    log = tmp_path_factory.mktemp("fuzz-server") / "gunicorn.log"
    # Throttles are under test elsewhere (tests/security); here they would only
    # turn the fuzzer's requests into 429s. The login lockout stays on.
    with gunicorn(
        workers=2,
        log=log,
        THROTTLE_USER="1000000/min",
        THROTTLE_ANON="1000000/min",
        THROTTLE_TOKEN="1000000/min",
    ) as base:
        yield Live(base, log)


@dataclass
class Live:
    base: str
    log: Path

    def errors(self) -> str:
        """The server's log from its first error on (tracebacks of 5xx answers)."""
        text = self.log.read_text(errors="replace")
        first = min(
            (i for i in (text.find(" ERROR "), text.find("Traceback")) if i >= 0), default=-1
        )
        return text[first:][-20000:] if first >= 0 else ""


def _device_user() -> tuple[str, uuid.UUID]:
    """A user with a registered device, some objects, and an open conflict."""
    user = UserFactory()
    device_id = uuid.uuid4()
    device = device_register(user=user, device_id=device_id, data={"platform": "android"})[0]
    c = customer("Fuzz Ltd", phone="1")
    order = work_order(c["id"], "Boiler")
    note = mutation("fieldwork.note", Op.CREATE, data={"work_order": order["id"], "body": "x"})
    results = push_apply(
        user=user,
        device=device,
        mutations=[c, order, note, update("fieldwork.customer", c["id"], 1, phone="2")],
    ).results
    assert {r.status for r in results} == {"applied"}
    # The same field changed from version 1 again: an open conflict of this user.
    stale = update("fieldwork.customer", c["id"], 1, phone="3")
    assert push_apply(user=user, device=device, mutations=[stale]).results[0].status == "conflict"
    return token_issue(user=user, name="fuzz")[1], device_id


def _service_account() -> str:
    account = service_account_create(username=f"fuzz-{uuid.uuid4().hex[:8]}")
    account.user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="fieldwork")
    )
    return token_issue(user=account.user, name="fuzz")[1]


def _fuzz(
    server: Live, tmp_path: Path, name: str, token: str, paths: str, device_id: Any = ""
) -> dict[str, Any]:
    """One schemathesis run over the operations whose path matches `paths`;
    returns its summary (from the run's HAR and JSON reports)."""
    base = server.base
    reports = tmp_path / name
    command = [
        str(Path(sys.executable).with_name("st")),
        "--no-color",
        "--config-file",
        str(CONFIG),
        "run",
        f"{base}/api/v1/schema/",
        "--url",
        base,
        "-H",
        f"Authorization: Token {token}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--include-path-regex",
        paths,
        # One worker: with several, hypothesis (in schemathesis' threads) hits a
        # CPython 3.11 bug in ast.parse ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--report",
        "json,har",
        "--report-dir",
        str(reports),
        "--output-truncate",
        "false",
        *(["--seed", SEED] if SEED else []),
    ]
    started = time.monotonic()
    run = subprocess.run(  # noqa: S603 - our own fixed command line
        command,
        cwd=tmp_path,  # hypothesis keeps its example database in the working directory
        env={**os.environ, "FUZZ_DEVICE_ID": str(device_id)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.monotonic() - started
    entries = json.loads(next(reports.glob("har-*.json")).read_text())["log"]["entries"]
    statuses: collections.Counter[tuple[str, str, int]] = collections.Counter()
    for entry in entries:
        path = UUID.sub("{id}", entry["request"]["url"].removeprefix(base).split("?")[0])
        statuses[(entry["request"]["method"], path, entry["response"]["status"])] += 1
    report = json.loads(next(reports.glob("json-*.json")).read_text())
    summary = {
        "requests": len(entries),
        "seconds": round(seconds, 1),
        "test_cases": report["test_cases"]["generated"],
        "statuses": statuses,
    }
    print(f"fuzz[{name}]: {len(entries)} requests in {seconds:.0f} s ({EXAMPLES} examples)")
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:] + server.errors()
    return summary


def _answered(summary: dict[str, Any], method: str, path: str, status: int) -> int:
    return summary["statuses"][(method, path, status)]


def test_device_endpoints_survive_the_fuzzer(server, tmp_path):
    token, device_id = _device_user()
    # Not auth/logout/: a fuzzed logout revokes the token every later call needs
    # (tests/sync/accounts/test_tokens.py covers it).
    sync = _fuzz(
        server, tmp_path, "sync", token, r"^/api/v1/(auth/token|sync)/", device_id=device_id
    )
    # The run reached the logic behind the device check, not only its refusals.
    assert _answered(sync, "GET", "/api/v1/sync/pull/", 200) > 0
    assert _answered(sync, "POST", "/api/v1/sync/push/", 200) > 0
    assert _answered(sync, "GET", "/api/v1/sync/conflicts/", 200) > 0
    devices = _fuzz(server, tmp_path, "devices", token, r"^/api/v1/devices/")
    assert _answered(devices, "POST", "/api/v1/devices/", 201) > 0
    assert _answered(devices, "PATCH", "/api/v1/devices/{id}/", 200) > 0


def test_the_data_api_survives_the_fuzzer(server, tmp_path):
    _device_user()  # something to list
    data = _fuzz(server, tmp_path, "data", _service_account(), r"^/api/v1/data/")
    assert _answered(data, "GET", "/api/v1/data/fieldwork.customer/", 200) > 0
    assert _answered(data, "POST", "/api/v1/data/fieldwork.customer/", 201) > 0
    assert _answered(data, "POST", "/api/v1/data/fieldwork.customer/bulk/", 200) > 0
