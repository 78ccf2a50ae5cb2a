from __future__ import annotations

import logging
import uuid
from collections import Counter
from typing import Any

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from devices.models import Device
from devices.selectors import HEADER, device_from_request, user_id_of
from sync import registry
from sync.accounts.services import token_login, token_logout
from sync.api.base import SyncAPIView
from sync.api.handshake import (
    app_verdict,
    handshake,
    refuse_if_too_old,
    reported,
    with_version_headers,
)
from sync.api.serializers import (
    ConflictResolveRequestSerializer,
    ConflictResolveResponseSerializer,
    ConflictSerializer,
    ErrorSerializer,
    LogoutRequestSerializer,
    LogoutResponseSerializer,
    ModelDescriptionSerializer,
    PullResponseSerializer,
    PushRequestSerializer,
    PushResponseSerializer,
    StaleErrorSerializer,
    TokenRequestSerializer,
    TokenResponseSerializer,
)
from sync.choices import ConflictStatus, Status
from sync.engine import metrics
from sync.engine.conflicts import conflict_resolve, conflicts_for_user
from sync.engine.pull import PullPage, pull_page_read, resolve_models
from sync.engine.push import push_apply
from sync.engine.seen import device_seen
from sync.engine.versions import AppSchema
from sync.models import Token
from sync.schema import TranslationError
from syncbase import request_log
from syncbase.conf import sync_settings
from syncbase.errors import SyncError

logger = logging.getLogger(__name__)

DEVICE_HEADER = OpenApiParameter(
    HEADER, str, OpenApiParameter.HEADER, required=True, description="A registered device's id."
)
ERRORS = {400: ErrorSerializer, 401: ErrorSerializer, 403: ErrorSerializer}


class TokenView(SyncAPIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        request=TokenRequestSerializer, responses={200: TokenResponseSerializer, **ERRORS}
    )
    def post(self, request: Request) -> Response:
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request=request._request, **serializer.validated_data)
        if user is None or not user.is_active:
            raise SyncError("invalid_credentials", "Unable to log in with these credentials.")
        return Response({"token": token_login(user=user, request=request._request)})


def pull_limit(raw: str | None) -> int:
    """`?limit=` of a pull page (the device pull, and the data API's `?since=`):
    SYNC_PULL_DEFAULT_LIMIT when absent, else 1..SYNC_PULL_MAX_LIMIT."""
    if raw is None:
        return sync_settings.SYNC_PULL_DEFAULT_LIMIT
    top = sync_settings.SYNC_PULL_MAX_LIMIT
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= top:
        raise SyncError(
            "bad_limit",
            f"limit must be an integer from 1 to {top}.",
            errors={"limit": [f"Must be an integer from 1 to {top}."]},
        )
    return int(raw)


def mutations_of(body: Any) -> list[Any]:
    """The mutations of a push body (a device's push, the data API's bulk):
    `{"mutations": [...]}`; each is checked when it is applied, and their
    number by the write service (413 too_many_mutations)."""
    if not isinstance(body, dict) or not isinstance(body.get("mutations"), list):
        raise SyncError(
            "invalid",
            'The body must be {"mutations": [...]}.',
            errors={"mutations": ["A list of mutations is required."]},
        )
    return body["mutations"]


class LogoutView(SyncAPIView):
    """The app signs out: this token is revoked (or every token of the user
    with `{"everywhere": true}`). docs/protocol.md, "Logging out", says what
    the app does first (push its outbox)."""

    @extend_schema(
        request=LogoutRequestSerializer, responses={200: LogoutResponseSerializer, **ERRORS}
    )
    def post(self, request: Request) -> Response:
        body = request.data if isinstance(request.data, dict) else {}
        everywhere = body.get("everywhere", False)
        if not isinstance(everywhere, bool):
            raise SyncError(
                "invalid",
                "everywhere must be true or false.",
                errors={"everywhere": ["Must be a boolean."]},
            )
        token = request.auth
        if not isinstance(token, Token):  # a session (the admin's): nothing to revoke
            raise SyncError("invalid", "Logging out revokes the token of the request.")
        return Response({"revoked": token_logout(token=token, everywhere=everywhere)})


