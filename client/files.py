"""Files on synced objects, the device's side (docs/protocol.md, "Files").

`attach()` keeps the bytes under the state directory, named by their
sha256, queues the upload in the store, and returns the reference to put in
a `blob` field: the edit syncs at once, the bytes follow. `upload_pending()`
sends what is queued, each file in parts, and resumes where it stopped after
a dropped connection or a restart (the server keeps the parts it has; the
store keeps the upload's id). `fetch()` downloads a file the first time the
app needs it, checks it against its sha256, and keeps it.
"""

from __future__ import annotations

import hashlib
import mimetypes
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from client.errors import ApiError, ClientError
from client.http import Api, Response
from client.store import Store

CHUNK = 1024 * 1024


class FileNotReady(ClientError):
    """The file is not on the server yet (its device has not uploaded it)."""

    def __init__(self, sha256: str, state: str) -> None:
        super().__init__(f"file {sha256[:12]}… is {state} on the server; try again after a sync")
        self.sha256 = sha256
        self.state = state


class FileCorrupt(ClientError):
    """What was downloaded is not the file its reference names."""


@dataclass
class UploadProgress:
    sha256: str
    sent: int  # bytes of this file on the server so far
    size: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FileHost(Protocol):
    """What files need of the client (`SyncClient`): its folder, store and calls."""

    state_dir: Path
    store: Store
    api: Api

    def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        expect: int | Collection[int] = 200,
    ) -> Response: ...


class Files:
    """The files of one device (`SyncClient.files`)."""

    def __init__(self, client: FileHost) -> None:
        self.client = client
        self.root = client.state_dir / "files"
        self.root.mkdir(exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def _keep(self, source: Path) -> tuple[str, int]:
        """Copy a file in, under its sha256 (written whole, then renamed)."""
        self.root.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.root, delete=False) as tmp:
            digest, size = hashlib.sha256(), 0
            with source.open("rb") as f:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    digest.update(chunk)
                    tmp.write(chunk)
                    size += len(chunk)
        sha = digest.hexdigest()
        target = self.path(sha)
        target.parent.mkdir(exist_ok=True)
        Path(tmp.name).replace(target)
        return sha, size

    def attach(
        self,
        source: str | Path | bytes,
        *,
        content_type: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Keep a file on this device and queue its upload; the reference to
        put in a `blob` field (`client.update(model, id, {"photo": ref})`)."""
        if isinstance(source, bytes):
            with tempfile.NamedTemporaryFile(delete=False) as tmp:
                tmp.write(source)
            try:
                sha, size = self._keep(Path(tmp.name))
            finally:
                Path(tmp.name).unlink(missing_ok=True)
            name = name or sha[:12]
        else:
            path = Path(source)
            sha, size = self._keep(path)
            name = name or path.name
            content_type = content_type or mimetypes.guess_type(path.name)[0]
        content_type = content_type or "application/octet-stream"
        self.client.store.queue_upload(sha, size, content_type)
        return {"sha256": sha, "size": size, "content_type": content_type, "name": name}

    def upload_pending(self, progress: Callable[[UploadProgress], None] | None = None) -> list[str]:
        """Send every queued file; the sha256 of each the server now has.
        A file the server refuses for good (too large, over quota, a type it
        does not take) raises `ApiError` and stays queued; a network failure
        raises `NetworkError`; either way the next call resumes."""
        done = []
        for row in self.client.store.pending_uploads():
            self._upload(row, progress)
            done.append(row["sha256"])
        return done

    def _upload(self, row: Any, progress: Callable[[UploadProgress], None] | None) -> None:
        sha, path = row["sha256"], self.path(row["sha256"])
        if not path.is_file():  # the app's data was cleared: nothing left to send
            self.client.store.upload_done(sha)
            return
        body = None
        if row["upload_id"]:
            try:  # resume: which parts does the server have?
                body = self.client._call("GET", f"/api/v1/blobs/uploads/{row['upload_id']}/").body
            except ApiError as exc:
                if exc.status != 404:
                    raise
                self.client.store.set_upload_id(sha, None)  # expired: start again
        if body is None:
            body = self._ask(row)
        if body["state"] == "complete":
            self.client.store.upload_done(sha)
            return
        self.client.store.set_upload_id(sha, body["upload_id"])
        sent = sum(p["size"] for p in body["parts"] if p["done"])
        with path.open("rb") as f:
            for part in body["parts"]:
                if part["done"]:
                    continue
                f.seek((part["number"] - 1) * body["part_size"])
                self.client.api.transfer("PUT", part["url"], content=f.read(part["size"]))
                sent += part["size"]
                if progress is not None:
                    progress(UploadProgress(sha, sent, row["size"]))
        try:
            self.client._call("POST", f"/api/v1/blobs/uploads/{body['upload_id']}/complete/")
        except ApiError as exc:
            if exc.code == "blob_mismatch":  # the parts went wrong on the way: all again
                self.client.store.set_upload_id(sha, None)
            if exc.status != 404:
                raise
            # Gone: completed by an earlier try whose answer was lost (or
            # expired). Asking again says which.
            self.client.store.set_upload_id(sha, None)
            again = self._ask(row)
            if again["state"] != "complete":
                raise
        self.client.store.upload_done(sha)

    def _ask(self, row: Any) -> dict[str, Any]:
        """Step 1 of an upload: the server has the file (`complete`), or the upload to send."""
        body: dict[str, Any] = self.client._call(
            "POST",
            "/api/v1/blobs/uploads/",
            json_body={
                "sha256": row["sha256"],
                "size": row["size"],
                "content_type": row["content_type"],
            },
            expect=(200, 201),
        ).body
        return body

    def fetch(self, reference: dict[str, Any], *, thumbnail: bool = False) -> Path:
        """The file a reference names, downloaded the first time (then kept).
        `thumbnail`: its thumbnail instead (images; small, for lists), or
        `FileNotReady` (state `no_thumbnail`) while the server has none."""
        sha = reference["sha256"]
        thumbs = self.root / "thumbnails"
        kept = thumbs / sha if thumbnail else self.path(sha)
        if kept.is_file():
            return kept
        info = self.client._call(
            "GET", f"/api/v1/blobs/{sha}/", params={"name": reference.get("name") or sha}
        ).body
        if info["state"] != "complete":
            raise FileNotReady(sha, info["state"])
        if thumbnail:
            if not info.get("thumbnail"):
                raise FileNotReady(sha, "no_thumbnail")
            info = info["thumbnail"]
        content = self.client.api.transfer("GET", info["url"]).content
        if hashlib.sha256(content).hexdigest() != info["sha256"]:
            raise FileCorrupt(f"the download of {info['sha256'][:12]}… does not match its sha256")
        kept.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.root, delete=False) as tmp:
            tmp.write(content)
        Path(tmp.name).replace(kept)
        return kept

    def forget(self) -> None:
        """Drop every kept file (the account signed out, or another signed in)."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(exist_ok=True)
