from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import models, router, transaction
from django.utils import timezone
from knox.models import AbstractAuthToken
from simple_history.models import HistoricalRecords

from sync import writers
from sync.choices import ConflictKind, ConflictStatus, Op, Policy


class SyncedHistory(HistoricalRecords):
    """simple-history's records without an index on each copied reference:
    history is read by object id (and by date and user, which keep theirs),
    never by what a version pointed at, and every index costs each write of
    every version. The references stay plain columns, without constraints,
    as simple-history makes them."""

    def copy_fields(self, model: type[models.Model]) -> dict[str, models.Field]:
        fields = super().copy_fields(model)
        for field in fields.values():
            if field.is_relation:
                field.db_index = False
        return fields

    # A registered model's history is written by the database, with the row
    # (sync.engine.capture), for every write path: a second row here would double it.
    def post_save(self, instance: Any, created: bool, using: Any = None, **kwargs: Any) -> None:
        if not _captured(type(instance)):
            super().post_save(instance, created, using=using, **kwargs)

    def post_delete(self, instance: Any, using: Any = None, **kwargs: Any) -> None:
        if not _captured(type(instance)):
            super().post_delete(instance, using=using, **kwargs)


def _captured(model: type[models.Model]) -> bool:
    """Registered for sync (`sync.register` marks the class): its writes are
    captured by the database."""
    return getattr(model, "_sync_captured", False)


def _history_user_id(instance: Any) -> Any:
    """Who writes, as simple-history would record it: the instance's
    `_history_user`, else the request's user (its HistoryRequestMiddleware)."""
    user = getattr(instance, "_history_user", None)
    if user is None:
        request = getattr(HistoricalRecords.context, "request", None)
        user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


