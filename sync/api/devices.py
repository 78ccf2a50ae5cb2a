from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from devices.selectors import devices_for_user
from devices.services import device_delete, device_register, device_update
from devices.webpush import public_key
from sync.api.base import SyncAPIView
from sync.api.device_serializers import (
    DeviceSerializer,
    DeviceUpdateSerializer,
    WebPushKeySerializer,
)
from sync.api.serializers import ErrorSerializer
from syncbase.errors import SyncError


class DeviceListView(SyncAPIView):
    @extend_schema(responses=DeviceSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(DeviceSerializer(devices_for_user(user=request.user), many=True).data)

    @extend_schema(
        request=DeviceSerializer,
        responses={
            201: DeviceSerializer,
            200: DeviceSerializer,
            400: ErrorSerializer,
            409: ErrorSerializer,
        },
        description="Register this device (idempotent: the same id again updates it).",
    )
    def post(self, request: Request) -> Response:
        serializer = DeviceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        device, created = device_register(user=request.user, device_id=data.pop("id"), data=data)
        return Response(
            DeviceSerializer(device).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class DeviceDetailView(SyncAPIView):
    def _device(self, request: Request, device_id):  # noqa: ANN001, ANN202
        return get_object_or_404(devices_for_user(user=request.user), pk=device_id)

    @extend_schema(responses={200: DeviceSerializer, 404: ErrorSerializer})
    def get(self, request: Request, device_id) -> Response:  # noqa: ANN001
        return Response(DeviceSerializer(self._device(request, device_id)).data)

    @extend_schema(
        request=DeviceUpdateSerializer,
        responses={200: DeviceSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
    )
    def patch(self, request: Request, device_id) -> Response:  # noqa: ANN001
        device = self._device(request, device_id)
        serializer = DeviceUpdateSerializer(device, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        device = device_update(device=device, data=dict(serializer.validated_data))
        return Response(DeviceSerializer(device).data)

    @extend_schema(responses={204: None, 404: ErrorSerializer})
    def delete(self, request: Request, device_id) -> Response:  # noqa: ANN001
        device_delete(device=self._device(request, device_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebPushKeyView(SyncAPIView):
    @extend_schema(
        responses={200: WebPushKeySerializer, 404: ErrorSerializer},
        description=(
            "The VAPID public key a browser subscribes to Web Push with "
            "(`applicationServerKey`); 404 `webpush_not_configured` when the server "
            "sends no Web Push."
        ),
    )
    def get(self, request: Request) -> Response:
        key = public_key()
        if key is None:
            raise SyncError(
                "webpush_not_configured",
                "This server sends no Web Push (no VAPID key is configured).",
                status_code=404,
            )
        return Response({"public_key": key})
