from __future__ import annotations

from rest_framework import serializers

from .models import Device


class DeviceSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField()

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