class SyncedQuerySet(models.QuerySet):
    """Bulk writes name their user and reason for the history the database
    records, and wake devices as soon as they commit (sync.engine.capture)."""

    def _captured_write(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if writers.current(self.db).writer in writers.PASSING:
            return getattr(super(), method)(*args, **kwargs)  # the service's own writes
        with writers.write_context(user_id=_history_user_id(None), using=self.db):
            result = getattr(super(), method)(*args, **kwargs)
        writers.wake_after_commit(self.db)
        return result

    def update(self, **kwargs: Any) -> int:
        return self._captured_write("update", **kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        return self._captured_write("delete")

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        return self._captured_write("bulk_create", objs, *args, **kwargs)

    def bulk_update(self, objs: Any, fields: Any, *args: Any, **kwargs: Any) -> int:
        return self._captured_write("bulk_update", objs, fields, *args, **kwargs)


class SyncedManager(models.Manager.from_queryset(SyncedQuerySet)):  # type: ignore[misc]
    pass


class SyncedModel(models.Model):
    """Base of every synced model.

    Ids are UUIDs chosen by the client. `version` starts at 1 and goes up by
    one on every write, whoever makes it: the sync service sets it for its
    own writes, and the database (sync.engine.capture) for every other one, so
    `.save()`, `QuerySet.update()`, the admin and raw SQL all reach devices.
    Deletes are soft (`deleted_at`) so that versions stay monotonic, a late
    update can be recognised as update-vs-delete, and a conflict resolution
    can bring an object back; `delete()` leaves such a tombstone too.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    version = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Not synced: for staff, which device's push wrote this version (empty for
    # writes from the admin or the back office). Kept in history too.
    last_device_id = models.UUIDField(null=True, blank=True, editable=False)

    history = SyncedHistory(inherit=True)

    objects = SyncedManager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Saved as ever; the database gives the write its version, history
        and feed rows (sync.engine.capture), and the instance learns its new state."""
        if not _captured(type(self)):
            super().save(*args, **kwargs)
            return
        with self._captured_write(kwargs.get("using")):
            super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        """Leaves a tombstone (deleted_at and a new version) that devices pull;
        references to it follow their on_delete as Django applies it."""
        if not _captured(type(self)):
            return super().delete(*args, **kwargs)
        pk = self.pk
        with self._captured_write(kwargs.get("using")):
            result = super().delete(*args, **kwargs)
            self.pk = pk  # Django clears it; the row stays, as a tombstone
        return result

    @contextmanager
    def _captured_write(self, using: str | None) -> Iterator[None]:
        """Around one write of this instance: the history names its user and
        reason, the instance reads back the state the database gave it, and
        devices are woken once it commits."""
        using = using or router.db_for_write(type(self), instance=self)
        with (
            writers.write_context(
                user_id=_history_user_id(self),
                reason=getattr(self, "_change_reason", None),
                using=using,
            ),
            transaction.atomic(using=using, savepoint=False),
        ):
            yield
            self._refresh_sync_state(using)
        writers.wake_after_commit(using)

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def _refresh_sync_state(self, using: str) -> None:
        names = ["version", "created_at", "updated_at", "deleted_at", "last_device_id"]
        row = type(self)._base_manager.using(using).filter(pk=self.pk).values(*names).first()
        if row is not None:
            self.__dict__.update(row)


class Change(models.Model):
    """The change feed: one row per (write, channel), append-only.

    A row's place in the feed is its position `(tx, seq)`: the writing
    transaction's id, then the insert order. Readers only take rows whose
    transaction is older than every transaction still in flight (see
    `sync.engine.feed`), so no row can ever appear at a position a reader has passed,
    and no writer waits for another to commit.
    """

    class Op(models.IntegerChoices):
        UPSERT = 1, "upsert"
        DELETE = 2, "delete"

    seq = models.BigAutoField(primary_key=True)
    # pg_current_xact_id() of the writing transaction (0 where the database
    # serialises writers anyway: SQLite, and rows written before this column).
    tx = models.BigIntegerField(default=0)
    channel = models.CharField(max_length=120)
    model = models.CharField(max_length=120)
    object_id = models.UUIDField()
    version = models.PositiveIntegerField()
    op = models.PositiveSmallIntegerField(choices=Op.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["channel", "tx", "seq"], name="sync_change_channel_pos"),
            # The whole feed in order, for unrestricted readers (0005). Partial,
            # on a condition every row meets but only the whole feed's statement
            # states (selectors._main_feed_sql): a user's page, planned without
            # its values, could otherwise prefer it to its channel's range.
            models.Index(
                fields=["tx", "seq"], name="sync_change_pos", condition=models.Q(seq__gt=0)
            ),
            models.Index(fields=["object_id", "channel"], name="sync_change_object"),
            models.Index(fields=["created_at"], name="sync_change_created"),
        ]

    def __str__(self) -> str:
        return (
            f"#{self.seq} {self.get_op_display()} {self.model}:{self.object_id} in {self.channel}"
        )

    @property
    def position(self) -> tuple[int, int]:
        return (self.tx, self.seq)


class FeedState(models.Model):
    """A single row: how far compaction has purged tombstones.

    A cursor positioned before `(purged_tx, purged_seq)` may have missed a
    delete, so pull answers it with 410 resync_required.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    purged_tx = models.BigIntegerField(default=0)
    purged_seq = models.BigIntegerField(default=0)
    compacted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"feed purged through ({self.purged_tx}, {self.purged_seq})"


class ChannelGrant(models.Model):
    """A user's membership of a channel beyond their own `user:<id>` channel."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=120)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "channel"], name="sync_grant_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.channel}"


class GrantEvent(models.Model):
    """Append-only log of grants and revocations, numbered in commit order.

    A cursor remembers the last event it has seen; newer events make the next
    pull backfill the granted channel or send deletes for the revoked one.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=120)
    granted = models.BooleanField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["user", "id"], name="sync_grantevent_user")]

    def __str__(self) -> str:
        return f"{'grant' if self.granted else 'revoke'} {self.channel} for {self.user}"


class MutationRecord(models.Model):
    """The stored result of each pushed mutation, so a retry applies nothing twice."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    mutation_id = models.UUIDField()
    device_id = models.UUIDField(null=True, blank=True)
    model = models.CharField(max_length=120, blank=True)
    object_id = models.UUIDField(null=True, blank=True)
    status = models.CharField(max_length=16)
    result = models.JSONField()
    # What the mutation asked for (Mutation.digest): a retry must ask the same;
    # empty for records older than it, and for malformed mutations.
    digest = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Mutation id first: a push looks its ids up with no condition on
            # the user (see Batch.load), so the planner has one way to go.
            models.UniqueConstraint(fields=["mutation_id", "user"], name="sync_mutation_unique"),
        ]
        indexes = [models.Index(fields=["created_at"], name="sync_mutation_created")]

    def __str__(self) -> str:
        return f"{self.mutation_id} {self.status}"


