"""Where blob bytes live: S3 (any S3-compatible service, through
django-storages' S3Storage) or, on the embedded default, any other Django
storage (the local file system).

Both give a device the same upload protocol (docs/protocol.md, "Files"): an
upload has parts of a fixed size, each PUT to a short-lived URL, and is then
completed. On S3 the URLs are presigned `UploadPart` URLs of a multipart
upload, so the bytes go straight to S3 and never through the server; on the
file system they are signed URLs of the server's own part endpoint. Either
way the parts are put together under the upload's own key, read back and
hashed, and only then copied to the blob's key: a wrong or half upload never
becomes the blob, and two uploads of one blob cannot overwrite each other.

Written here rather than taken from a library: django-storages covers
whole-file save/open/url, but neither it nor boto3 has resumable
multipart-by-URL for clients, and the file-system twin must speak the same
protocol.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, InvalidStorageError, Storage, storages
from django.urls import reverse

from syncbase.conf import sync_settings

CHUNK = 1024 * 1024
SALT = "sync.blobs"


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=SALT)


def sign(payload: dict[str, Any]) -> str:
    return _signer().sign_object(payload, compress=True)


def unsign(token: str) -> dict[str, Any]:
    """The signed payload; signing.SignatureExpired / BadSignature otherwise."""
    payload: dict[str, Any] = _signer().unsign_object(
        token, max_age=sync_settings.SYNC_BLOB_LINK_SECONDS
    )
    return payload


class S3Store:
    """Multipart uploads and presigned URLs on the bucket of an S3Storage."""

    kind = "s3"

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.client = storage.connection.meta.client
        self.bucket = storage.bucket_name
        self.prefix = (storage.location or "").strip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def origins(self) -> list[str]:
        """Where its links point (for a web page's Content-Security-Policy):
        the endpoint, and the bucket's own host for virtual-hosted addressing."""
        endpoint = urlsplit(str(self.client.meta.endpoint_url))
        return [
            f"{endpoint.scheme}://{endpoint.netloc}",
            f"{endpoint.scheme}://{self.bucket}.{endpoint.netloc}",
        ]

    def start(self, upload: Any) -> str:
        answer = self.client.create_multipart_upload(
            Bucket=self.bucket,
            Key=self._key(upload.key),
            ContentType=upload.blob.content_type,
        )
        return str(answer["UploadId"])

    def part_url(self, upload: Any, number: int, request: Any) -> str:
        return str(
            self.client.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(upload.key),
                    "UploadId": upload.storage_id,
                    "PartNumber": number,
                },
                ExpiresIn=sync_settings.SYNC_BLOB_LINK_SECONDS,
            )
        )

    def parts(self, upload: Any) -> dict[int, Part]:
        found: dict[int, Part] = {}
        marker = 0
        while True:
            answer = self.client.list_parts(
                Bucket=self.bucket,
                Key=self._key(upload.key),
                UploadId=upload.storage_id,
                PartNumberMarker=marker,
            )
            for p in answer.get("Parts", []):
                found[p["PartNumber"]] = Part(p["PartNumber"], p["Size"], p["ETag"].strip('"'))
            if not answer.get("IsTruncated"):
                return found
            marker = answer["NextPartNumberMarker"]

    def finish(self, upload: Any, parts: dict[int, Part]) -> tuple[str, int]:
        """Put the parts together under the upload's key; the sha256 and size of what is there."""
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self._key(upload.key),
            UploadId=upload.storage_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": parts[n].etag} for n in sorted(parts)]
            },
        )
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(upload.key))["Body"]
        digest, size = hashlib.sha256(), 0
        for chunk in iter(lambda: body.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size

    def publish(self, upload: Any, blob: Any) -> None:
        self.client.copy_object(
            Bucket=self.bucket,
            Key=self._key(blob.key),
            CopySource={"Bucket": self.bucket, "Key": self._key(upload.key)},
            ContentType=blob.content_type,
            MetadataDirective="REPLACE",
        )
        self.client.delete_object(Bucket=self.bucket, Key=self._key(upload.key))

    def discard(self, upload: Any) -> None:
        if upload.storage_id:
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(upload.key), UploadId=upload.storage_id
                )
            except self.client.exceptions.NoSuchUpload:
                pass
        self.client.delete_object(Bucket=self.bucket, Key=self._key(upload.key))

    def download_url(self, blob: Any, name: str, request: Any) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(blob.key),
                    "ResponseContentType": blob.content_type,
                    "ResponseContentDisposition": _disposition(name),
                },
                ExpiresIn=sync_settings.SYNC_BLOB_LINK_SECONDS,
            )
        )

    def open(self, key: str) -> IO[bytes]:
        return self.storage.open(key, "rb")

    def save(self, key: str, content: bytes, content_type: str) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=content, ContentType=content_type
        )

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        return bool(self.storage.exists(key))


