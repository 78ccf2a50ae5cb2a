from __future__ import annotations

import uuid

from rest_framework import serializers

from devices.models import Device


class StrictUUIDField(serializers.UUIDField):
    """A UUID written as a string; DRF's field would also take a JSON integer."""

    def to_internal_value(self, data: object) -> uuid.UUID:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class DeviceSerializer(serializers.ModelSerializer):
    id = StrictUUIDField()

    class Meta:
        model = Device
        fields = [
            "id",
            "platform",
            "name",
            "push_token",
            "app_version",
            "push_active",
            "last_seen",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["push_active", "last_seen", "created_at", "updated_at"]
        extra_kwargs = {
            "name": {"required": False},
            "push_token": {"required": False},
            "app_version": {"required": False},
        }


class DeviceUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["platform", "name", "push_token", "app_version"]


class WebPushKeySerializer(serializers.Serializer):
    public_key = serializers.CharField(
        help_text="URL-safe base64 of the uncompressed P-256 point (applicationServerKey)."
    )
