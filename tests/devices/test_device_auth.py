"""The caller's device is read with its token (sync/api/device_auth.py): one
statement for both, and the same answers as looking it up on its own."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import make_client
from tests.factories import UserFactory, customer
from tests.helpers import assert_error

pytestmark = pytest.mark.postgres


def device_statements(actor, method: str = "pull") -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        if method == "pull":
            actor.pull()
        else:
            actor.push(customer("Acme"))
    return [q["sql"] for q in queries if '"devices_device"' in q["sql"]]


def test_a_pull_reads_the_device_in_the_token_statement(alice):
    found = device_statements(alice)
    # A fresh device's first pull also records that it was seen.
    reads = [sql for sql in found if not sql.lstrip().startswith("WITH")]
    assert len(reads) == 1
    assert "sync_token" in reads[0]


def test_a_push_reads_the_device_in_the_token_statement(alice):
    reads = [sql for sql in device_statements(alice, "push") if "UPDATE" not in sql]
    assert len(reads) == 1
    assert "sync_token" in reads[0]


def test_another_users_device_is_refused(alice, make_actor):
    bob = make_actor()
    bob.client.credentials(
        HTTP_AUTHORIZATION=bob.client._credentials["HTTP_AUTHORIZATION"],
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_DEVICE_ID=str(alice.device_id),
    )
    response = bob.client.get("/api/v1/sync/pull/")
    assert_error(response, 403, "device_forbidden")


def test_an_unregistered_or_malformed_device_id_is_refused(db):
    client = make_client(UserFactory(), device_id=uuid.uuid4())
    assert_error(client.get("/api/v1/sync/pull/"), 403, "device_forbidden")
    client.credentials(
        HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"],
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_DEVICE_ID="not-a-uuid",
    )
    assert_error(client.get("/api/v1/sync/pull/"), 400, "bad_device_id")
