"""Files on synced objects: uploads, downloads, limits, thumbnails and
collection (docs/protocol.md, "Files"; the storage side is blobstore.py).

- An upload is asked for first: a blob already complete is not sent again.
- Its parts may come in any order, over any number of connections and
  restarts, until it expires; completing it checks the bytes against the
  sha256 and the size before the blob is `complete`, then bumps every object
  that refers to it (a new version, through the database's capture
  triggers), so other devices pull it again and learn it can be fetched.
- A link to the bytes is given only to a user who can see an object that
  refers to the blob (or who uploaded it), and works for a few minutes.
- What no live object, no history row within the retention window and no
  open conflict refers to is deleted after a grace period; uploads left
  unfinished are aborted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from sync import registry
from sync.engine.blobstore import Part, store
from sync.engine.scope import Scope
from sync.fields import SHA256, content_type_allowed, validate_reference
from sync.models import Blob, BlobUpload, Conflict
from sync.writers import write_context
from syncbase.conf import sync_settings
from syncbase.errors import SyncError

logger = logging.getLogger(__name__)

THUMBNAIL_TASK = "sync.tasks.blob_thumbnail"
THUMBNAIL_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})


def blob_fields() -> list[tuple[Any, str]]:
    """(synced type, field name) of every BlobField of the registered models."""
    return [
        (stype, name)
        for stype in registry.all_types()
        for name, codec in stype.codecs.items()
        if codec.type == "blob"
    ]


def _bad(detail: str) -> SyncError:
    return SyncError("bad_blob", detail)


def _check_sha(sha256: Any) -> str:
    if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
        raise _bad("sha256 must be 64 lower-case hex digits.")
    return sha256


# --- limits -----------------------------------------------------------------------------


def used_bytes(user: Any) -> int:
    """What the user's uploads hold (complete, and started): their quota's use."""
    total = Blob.objects.filter(uploaded_by=user, is_thumbnail=False).aggregate(s=Sum("size"))["s"]
    return int(total or 0)


def limits(user: Any) -> dict[str, Any]:
    return {
        "max_size": sync_settings.SYNC_BLOB_MAX_BYTES,
        "quota": sync_settings.SYNC_BLOB_QUOTA_BYTES,
        "used": used_bytes(user),
        "part_size": sync_settings.SYNC_BLOB_PART_BYTES,
        "content_types": list(sync_settings.SYNC_BLOB_CONTENT_TYPES),
        "link_seconds": sync_settings.SYNC_BLOB_LINK_SECONDS,
    }


# --- uploads ----------------------------------------------------------------------------


@dataclass
class UploadState:
    blob: Blob
    upload: BlobUpload | None = None
    done: dict[int, Part] = field(default_factory=dict)


def upload_start(*, user: Any, sha256: Any, size: Any, content_type: Any) -> UploadState:
    """Ask to upload a blob: nothing to do when it is complete already;
    otherwise this user's upload of it (a new one, or the one under way)."""
    sha = _check_sha(sha256)
    try:
        validate_reference({"sha256": sha, "size": size, "content_type": content_type, "name": "x"})
    except Exception as exc:  # ValidationError: said as the protocol's error
        message = "; ".join(getattr(exc, "messages", [str(exc)]))
        if isinstance(size, int) and size > sync_settings.SYNC_BLOB_MAX_BYTES:
            raise SyncError(
                "blob_too_large",
                f"This file is {size} bytes; the most this server takes is "
                f"{sync_settings.SYNC_BLOB_MAX_BYTES}.",
                status_code=413,
            ) from None
        if isinstance(content_type, str) and not content_type_allowed(content_type):
            raise SyncError("blob_type_refused", message, status_code=415) from None
        raise _bad(message) from None
    existing = Blob.objects.filter(pk=sha).first()
    if existing is not None and existing.state == Blob.State.COMPLETE:
        return UploadState(existing)
    if existing is not None and existing.size != size:
        raise _bad(
            f"This content is being uploaded as {existing.size} bytes; the same sha256 "
            f"cannot be {size} bytes."
        )
    with transaction.atomic():
        # One user's quota is checked and taken one upload at a time.
        type(user).objects.select_for_update().only("pk").get(pk=user.pk)
        upload = (
            BlobUpload.objects.select_related("blob")
            .filter(blob_id=sha, user=user, expires_at__gt=timezone.now())
            .first()
        )
        if upload is not None:
            return UploadState(upload.blob, upload, store().parts(upload))
        if existing is None:
            quota = sync_settings.SYNC_BLOB_QUOTA_BYTES
            used = used_bytes(user)
            if used + size > quota:
                raise SyncError(
                    "quota_exceeded",
                    f"Your files use {used} of your {quota} bytes; this one ({size} bytes) "
                    "does not fit. Files no object refers to any more are freed after a while.",
                    status_code=413,
                    extra={"quota": quota, "used": used},
                )
            try:
                with transaction.atomic():
                    existing = Blob.objects.create(
                        sha256=sha, size=size, content_type=content_type, uploaded_by=user
                    )
            except IntegrityError:
                existing = Blob.objects.get(pk=sha)  # started by someone else just now
        now = timezone.now()
        upload = BlobUpload(
            blob=existing,
            user=user,
            part_size=sync_settings.SYNC_BLOB_PART_BYTES,
            expires_at=now + dt.timedelta(hours=sync_settings.SYNC_BLOB_UPLOAD_HOURS),
        )
        upload.storage_id = store().start(upload)
        upload.save()
    return UploadState(existing, upload, {})


