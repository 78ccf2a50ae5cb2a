"""What every view of the API uses, whatever the project's REST_FRAMEWORK
setting says: a project that never configured DRF (or configured it for its
own API, with other authentication, renderers or error handler) still gets
this API as docs/protocol.md describes it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.renderers import BaseRenderer
from rest_framework.schemas.inspectors import ViewInspector
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from sync.api.device_auth import DeviceTokenAuthentication
from sync.api.throttling import AnonRateThrottle, UserRateThrottle
from syncbase.errors import exception_handler
from syncbase.parsers import ORJSONParser
from syncbase.renderers import ORJSONRenderer


class SyncAPIView(APIView):
    """The base of every view (and, after GenericViewSet, viewset) of the API."""

    authentication_classes: Sequence[type[BaseAuthentication]] = [
        DeviceTokenAuthentication,
        SessionAuthentication,
    ]
    permission_classes: Sequence[type[BasePermission]] = [IsAuthenticated]
    renderer_classes: Sequence[type[BaseRenderer]] = [ORJSONRenderer]
    parser_classes: Sequence[type[BaseParser]] = [ORJSONParser]
    throttle_classes: Sequence[type[BaseThrottle]] = [AnonRateThrottle, UserRateThrottle]
    schema: ViewInspector | None = AutoSchema()

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Any]:
        return exception_handler
