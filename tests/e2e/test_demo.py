"""`make demo` against a live server loaded with `make run`'s demo data,
its files on a real S3 API server (moto's, over HTTP): the demo's photo goes
up in presigned parts straight to the bucket and comes down on another device."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.conf import global_settings
from django.core.management import call_command

from client import demo
from sync.models import Blob, Conflict
from tests.live import gunicorn
from tests.sync.blob_helpers import S3Server

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def bucket() -> str:
    return f"demo-{os.urandom(4).hex()}"


@pytest.fixture(scope="module")
def live_gunicorn(django_db_setup: None, s3_server: S3Server, bucket: str) -> Iterator[str]:
    s3_server.storage(bucket)  # makes the bucket
    with gunicorn(
        LOG_LEVEL="WARNING",
        THROTTLE_USER="100000/min",
        BLOB_S3_BUCKET=bucket,
        BLOB_S3_ENDPOINT_URL=s3_server.url,
        BLOB_S3_ACCESS_KEY="test",
        BLOB_S3_SECRET_KEY="test",
    ) as base:
        yield base


def test_the_demo_merges_resolves_and_converges(
    live_gunicorn,
    s3_server,
    bucket,
    tmp_path,
    settings,
    capsys,
):
    # The server checks passwords with the real hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    call_command("seed_demo")
    demo.run(live_gunicorn, tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert any("applied   written as sent" in line for line in lines)
    assert any("merged    the phone's title kept" in line for line in lines)
    assert any("conflict  title changed on both sides" in line for line in lines)
    assert any("/admin/sync/conflict/" in line and "/change/" in line for line in lines)
    assert "converged: 3 devices, 64 objects each" in lines
    # An app at equipment's version 1 and a current one edit the same boiler.
    assert "  demo-phone   applied" in lines and "  old-phone    merged" in lines
    assert any('serial SN-REPLACED, location "Main house, Boiler room"' in line for line in lines)
    assert any('room "Boiler room", kind boiler' in line for line in lines)
    assert "converged: 4 devices, 64 objects each" in lines
    # A photo attached on the phone, uploaded to the bucket, fetched on the tablet.
    assert any("demo-phone   attached boiler-after.png" in line for line in lines)
    assert any("demo-tablet  fetched it when shown" in line for line in lines)
    [photo] = Blob.objects.filter(state="complete", is_thumbnail=False)
    assert f"blobs/{photo.sha256[:2]}/{photo.sha256}" in s3_server.keys(bucket)
    assert not [k for k in s3_server.keys(bucket) if k.startswith("uploads/")]
    # It leaves one conflict open for the admin's queue, and says where.
    assert "left open for staff" in lines[-2] and "/admin/sync/conflict/" in lines[-1]
    conflict_id = lines[-1].rstrip("/").split("/")[-2]
    assert Conflict.objects.get(pk=conflict_id).status == "open"