# What the app says of itself on every sync call (docs/protocol.md, "The handshake").
HANDSHAKE_HEADERS = [
    OpenApiParameter(
        "X-App-Version", str, OpenApiParameter.HEADER, description="The app's version, e.g. 2.4.1."
    ),
    OpenApiParameter(
        "X-Schema-Version",
        str,
        OpenApiParameter.HEADER,
        description="label=version for every model the app knows; absent: the current schema.",
    ),
    OpenApiParameter(
        "X-Outbox-Pending", int, OpenApiParameter.HEADER, description="Edits waiting to be pushed."
    ),
    OpenApiParameter(
        "X-Outbox-Oldest-Age",
        int,
        OpenApiParameter.HEADER,
        description="Seconds the oldest of them has waited.",
    ),
]

# The pull's parameters (a live pull's too: sync.api.live).
PULL_PARAMETERS = [
    DEVICE_HEADER,
    *HANDSHAKE_HEADERS,
    OpenApiParameter(
        "cursor", str, description="From the previous response; absent = initial sync."
    ),
    OpenApiParameter("limit", int, description="1..1000, default 500."),
    OpenApiParameter("models", str, description="Comma-separated model labels."),
]


class PullView(SyncAPIView):
    @extend_schema(
        parameters=PULL_PARAMETERS,
        responses={
            200: PullResponseSerializer,
            410: ErrorSerializer,
            426: ErrorSerializer,
            **ERRORS,
        },
    )
    def get(self, request: Request) -> Response:
        device = self.admitted(request)
        return self.answer(request, device, self.read(request, device))

    def admitted(self, request: Request) -> Device:
        """The caller's device, if its app version may still pull
        (`426 upgrade_required` if not: its pushes are still accepted)."""
        device = device_from_request(request)
        found = app_verdict(request, device)
        if found.upgrade_required:
            device_seen(device=device, reported=reported(request))
        refuse_if_too_old(found, device)
        return device

    def read(self, request: Request, device: Device, *, cursor: str | None = None) -> PullPage:
        """A page from `cursor` (by default the request's)."""
        params = request.query_params
        return pull_page_read(
            user_id=user_id_of(request),
            cursor=cursor or params.get("cursor") or None,
            limit=pull_limit(params.get("limit")),
            models=resolve_models(params.get("models")),
            schema=handshake(request).schema,
        )

    def answer(self, request: Request, device: Device, page: PullPage) -> Response:
        if not page.has_more:
            # Once per sync rather than per page: a write per page would slow a
            # large initial sync, and only an up-to-date cursor is worth keeping.
            device_seen(
                device=device,
                cursor=page.cursor,
                moved=bool(page.changes),
                reported=reported(request),
            )
        metrics.pull_counted(changes=len(page.changes))
        request_log.annotate(request, changes=len(page.changes), has_more=page.has_more)
        return with_version_headers(Response(page.body()), app_verdict(request, device))


