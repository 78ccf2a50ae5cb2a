"""Blob storage for the tests: the file system (a temporary folder) or a real
S3 API server on this machine (moto's server mode, over HTTP), and a device's
side of the upload protocol."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from sync.engine import blobstore

BUCKET = "sync-blobs-test"
PART = 5 * 1024 * 1024  # S3's smallest part


class S3Server:
    """moto's S3 server in a thread: a real HTTP S3 API (signatures and
    expiry of presigned URLs are not checked by it: those are ours to check
    on the file-system store)."""

    def __init__(self) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.get_host_and_port()[1]}"
        self.client = boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )

    def storage(self, bucket: str) -> dict[str, Any]:
        self.client.create_bucket(Bucket=bucket)
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": self.url,
                "access_key": "test",
                "secret_key": "test",
                "region_name": "us-east-1",
                "addressing_style": "path",
                "signature_version": "s3v4",
                "default_acl": None,
                "file_overwrite": True,
            },
        }

    def keys(self, bucket: str) -> list[str]:
        answer = self.client.list_objects_v2(Bucket=bucket)
        return sorted(o["Key"] for o in answer.get("Contents", []))

    def stop(self) -> None:
        self.server.stop()


def use_storage(settings: Any, storage: dict[str, Any]) -> None:
    settings.STORAGES = {**settings.STORAGES, "sync_blobs": storage}
    settings.SYNC_BLOB_PART_BYTES = PART
    blobstore._store.cache_clear()


def use_local_storage(settings: Any, root: Path) -> Path:
    """Files on the file system, under `root` (made here)."""
    root.mkdir(parents=True, exist_ok=True)
    use_storage(
        settings,
        {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    )
    return root


def stored_keys(kind: str, root: Any, s3: S3Server | None, bucket: str) -> list[str]:
    if kind == "s3":
        assert s3 is not None
        return s3.keys(bucket)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reference(data: bytes, content_type: str = "image/png", name: str = "photo.png") -> dict:
    return {"sha256": sha(data), "size": len(data), "content_type": content_type, "name": name}


def put(client: Any, url: str, data: bytes) -> Any:
    """PUT a part where its URL says: the server's own part endpoint (through
    the test client), or S3 (over HTTP)."""
    parts = urlsplit(url)
    if parts.hostname == "testserver":
        return client.generic(
            "PUT",
            f"{parts.path}?{parts.query}",
            data,
            content_type="application/octet-stream",
            HTTP_X_FORWARDED_PROTO="https",
        )
    return requests.put(url, data=data, timeout=30)


def get(client: Any, url: str) -> tuple[int, bytes, dict[str, str]]:
    parts = urlsplit(url)
    if parts.hostname == "testserver":
        response = client.get(f"{parts.path}?{parts.query}", HTTP_X_FORWARDED_PROTO="https")
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return response.status_code, body, dict(response.headers)
    response = requests.get(url, timeout=30)
    return response.status_code, response.content, dict(response.headers)


def start(actor: Any, data: bytes, content_type: str = "image/png") -> Any:
    return actor.client.post(
        "/api/v1/blobs/uploads/",
        {"sha256": sha(data), "size": len(data), "content_type": content_type},
        format="json",
    )


def send_parts(actor: Any, body: dict, data: bytes, only: set[int] | None = None) -> None:
    for part in body["parts"]:
        if part["done"] or (only is not None and part["number"] not in only):
            continue
        offset = (part["number"] - 1) * body["part_size"]
        answer = put(actor.client, part["url"], data[offset : offset + part["size"]])
        assert answer.status_code == 200, getattr(answer, "content", answer)


def upload(actor: Any, data: bytes, content_type: str = "image/png") -> dict:
    """The whole protocol: ask, send the parts, complete."""
    response = start(actor, data, content_type)
    assert response.status_code in (200, 201), response.content
    body = response.json()
    if body["state"] == "complete":
        return body
    send_parts(actor, body, data)
    done = actor.client.post(f"/api/v1/blobs/uploads/{body['upload_id']}/complete/")
    assert done.status_code == 200, done.content
    return done.json()


def png(seed: int, side: int = 64) -> bytes:
    """A real image (for thumbnails), different for each seed."""
    from PIL import Image

    image = Image.new("RGB", (side, side), ((seed * 40) % 256, (seed * 90) % 256, 120))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
