"""Assertions and clients shared by the API tests."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import subprocess
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient


def https_client(**headers: str) -> APIClient:
    """A client without credentials; production settings redirect plain HTTP."""
    client = APIClient()
    client.credentials(HTTP_X_FORWARDED_PROTO="https", **headers)
    return client


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The contract's error shape: JSON with a machine `code` and a human `detail`,
    never an HTML page or a traceback."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    text = response.content.decode()
    assert "<html" not in text.lower() and "Traceback" not in text
    return body


def wire_datetime(value: dt.datetime) -> str:
    """A datetime as the protocol writes it: UTC with a `Z` suffix, microseconds when
    non-zero (docs/protocol.md, "Wire types and encoding")."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def push_as_one_batch(actor: Any, *mutations: dict[str, Any]) -> list[dict[str, Any]]:
    """Push after a full pull, and check that the push was written as one batch:
    its response cursor then skips the push's own changes. A push that fell back
    to one transaction per mutation (after a database error in the bulk write)
    hands back the cursor it started from, so its writes would come back on the
    next pull. Only meaningful for a push that writes something."""
    _, cursor = actor.pull_all()
    body = actor.push(*mutations, cursor=cursor)
    assert actor.pull(cursor=body["cursor"])["changes"] == [], "not written as one batch"
    return body["results"]


def sync_check_passes() -> str:
    """`manage.py sync_check` on the test database; fails the test with its list."""
    out = io.StringIO()
    try:
        call_command("sync_check", stdout=out)
    except CommandError as exc:
        pytest.fail(f"sync_check: {exc}\n{out.getvalue()}", pytrace=False)
    assert out.getvalue().startswith("sync_check ok"), out.getvalue()
    return out.getvalue()


def plan_nodes(sql: str, params: Any = None, *, analyze: bool = False) -> list[dict[str, Any]]:
    """Every node of PostgreSQL's plan for `sql`, flattened (EXPLAIN, as JSON;
    with `analyze`, run for its actual row counts)."""
    from django.db import connection

    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN ({options}) {sql}", params)
        found = cursor.fetchone()[0]
    found = found if isinstance(found, list) else json.loads(found)
    nodes, pending = [], [found[0]["Plan"]]
    while pending:
        node = pending.pop()
        nodes.append(node)
        pending += node.get("Plans", [])
    return nodes


def same_page(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Two pull responses hold the same page. Their cursors are compared by
    what they say, not as text: a cursor records the second it was issued,
    and two requests can fall on either side of a second."""
    from dataclasses import replace

    from sync.engine import cursor

    first, second = dict(one), dict(other)
    said = [replace(cursor.decode(page.pop("cursor")), t=0) for page in (first, second)]
    return first == second and said[0] == said[1]


def psql(sql: str) -> None:
    """Run `sql` with psql, another process on the test database: a write
    nothing of ours takes part in (no ORM, no request)."""
    db = connection.settings_dict
    binary = shutil.which("psql")
    assert binary, "the PostgreSQL client (psql) is not on PATH"
    subprocess.run(  # noqa: S603 - psql with the test's own statement
        [
            binary,
            "-h",
            db["HOST"] or "127.0.0.1",
            "-p",
            str(db["PORT"] or 5432),
            "-U",
            db["USER"] or "postgres",
            "-d",
            db["NAME"],
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
    )