class Conflict(models.Model):
    """A concurrent change that needs a person: the staff review queue.

    Never deleted: it is the only record of an edit that was not applied. It
    ends resolved (a new version was written), superseded (a later write of the
    same user made it moot) or dismissed (staff closed it, nothing written).
    """

    Status = ConflictStatus
    Kind = ConflictKind

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    model = models.CharField(max_length=120)
    object_id = models.UUIDField()
    kind = models.CharField(max_length=16, choices=ConflictKind.choices)
    policy = models.CharField(max_length=16, choices=Policy.choices)
    fields = models.JSONField(default=list, help_text="Fields at stake.")
    base_version = models.PositiveIntegerField(null=True, blank=True)
    server_version = models.PositiveIntegerField()
    base_data = models.JSONField(null=True, blank=True)
    server_data = models.JSONField(null=True, blank=True)
    client_data = models.JSONField(null=True, blank=True)
    client_op = models.CharField(max_length=8, choices=Op.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    device_id = models.UUIDField(null=True, blank=True)
    mutation_id = models.UUIDField(null=True, blank=True)
    status = models.CharField(
        max_length=12, choices=ConflictStatus.choices, default=ConflictStatus.OPEN
    )
    resolution = models.JSONField(null=True, blank=True)
    resolved_version = models.PositiveIntegerField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="sync_conflict_status"),
            models.Index(fields=["user", "status"], name="sync_conflict_user"),
            models.Index(fields=["model", "object_id"], name="sync_conflict_object"),
        ]
        permissions = [("resolve_conflict", "Can resolve or dismiss conflicts")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.model}:{self.object_id}"


class WriteContext(models.Model):
    """Who is writing, for the triggers of sync.engine.capture on SQLite (PostgreSQL
    keeps it in transaction-local settings): at most one row, present only
    inside the transaction that set it."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    writer = models.CharField(max_length=16, blank=True)
    user_id = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return self.writer or "captured"


class CaptureState(models.Model):
    """Which version of each table's triggers is installed (SQLite; PostgreSQL
    keeps it as a comment on the trigger's function)."""

    tablename = models.CharField(max_length=200, primary_key=True)
    fingerprint = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"{self.tablename}: {self.fingerprint}"


class Resync(models.Model):
    """A model's data that devices must fetch again (`sync.resync`): a column
    backfilled or rows rewritten in a way the feed did not carry. A device
    whose cursor predates it is answered `410 resync_required` naming the
    model, and fetches only that model again (docs/protocol.md, "Targeted
    re-sync"). The id orders them: a cursor remembers the newest it has seen."""

    id = models.BigAutoField(primary_key=True)
    model = models.CharField(max_length=100, help_text="The model's label.")
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "re-sync of a model"
        verbose_name_plural = "re-syncs of models"

    def __str__(self) -> str:
        return f"{self.model} re-synced at {self.created_at:%Y-%m-%d %H:%M}"


