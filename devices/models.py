from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Device(models.Model):
    """An app installation that syncs: its id is chosen by the app (a UUID)."""

    class Platform(models.TextChoices):
        ANDROID = "android", "Android"
        IOS = "ios", "iOS"
        WEB = "web", "Web"

    id = models.UUIDField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="devices"
    )
    platform = models.CharField(max_length=8, choices=Platform.choices)
    name = models.CharField(max_length=200, blank=True)
    app_version = models.CharField(max_length=50, blank=True)
    push_token = models.CharField(max_length=4096, blank=True)
    push_active = models.BooleanField(
        default=False, help_text="Off once FCM reports the token unregistered."
    )
    last_cursor = models.TextField(blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    last_push_at = models.DateTimeField(null=True, blank=True)
    last_push_outcome = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["user", "push_active"], name="devices_user_push")]

    def __str__(self) -> str:
        return f"{self.name or self.platform} ({self.id})"


class PushOutbox(models.Model):
    """Devices to wake: written in the same transaction as the change it is
    about, so a wake-up is never lost, even when the broker is down at commit.

    A Celery task claims a row (`claimed_until`), sends, and deletes it; a
    periodic sweep hands rows nobody claimed, or whose claim ran out (a worker
    died), to the task again. Not audited: it is plumbing, not synced data.
    """

    id = models.BigAutoField(primary_key=True)
    channels = models.JSONField(help_text="Channels whose members' devices to wake.")
    origin_device_id = models.UUIDField(null=True, blank=True, help_text="Not woken by it.")
    seq = models.BigIntegerField(default=0, help_text="The newest feed position it covers.")
    # A resolved conflict also tells the device that raised it.
    conflict_id = models.UUIDField(null=True, blank=True)
    conflict_device_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Recorded by the database for a write outside the sync service
    # (sync.engine.capture): no task was handed its id, so the sweep takes it at once.
    captured = models.BooleanField(default=False)

    class Meta:
        verbose_name = "wake-up waiting to be sent"
        verbose_name_plural = "wake-ups waiting to be sent"
        indexes = [models.Index(fields=["created_at"], name="devices_outbox_created")]

    def __str__(self) -> str:
        return f"wake-up #{self.pk} for {len(self.channels)} channel(s)"
