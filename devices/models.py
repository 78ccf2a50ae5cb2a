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
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["user", "push_active"], name="devices_user_push")]

    def __str__(self) -> str:
        return f"{self.name or self.platform} ({self.id})"