def upload_of(*, user: Any, upload_id: Any) -> UploadState:
    upload = (
        BlobUpload.objects.select_related("blob")
        .filter(pk=upload_id, user=user, expires_at__gt=timezone.now())
        .first()
    )
    if upload is None:
        raise SyncError(
            "not_found",
            "No such upload (finished, expired or never started): ask again "
            "(POST /api/v1/blobs/uploads/).",
            status_code=404,
        )
    if upload.blob.state == Blob.State.COMPLETE:
        return UploadState(upload.blob)
    return UploadState(upload.blob, upload, store().parts(upload))


def upload_complete(*, user: Any, upload_id: Any) -> Blob:
    """Put the parts together, check them, and make the blob complete."""
    with transaction.atomic():
        # One completion of an upload at a time: a retry racing the request
        # it retries waits here, then finds the upload gone (404: ask again,
        # the answer is `complete`) rather than completing it twice.
        BlobUpload.objects.select_for_update().filter(pk=upload_id, user=user).exists()
        state = upload_of(user=user, upload_id=upload_id)
        upload, blob = state.upload, state.blob
        if upload is None:
            return blob  # completed already, by another upload of the same bytes
        missing = [n for n in range(1, upload.parts + 1) if n not in state.done]
        wrong = [
            n for n, p in state.done.items() if n > upload.parts or p.size != upload.part_length(n)
        ]
        if missing or wrong:
            raise SyncError(
                "upload_incomplete",
                "Some parts are missing or of the wrong size: upload them, then complete again.",
                status_code=409,
                extra={"missing": missing, "wrong_size": sorted(wrong)},
            )
        bytes_store = store()
        sha, size = bytes_store.finish(upload, state.done)
        if sha == blob.sha256 and size == blob.size:
            return _publish(blob, upload)
        bytes_store.discard(upload)
        upload.delete()
    raise SyncError(
        "blob_mismatch",
        f"The bytes uploaded are {size} bytes with sha256 {sha}, not the {blob.size} "
        f"bytes with sha256 {blob.sha256} that were announced: nothing was kept; "
        "upload the file again.",
        status_code=422,
    )


def _publish(blob: Blob, upload: BlobUpload) -> Blob:
    """The checked bytes become the blob (unless another upload made it first)."""
    bytes_store = store()
    locked = Blob.objects.select_for_update().get(pk=blob.pk)
    if locked.state != Blob.State.COMPLETE:
        bytes_store.publish(upload, locked)
        locked.state = Blob.State.COMPLETE
        locked.completed_at = timezone.now()
        locked.save(update_fields=["state", "completed_at"])
        bump_references(locked.sha256)
        transaction.on_commit(lambda: _thumbnail_later(locked))
    else:
        bytes_store.discard(upload)
    # Others' uploads of the same bytes are not needed any more.
    for other in BlobUpload.objects.filter(blob=locked).exclude(pk=upload.pk):
        bytes_store.discard(other)
        other.delete()
    upload.delete()
    return locked