class PushView(SyncAPIView):
    @extend_schema(
        parameters=[DEVICE_HEADER, *HANDSHAKE_HEADERS],
        request=PushRequestSerializer,
        responses={200: PushResponseSerializer, 413: ErrorSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = request.data
        device = device_from_request(request)
        cursor = body.get("cursor") if isinstance(body, dict) else None
        # An app below the minimum version still pushes (its offline work
        # drains); it is told so by its pulls, and warned here.
        found = app_verdict(request, device)
        outcome = push_apply(
            user=request.user,
            device=device,
            mutations=mutations_of(body),
            cursor=cursor if isinstance(cursor, str) else None,
            schema=handshake(request).schema,
        )
        device_seen(device=device, reported=reported(request))
        statuses = Counter(r.status for r in outcome.results)
        # On the request's one log line (syncbase.request_log), e.g.
        # "mutations=2 applied=1 rejected=1".
        request_log.annotate(
            request, mutations=len(outcome.results), **dict(sorted(statuses.items()))
        )
        if logger.isEnabledFor(logging.DEBUG):
            not_applied = [
                f"{r.mutation_id}:{r.status}" for r in outcome.results if r.status != Status.APPLIED
            ]
            if not_applied:
                logger.debug("push not applied: %s", " ".join(not_applied))
        return with_version_headers(
            Response({"results": [r.as_dict() for r in outcome.results], "cursor": outcome.cursor}),
            found,
        )


class ModelsView(SyncAPIView):
    @extend_schema(responses={200: ModelDescriptionSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response([t.describe() for t in registry.all_types()])


CONFLICT_STATUSES = ConflictStatus.values


class ConflictsView(SyncAPIView):
    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=CONFLICT_STATUSES)],
        responses={200: ConflictSerializer(many=True), **ERRORS},
        description="Your own conflicts, newest first (the newest 1,000 at most), with "
        "base / server / client values and, once settled, the outcome.",
    )
    def get(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        if status is not None and status not in CONFLICT_STATUSES:
            listed = ", ".join(CONFLICT_STATUSES)
            raise SyncError(
                "bad_status",
                f"status must be one of {listed}.",
                errors={"status": [f"Must be one of {listed}."]},
            )
        qs = conflicts_for_user(user_id=user_id_of(request), status=status)
        newest = qs[: sync_settings.SYNC_CONFLICTS_LIST_MAX]
        schema = handshake(request).schema
        return Response([schema.conflict(c) for c in ConflictSerializer(newest, many=True).data])


class ConflictDetailView(SyncAPIView):
    @extend_schema(responses={200: ConflictSerializer, 404: ErrorSerializer, **ERRORS})
    def get(self, request: Request, conflict_id: uuid.UUID) -> Response:
        conflict = conflicts_for_user(user_id=user_id_of(request), status=None).filter(
            pk=conflict_id
        )
        found = conflict.first()
        if found is None:
            raise SyncError("not_found", "No such conflict of yours.", status_code=404)
        return Response(handshake(request).schema.conflict(ConflictSerializer(found).data))


class ConflictResolveView(SyncAPIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                HEADER,
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Optional: the resolving device, which is then not woken by it.",
            )
        ],
        request=ConflictResolveRequestSerializer,
        responses={
            200: ConflictResolveResponseSerializer,
            404: ErrorSerializer,
            409: ErrorSerializer,
            412: StaleErrorSerializer,
            **ERRORS,
        },
        description="Settle one of your own conflicts (unless its model is resolved by staff).",
    )
    def post(self, request: Request, conflict_id: uuid.UUID) -> Response:
        serializer = ConflictResolveRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        body = serializer.validated_data
        device = device_from_request(request) if request.headers.get(HEADER) else None
        schema = handshake(request).schema
        values = body.get("values")
        if values is not None and schema.behind:
            values = _upgraded_values(schema, conflict_id, user_id_of(request), values)
        resolved = conflict_resolve(
            conflict_id=conflict_id,
            user=request.user,
            choice=body["choice"],
            values=values,
            expected_version=body["expected_version"],
            note=body.get("note", ""),
            device_id=device.pk if device is not None else None,
        )
        return Response(
            {
                "conflict": schema.conflict(ConflictSerializer(resolved.conflict).data),
                "object": schema.state(resolved.object),
            }
        )


def _upgraded_values(
    schema: AppSchema, conflict_id: uuid.UUID, user_id: int, values: dict[str, Any]
) -> dict[str, Any]:
    """An older app's chosen values, in the current shape."""
    found = conflicts_for_user(user_id=user_id, status=None).filter(pk=conflict_id).first()
    stype = registry.get(found.model) if found is not None else None
    if stype is None:
        return values  # the resolve says what is wrong
    try:
        upgraded = schema.upgrade(stype, dict(values), creating=False)
    except TranslationError as exc:
        raise SyncError("invalid", str(exc), errors={"values": [str(exc)]}) from None
    # An old field made of several (a split) brings back the parts not at
    # stake too: those left as the server has them are no part of the answer.
    server = found.server_data or {}
    return {
        name: value
        for name, value in upgraded.items()
        if name in found.fields or server.get(name, value) != value
    }
