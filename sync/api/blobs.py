"""Files: uploads, links, limits (docs/protocol.md, "Files"). The rules are
sync.engine.blobs'; the bytes' home is sync.engine.blobstore."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.core import signing
from django.http import FileResponse, HttpResponseBase
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from sync.api.base import SyncAPIView
from sync.api.serializers import ErrorSerializer
from sync.api.throttling import LinkRateThrottle
from sync.engine import blobs
from sync.engine.blobstore import disposition, store, unsign
from sync.models import Blob
from syncbase.conf import sync_settings
from syncbase.errors import SyncError


def _wire_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _blob_body(blob: Blob) -> dict[str, Any]:
    return {
        "sha256": blob.sha256,
        "size": blob.size,
        "content_type": blob.content_type,
        "state": blob.state,
    }


def _upload_body(state: blobs.UploadState, request: Request) -> dict[str, Any]:
    upload = state.upload
    if upload is None:
        return _blob_body(state.blob)
    bytes_store = store()
    parts = []
    for number in range(1, upload.parts + 1):
        part: dict[str, Any] = {"number": number, "size": upload.part_length(number)}
        done = state.done.get(number)
        if done is not None and done.size == part["size"]:
            part["done"] = True
            if done.etag:
                part["etag"] = done.etag
        else:
            part["done"] = False
            part["url"] = bytes_store.part_url(upload, number, request)
        parts.append(part)
    return {
        **_blob_body(state.blob),
        "upload_id": str(upload.id),
        "part_size": upload.part_size,
        "expires_at": _wire_time(upload.expires_at),
        "links_expire_at": _wire_time(
            timezone.now() + dt.timedelta(seconds=sync_settings.SYNC_BLOB_LINK_SECONDS)
        ),
        "parts": parts,
    }


class BlobLimitsView(SyncAPIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "BlobLimits",
                {
                    "max_size": serializers.IntegerField(),
                    "quota": serializers.IntegerField(),
                    "used": serializers.IntegerField(),
                    "part_size": serializers.IntegerField(),
                    "content_types": serializers.ListField(child=serializers.CharField()),
                    "link_seconds": serializers.IntegerField(),
                },
            )
        },
        description="What this server takes, and how much of your quota your files use.",
        operation_id="blobs_limits",
    )
    def get(self, request: Request) -> Response:
        return Response(blobs.limits(request.user))


class UploadStartSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    content_type = serializers.CharField()


class UploadsView(SyncAPIView):
    @extend_schema(
        request=UploadStartSerializer,
        responses={200: dict, 201: dict, 400: ErrorSerializer, 413: ErrorSerializer},
        description=(
            "Ask to upload a file: 200 with `state: complete` when the server has "
            "these bytes already (nothing to send), else 201 (or 200 for the upload "
            "under way) with the parts and a URL to PUT each missing one to."
        ),
    )
    def post(self, request: Request) -> Response:
        body = request.data if isinstance(request.data, dict) else {}
        state = blobs.upload_start(
            user=request.user,
            sha256=body.get("sha256"),
            size=body.get("size"),
            content_type=body.get("content_type"),
        )
        fresh = state.upload is not None and not state.done
        return Response(
            _upload_body(state, request),
            status=status.HTTP_201_CREATED if fresh else status.HTTP_200_OK,
        )


class UploadView(SyncAPIView):
    @extend_schema(
        responses={200: dict, 404: ErrorSerializer},
        description="An upload's parts: those done, and fresh URLs for the others (to resume).",
    )
    def get(self, request: Request, upload_id: uuid.UUID) -> Response:
        return Response(
            _upload_body(blobs.upload_of(user=request.user, upload_id=upload_id), request)
        )


class UploadCompleteView(SyncAPIView):
    @extend_schema(
        request=None,
        responses={200: dict, 404: ErrorSerializer, 409: ErrorSerializer, 422: ErrorSerializer},
        description=(
            "Put the parts together and check them against the sha256 and size: "
            "then the file is complete and the objects that refer to it get a new version."
        ),
    )
    def post(self, request: Request, upload_id: uuid.UUID) -> Response:
        blob = blobs.upload_complete(user=request.user, upload_id=upload_id)
        return Response(_blob_body(blob))


def _signed(request: Request) -> dict[str, Any]:
    try:
        return unsign(request.query_params.get("signature", ""))
    except signing.SignatureExpired:
        raise SyncError(
            "link_expired", "This link has expired: ask for a new one.", status_code=403
        ) from None
    except signing.BadSignature:
        raise SyncError("bad_signature", "This link is not valid.", status_code=403) from None


class PartView(SyncAPIView):
    """The file-system store's part URL: the signature is the credential."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [LinkRateThrottle]

    @extend_schema(
        request={"application/octet-stream": bytes},
        responses={200: dict, 400: ErrorSerializer, 403: ErrorSerializer},
        parameters=[OpenApiParameter("signature", str, required=True)],
    )
    def put(self, request: Request, upload_id: uuid.UUID, number: int) -> Response:
        payload = _signed(request)
        part = blobs.put_part(
            token_payload=payload, upload_id=upload_id, number=number, stream=request._request
        )
        response = Response({"number": part.number, "size": part.size, "etag": part.etag})
        response["ETag"] = f'"{part.etag}"'
        return response


class BlobView(SyncAPIView):
    @extend_schema(
        parameters=[OpenApiParameter("name", str, description="The file name to download as.")],
        responses={200: dict, 404: ErrorSerializer},
        description=(
            "A file you can see (an object in your scope refers to it): its state, "
            "and a short-lived link to its bytes and its thumbnail's when complete."
        ),
    )
    def get(self, request: Request, sha256: str) -> Response:
        blob = blobs.visible_blob(user=request.user, sha256=sha256)
        body = _blob_body(blob)
        if blob.state == Blob.State.COMPLETE:
            name = request.query_params.get("name") or blob.sha256
            body["url"] = blobs.download_link(blob, name=name, request=request)
            body["expires_at"] = _wire_time(
                timezone.now() + dt.timedelta(seconds=sync_settings.SYNC_BLOB_LINK_SECONDS)
            )
            thumb = blob.thumbnail
            body["thumbnail"] = (
                None
                if thumb is None
                else {
                    **_blob_body(thumb),
                    "url": blobs.download_link(thumb, name=f"thumbnail-{name}", request=request),
                }
            )
        return Response(body)


class ContentView(SyncAPIView):
    """The file-system store's download link: the signature is the credential."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [LinkRateThrottle]

    @extend_schema(
        responses={(200, "application/octet-stream"): bytes, 403: ErrorSerializer},
        parameters=[OpenApiParameter("signature", str, required=True)],
    )
    def get(self, request: Request, sha256: str) -> HttpResponseBase:
        payload = _signed(request)
        if payload.get("b") != sha256:
            raise SyncError("bad_signature", "This link is for another file.", status_code=403)
        blob = Blob.objects.filter(pk=sha256, state=Blob.State.COMPLETE).first()
        if blob is None:
            raise SyncError("not_found", "No such file.", status_code=404)
        response = FileResponse(store().open(blob.key), content_type=blob.content_type)
        response["Content-Length"] = str(blob.size)
        response["Content-Disposition"] = disposition(str(payload.get("name") or sha256))
        response["Cache-Control"] = "private, max-age=300"
        response["X-Content-Type-Options"] = "nosniff"
        # The type is the uploader's word: never let it run as this origin's page.
        response["Content-Security-Policy"] = "sandbox; default-src 'none'"
        return response
