from __future__ import annotations

from typing import Any

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
    # What the app said on its last sync call (docs/protocol.md, "App
    # versions and schema changes"): the schema it speaks, and its outbox.
    schema_versions = models.JSONField(
        default=dict, blank=True, help_text="Model label → the schema version the app speaks."
    )
    outbox_pending = models.PositiveIntegerField(
        null=True, blank=True, help_text="Edits waiting to be pushed, as the app last reported."
    )
    outbox_oldest_at = models.DateTimeField(
        null=True, blank=True, help_text="When the oldest of those edits was made."
    )
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


class AppVersionPolicy(models.Model):
    """Which app versions of a platform may still sync (docs/protocol.md,
    "Too old: drain first, then stop"). Below `minimum_version` a pull is
    answered `426 upgrade_required` while pushes are still accepted, so that
    a device's offline edits drain before its user upgrades. Below
    `deprecated_below`, responses carry `Deprecation` (and `Sunset`, once
    `sunset_at` is set) headers; after `sunset_at` those versions are below
    the minimum too."""

    platform = models.CharField(max_length=8, choices=Device.Platform.choices, unique=True)
    minimum_version = models.CharField(
        max_length=50,
        blank=True,
        help_text="Below it, pulls are refused (426) and pushes still accepted. Blank: none.",
    )
    deprecated_below = models.CharField(
        max_length=50,
        blank=True,
        help_text="Below it, responses warn (Deprecation / Sunset headers). Blank: none.",
    )
    sunset_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When versions below 'deprecated below' stop pulling (they count as below "
        "the minimum from then on).",
    )
    upgrade_url = models.URLField(
        blank=True, help_text="Where users get the new version (the app store page)."
    )
    deprecated_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When 'deprecated below' was last set."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "app version policy"
        verbose_name_plural = "app version policies"

    def __str__(self) -> str:
        return f"{self.get_platform_display()}: minimum {self.minimum_version or 'none'}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The date the Deprecation header gives: when these versions were deprecated.
        before = type(self).objects.filter(pk=self.pk).values_list("deprecated_below", flat=True)
        if self.deprecated_below and (self.pk is None or before.first() != self.deprecated_below):
            self.deprecated_at = timezone.now()
        super().save(*args, **kwargs)