class LocalStore:
    """Any other Django storage: parts through the server's own endpoint."""

    kind = "local"

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def start(self, upload: Any) -> str:
        return ""

    def origins(self) -> list[str]:
        return []  # its links are the server's own

    def part_url(self, upload: Any, number: int, request: Any) -> str:
        path = reverse("blob-part", kwargs={"upload_id": upload.id, "number": number})
        token = sign({"u": str(upload.id), "n": number})
        return str(request.build_absolute_uri(f"{path}?signature={quote(token)}"))

    def _part_key(self, upload: Any, number: int) -> str:
        return f"{upload.key}/part-{number:05d}"

    def put_part(self, upload: Any, number: int, stream: IO[bytes], length: int) -> Part:
        """Store one part from a request body; refused unless it is exactly
        `length` bytes (a short or long part would shift every later one)."""
        digest, size = hashlib.md5(usedforsecurity=False), 0
        with tempfile.SpooledTemporaryFile(max_size=CHUNK * 16) as spool:
            while chunk := stream.read(min(CHUNK, length + 1 - size)):
                size += len(chunk)
                if size > length:
                    break
                digest.update(chunk)
                spool.write(chunk)
            if size != length:
                raise PartSizeError(length, size)
            spool.seek(0)
            key = self._part_key(upload, number)
            self.storage.delete(key)
            self.storage.save(key, File(spool))
        return Part(number, size, digest.hexdigest())

    def parts(self, upload: Any) -> dict[int, Part]:
        try:
            _, files = self.storage.listdir(upload.key)
        except FileNotFoundError:
            return {}
        found = {}
        for name in files:
            if not name.startswith("part-"):
                continue
            number = int(name.removeprefix("part-"))
            size = self.storage.size(f"{upload.key}/{name}")
            found[number] = Part(number, size, "")
        return found

    def finish(self, upload: Any, parts: dict[int, Part]) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        with tempfile.SpooledTemporaryFile(max_size=CHUNK * 16) as whole:
            for number in sorted(parts):
                with self.storage.open(self._part_key(upload, number), "rb") as part:
                    while chunk := part.read(CHUNK):
                        digest.update(chunk)
                        whole.write(chunk)
                        size += len(chunk)
            whole.seek(0)
            key = f"{upload.key}/whole"
            self.storage.delete(key)
            self.storage.save(key, File(whole))
        return digest.hexdigest(), size

    def publish(self, upload: Any, blob: Any) -> None:
        if not self.storage.exists(blob.key):
            with self.storage.open(f"{upload.key}/whole", "rb") as whole:
                self.storage.save(blob.key, File(whole))
        self.discard(upload)

    def discard(self, upload: Any) -> None:
        try:
            _, files = self.storage.listdir(upload.key)
        except FileNotFoundError:
            return
        for name in files:
            self.storage.delete(f"{upload.key}/{name}")
        location = getattr(self.storage, "path", None)
        if location is not None:  # the file system: leave no empty folder behind
            folder = Path(location(upload.key))
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def download_url(self, blob: Any, name: str, request: Any) -> str:
        path = reverse("blob-content", kwargs={"sha256": blob.sha256})
        token = sign({"b": blob.sha256, "name": name})
        return str(request.build_absolute_uri(f"{path}?signature={quote(token)}"))

    def open(self, key: str) -> IO[bytes]:
        return self.storage.open(key, "rb")

    def save(self, key: str, content: bytes, content_type: str) -> None:
        self.storage.delete(key)
        self.storage.save(key, ContentFile(content))

    def delete(self, key: str) -> None:
        self.storage.delete(key)

    def exists(self, key: str) -> bool:
        return bool(self.storage.exists(key))


class PartSizeError(Exception):
    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"this part must be {expected} bytes; {got} or more came")
        self.expected, self.got = expected, got


def _disposition(name: str) -> str:
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name
    )
    return f"attachment; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{quote(name)}"


def disposition(name: str) -> str:
    return _disposition(name)


@cache
def _store(alias: str, fallback: str) -> S3Store | LocalStore:
    try:
        storage = storages[alias]
    except InvalidStorageError:
        storage = FileSystemStorage(location=fallback)
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # django-storages without boto3: no S3 here
        S3Storage = None  # noqa: N806
    if S3Storage is not None and isinstance(storage, S3Storage):
        return S3Store(storage)
    return LocalStore(storage)


def store() -> S3Store | LocalStore:
    """The blob store the settings name (SYNC_BLOB_STORAGE), built once per process."""
    fallback = Path(getattr(settings, "MEDIA_ROOT", "") or Path(settings.BASE_DIR) / "media")
    return _store(sync_settings.SYNC_BLOB_STORAGE, str(fallback / "sync-blobs"))


def read(blob: Any) -> Iterator[bytes]:
    with store().open(blob.key) as f:
        yield from iter(lambda: f.read(CHUNK), b"")