# --- API tokens and service accounts ---------------------------------------------------
# API tokens (for device users and service accounts alike) and service accounts.
#
# Tokens are django-rest-knox tokens: several per account, stored as a SHA-512
# digest (the secret is shown once, when issued), with an optional expiry.
# Knox is used rather than DRF's `authtoken` (one token per user, stored in
# clear) or hand-written storage: it is maintained, hashes tokens, and lets the
# token model be our own (`KNOX_TOKEN_MODEL`), which adds what staff need to
# manage them: a name, when it was last used, and whether use extends it.


class Token(AbstractAuthToken):
    name = models.CharField(max_length=100, blank=True, help_text="What it is for.")
    # A login token's expiry moves forward while it is used; a token staff
    # issued to a service account keeps the expiry it was given.
    sliding = models.BooleanField(default=False)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Staff who issued it; empty for a login.",
    )

    # Not a field: the columns of a row that authentication read together
    # with the token (sync.api.auth.Companion), or () when it read none.
    companion_row: tuple = ()

    class Meta:
        verbose_name = "API token"
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.token_key}… ({self.name or 'token'}) of {self.user}"

    @property
    def expired(self) -> bool:
        return self.expiry is not None and self.expiry <= timezone.now()


class ServiceAccount(models.Model):
    """A back-office system (ERP, CRM, an import job) that uses the data API.

    It is a user that cannot log in with a password. What it may do per model
    is the user's Django model permissions (view / add / change / delete). What
    it may see is every object, unless `restricted`: then only the channels
    granted to its user (`sync.models.ChannelGrant`, managed here).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="service_account"
    )
    description = models.TextField(blank=True)
    restricted = models.BooleanField(
        default=False,
        help_text="Limit it to the channels granted to it; otherwise it sees every object "
        "of the models it may view.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.user.get_username()


class Blob(models.Model):
    """The bytes of a file, stored once per content (docs/protocol.md, "Files").

    Synced objects refer to it by `sha256` (sync.BlobField); a row exists from
    the first upload's start (`pending`) and is `complete` once the bytes
    were checked against the sha256 and the size. Stored in the blob storage
    (sync.engine.blobstore) under `blobs/<first two digits>/<sha256>`.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Uploading"
        COMPLETE = "complete", "Complete"

    sha256 = models.CharField(primary_key=True, max_length=64)
    size = models.BigIntegerField()
    content_type = models.CharField(max_length=255)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    # Who first uploaded it: the bytes count against their quota.
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # An image's thumbnail (made by a task): a blob of its own.
    thumbnail = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="thumbnail_of"
    )
    is_thumbnail = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "file"
        indexes = [models.Index(fields=["uploaded_by", "state"], name="sync_blob_owner_state")]

    def __str__(self) -> str:
        return f"{self.sha256[:12]}… ({self.content_type}, {self.size} bytes)"

    @property
    def key(self) -> str:
        return f"blobs/{self.sha256[:2]}/{self.sha256}"


class BlobUpload(models.Model):
    """One user's upload of a blob, in parts, resumable until it expires."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    blob = models.ForeignKey(Blob, on_delete=models.CASCADE, related_name="uploads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    part_size = models.PositiveIntegerField()
    # The storage's own id for it (S3's multipart UploadId; empty on the file system).
    storage_id = models.CharField(max_length=1024, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = "file upload"

    def __str__(self) -> str:
        return f"upload {self.id} of {self.blob_id[:12]}…"

    @property
    def key(self) -> str:
        """Where its parts are put together, apart from the blob until checked."""
        return f"uploads/{self.id}"

    @property
    def parts(self) -> int:
        return max(1, -(-self.blob.size // self.part_size))

    def part_length(self, number: int) -> int:
        """The bytes part `number` (from 1) must hold."""
        if number < self.parts:
            return self.part_size
        return self.blob.size - self.part_size * (self.parts - 1)