def _thumbnail_later(blob: Blob) -> None:
    if blob.content_type in THUMBNAIL_TYPES:
        from syncbase.tasks import run_task

        try:
            run_task(THUMBNAIL_TASK, [blob.sha256])
        except Exception:  # a broker down: the thumbnail waits for the collector's pass
            logger.warning("could not queue the thumbnail of %s", blob.sha256, exc_info=True)


def bump_references(sha256: str) -> int:
    """Give every live object that refers to the blob a new version, so that
    devices pull it again and learn the bytes are there. Written by the
    database's capture triggers like any other write (history, feed, wake-up)."""
    bumped = 0
    now = timezone.now()
    with write_context(reason=f"file {sha256[:12]} uploaded"):
        for stype, name in blob_fields():
            bumped += stype.model.objects.filter(
                **{f"{name}__sha256": sha256}, deleted_at__isnull=True
            ).update(
                # The same data at a new version: the triggers version, record
                # and feed it (asking for the next version is what makes a
                # write that changes no field count as one).
                version=F("version") + 1,
                updated_at=now,
            )
    return bumped


def put_part(*, token_payload: dict[str, Any], upload_id: Any, number: int, stream: Any) -> Part:
    """A part through the server (the file-system store's part URL)."""
    if token_payload.get("u") != str(upload_id) or token_payload.get("n") != number:
        raise SyncError("bad_signature", "This link is for another part.", status_code=403)
    upload = (
        BlobUpload.objects.select_related("blob")
        .filter(pk=upload_id, expires_at__gt=timezone.now())
        .first()
    )
    if upload is None:
        raise SyncError("not_found", "No such upload (finished or expired).", status_code=404)
    if not 1 <= number <= upload.parts:
        raise _bad(f"This upload has parts 1 to {upload.parts}.")
    from sync.engine.blobstore import LocalStore, PartSizeError

    bytes_store = store()
    if not isinstance(bytes_store, LocalStore):  # S3 takes its parts itself
        raise SyncError("not_found", "Parts go to the URLs the upload gave.", status_code=404)
    try:
        return bytes_store.put_part(upload, number, stream, upload.part_length(number))
    except PartSizeError as exc:
        raise _bad(f"Part {number} must be {exc.expected} bytes.") from None


# --- downloads ---------------------------------------------------------------------------


def visible_blob(*, user: Any, sha256: Any) -> Blob:
    """The blob, if `user` may have its bytes: they can see a live object that
    refers to it (or to the image it is the thumbnail of), or they uploaded it.
    404 otherwise, the same whether or not it exists."""
    sha = _check_sha(sha256)
    blob = Blob.objects.select_related("thumbnail").filter(pk=sha).first()
    named = [sha]
    if blob is not None and blob.is_thumbnail:
        named += list(Blob.objects.filter(thumbnail_id=sha).values_list("pk", flat=True))
    if blob is not None and blob.uploaded_by_id == user.pk:
        return blob
    if _sees_a_reference(user, named):
        if blob is None:
            return Blob(sha256=sha, size=0, content_type="", state="missing")
        return blob
    raise SyncError("not_found", "No such file.", status_code=404)


def _sees_a_reference(user: Any, shas: Iterable[str]) -> bool:
    scope = Scope.of_user(user)
    shas = list(shas)
    for stype, name in blob_fields():
        if (
            stype.model.objects.filter(scope.filter(stype), deleted_at__isnull=True)
            .filter(**{f"{name}__sha256__in": shas})
            .exists()
        ):
            return True
    return False


def download_link(blob: Blob, *, name: str, request: Any) -> str:
    return store().download_url(blob, name or blob.sha256, request)


# --- thumbnails --------------------------------------------------------------------------


