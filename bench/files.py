"""What files cost (`make bench` runs it): gunicorn (2 workers) on
PostgreSQL, one device uploading and fetching files of SIZE bytes through the
protocol (docs/protocol.md, "Files"), on each store:

- `filesystem`: the embedded default; the parts go through the server's own
  part URLs, the bytes through its workers;
- `s3`: moto's S3 server on this machine, over HTTP (the parts go to it
  through presigned URLs; the server only reads the whole file back to check
  it, then copies it in the bucket). An in-memory S3 on the same two cores:
  it shows our side's cost, not a real S3's latency or bandwidth.

Per store, FILES files each: the whole upload (ask, every part, complete) in
MiB/s, the `complete` call alone (put together, read back and hashed,
published), a download through the link, and asking for a file the server
has already (the skip).

QUICK=1: 16 MiB files, three of each.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from bench.serving import SERVER_ENV, gunicorn, save  # noqa: E402
from devices.services import device_register  # noqa: E402
from sync.accounts.services import token_issue  # noqa: E402

QUICK = os.environ.get("QUICK") == "1"
SIZE = (16 if QUICK else 48) * 1024 * 1024
FILES = 3 if QUICK else 6
PORT = 8196
MIB = 1024 * 1024


def account() -> dict[str, str]:
    user = get_user_model().objects.create(username=f"files-bench-{uuid.uuid4().hex[:8]}")
    device = uuid.uuid4()
    device_register(user=user, device_id=device, data={"platform": "android"})
    return {
        "Authorization": f"Token {token_issue(user=user, name='bench')[1]}",
        "X-Device-Id": str(device),
    }


def one_file(api: httpx.Client, links: httpx.Client) -> dict[str, float]:
    data = os.urandom(SIZE)
    sha = hashlib.sha256(data).hexdigest()
    started = time.perf_counter()
    body = (
        api.post(
            "/api/v1/blobs/uploads/",
            json={"sha256": sha, "size": SIZE, "content_type": "video/mp4"},
        )
        .raise_for_status()
        .json()
    )
    for part in body["parts"]:
        offset = (part["number"] - 1) * body["part_size"]
        links.put(part["url"], content=data[offset : offset + part["size"]]).raise_for_status()
    before_complete = time.perf_counter()
    done = api.post(f"/api/v1/blobs/uploads/{body['upload_id']}/complete/").raise_for_status()
    finished = time.perf_counter()
    assert done.json()["state"] == "complete"  # noqa: S101 - a bench that measures refusals lies
    skip_started = time.perf_counter()
    again = api.post(
        "/api/v1/blobs/uploads/",
        json={"sha256": sha, "size": SIZE, "content_type": "video/mp4"},
    ).raise_for_status()
    skipped = time.perf_counter()
    assert again.json()["state"] == "complete"  # noqa: S101
    info = api.get(f"/api/v1/blobs/{sha}/").raise_for_status().json()
    down_started = time.perf_counter()
    got = links.get(info["url"]).raise_for_status().content
    down = time.perf_counter() - down_started
    assert hashlib.sha256(got).hexdigest() == sha  # noqa: S101
    return {
        "upload_mib_per_s": SIZE / MIB / (finished - started),
        "complete_ms": (finished - before_complete) * 1000,
        "skip_ms": (skipped - skip_started) * 1000,
        "download_mib_per_s": SIZE / MIB / down,
    }


def measure(store: str, env: dict[str, str], headers: dict[str, str]) -> dict[str, float]:
    server = gunicorn(ROOT, PORT, 2, {**os.environ, **SERVER_ENV, **env})
    runs: list[dict[str, float]] = []
    try:
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{PORT}", headers=headers, timeout=120) as api,
            httpx.Client(timeout=120) as links,
        ):
            for _ in range(FILES):
                runs.append(one_file(api, links))
    finally:
        server.terminate()
        server.wait(10)
    result = {key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]}
    print(store, result, flush=True)
    return result


def main() -> None:
    call_command("migrate", "--noinput", verbosity=0)
    headers = account()
    results = {}
    with tempfile.TemporaryDirectory() as root:
        results["filesystem"] = measure("filesystem", {"BLOB_ROOT": root}, headers)
    import boto3
    from moto.server import ThreadedMotoServer

    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    url = f"http://127.0.0.1:{s3.get_host_and_port()[1]}"
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 - the local S3 server's, not a secret
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    try:
        results["s3"] = measure(
            "s3",
            {
                "BLOB_S3_BUCKET": bucket,
                "BLOB_S3_ENDPOINT_URL": url,
                "BLOB_S3_ACCESS_KEY": "bench",
                "BLOB_S3_SECRET_KEY": "bench",
            },
            headers,
        )
    finally:
        s3.stop()
    save("files-quick" if QUICK else "files", {"size_bytes": SIZE, "files": FILES, **results})


if __name__ == "__main__":
    main()