def thumbnail_make(sha256: str) -> str | None:
    """A smaller copy of an image, as a blob of its own; its sha256."""
    from PIL import Image, UnidentifiedImageError

    blob = Blob.objects.filter(pk=sha256, state=Blob.State.COMPLETE).first()
    if blob is None or blob.is_thumbnail or blob.content_type not in THUMBNAIL_TYPES:
        return None
    if blob.thumbnail_id:
        return blob.thumbnail_id
    side = sync_settings.SYNC_BLOB_THUMBNAIL_PIXELS
    try:
        with store().open(blob.key) as f, Image.open(f) as opened:
            opened.thumbnail((side, side))
            out = io.BytesIO()
            small = opened if opened.mode in ("RGB", "L") else opened.convert("RGB")
            small.save(out, "JPEG", quality=80)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        logger.warning("no thumbnail for %s: %s", sha256, exc)
        return None
    content = out.getvalue()
    thumb_sha = hashlib.sha256(content).hexdigest()
    thumb, created = Blob.objects.get_or_create(
        pk=thumb_sha,
        defaults={
            "size": len(content),
            "content_type": "image/jpeg",
            "state": Blob.State.COMPLETE,
            "is_thumbnail": True,
            "completed_at": timezone.now(),
        },
    )
    if created or not store().exists(thumb.key):
        store().save(thumb.key, content, "image/jpeg")
    Blob.objects.filter(pk=blob.pk).update(thumbnail=thumb)
    return thumb_sha


# --- collection --------------------------------------------------------------------------


def referenced() -> set[str]:
    """Every sha256 something still refers to: live objects, history rows
    within the retention window (a device may still be behind on them), and
    the values of open conflicts."""
    since = timezone.now() - sync_settings.SYNC_RETENTION
    found: set[str] = set()
    for stype, name in blob_fields():
        key = f"{name}__sha256"
        found.update(
            stype.model.objects.filter(deleted_at__isnull=True)
            .exclude(**{f"{name}__isnull": True})
            .values_list(key, flat=True)
        )
        history = stype.model.history.model.objects.filter(history_date__gte=since)
        found.update(history.exclude(**{f"{name}__isnull": True}).values_list(key, flat=True))
        for values in Conflict.objects.filter(model=stype.label, status="open").values_list(
            "base_data", "server_data", "client_data"
        ):
            for data in values:
                ref = (data or {}).get(name) if isinstance(data, dict) else None
                if isinstance(ref, dict) and isinstance(ref.get("sha256"), str):
                    found.add(ref["sha256"])
    found.discard(None)  # type: ignore[arg-type,unused-ignore]
    found |= set(
        Blob.objects.filter(pk__in=found, thumbnail__isnull=False).values_list(
            "thumbnail_id", flat=True
        )
    )
    return found


@dataclass
class Collected:
    blobs: int = 0
    bytes: int = 0
    uploads: int = 0
    thumbnails: int = 0


def blobs_collect(*, now: dt.datetime | None = None) -> Collected:
    """Delete what nothing refers to after the grace period; abort uploads
    that expired; make thumbnails a broker outage left unmade."""
    now = now or timezone.now()
    out = Collected()
    bytes_store = store()
    for upload in BlobUpload.objects.select_related("blob").filter(expires_at__lte=now):
        bytes_store.discard(upload)
        upload.delete()
        out.uploads += 1
    keep = referenced()
    grace = now - dt.timedelta(hours=sync_settings.SYNC_BLOB_GRACE_HOURS)
    stale = Blob.objects.filter(created_at__lt=grace).exclude(pk__in=keep)
    # A pending blob still being uploaded is left to its upload's expiry.
    stale = stale.exclude(Q(state=Blob.State.PENDING) & Q(uploads__expires_at__gt=now))
    for blob in stale.order_by("is_thumbnail"):  # originals first: their thumbnails follow
        if blob.state == Blob.State.COMPLETE:
            bytes_store.delete(blob.key)
        out.blobs += 1
        out.bytes += blob.size
        blob.delete()
    for sha in Blob.objects.filter(
        state=Blob.State.COMPLETE,
        content_type__in=THUMBNAIL_TYPES,
        is_thumbnail=False,
        thumbnail__isnull=True,
        pk__in=keep,
    ).values_list("pk", flat=True)[:100]:
        if thumbnail_make(sha):
            out.thumbnails += 1
    if out.blobs or out.uploads:
        logger.info(
            "blobs collected: %d files (%d bytes), %d stale uploads aborted",
            out.blobs,
            out.bytes,
            out.uploads,
        )
    return out
