"""The back-office REST API: `/api/v1/data/<app_label>.<modelname>/`.

One viewset, serializer and filter set per synced model, generated from the
registry (nothing is written by hand per model). Reads use the caller's data
scope (`sync.accounts.selectors.data_scope`); every write is a mutation through
`sync.engine.write.mutations_apply`, so versions, history (the account as history
user), the change feed, conflicts and device wake-ups are exactly a push's.

Concurrency (docs/protocol.md, "Back-office REST"): objects carry their `version`
and responses an `ETag: "<version>"`. `If-None-Match` on a read → 304.
`If-Match` on a write is the version the caller saw: if the object moved on,
the write is merged under the model's conflict policy like a device's stale
push; what a person must settle becomes a conflict and a `412` with the current
state, never a silent overwrite. A write without `If-Match` applies at the
current version (and is still versioned, recorded and merged like any write).
"""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import django_filters
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import filters, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from devices.selectors import user_id_of
from sync import registry
from sync.accounts.selectors import data_scope
from sync.api.base import SyncAPIView
from sync.api.serializers import ErrorSerializer, MutationResultSerializer, PullResponseSerializer
from sync.api.throttling import TokenRateThrottle
from sync.api.views import mutations_of, pull_limit
from sync.choices import OnStale, Op, Reason, Status
from sync.codecs import FieldCodec
from sync.engine.mutations import Malformed, Mutation, MutationResult, parse
from sync.engine.pull import pull_page_read
from sync.engine.scope import Scope
from sync.engine.write import check_batch_size, mutations_apply
from sync.registry import SyncedType
from syncbase.conf import sync_settings
from syncbase.errors import SyncError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


# --- permissions and throttling -------------------------------------------------------


class ModelPermissions(permissions.DjangoModelPermissions):
    """The account's Django model permissions; reading needs `view` too."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request: Request, view: Any) -> bool:
        if getattr(view, "action", None) == "bulk" and request.user.is_authenticated:
            # A bulk POST may only update or delete: any write permission lets
            # it in, and `DataViewSet._bulk_item` checks each item's own.
            meta = view.stype.model._meta
            return any(
                request.user.has_perm(f"{meta.app_label}.{action}_{meta.model_name}")
                for action in OP_PERMISSION.values()
            )
        return super().has_permission(request, view)


OP_PERMISSION: dict[str, str] = {Op.CREATE: "add", Op.UPDATE: "change", Op.DELETE: "delete"}


# --- generated per model --------------------------------------------------------------


def _drf_field(codec: FieldCodec) -> serializers.Field:
    """The OpenAPI description of a synced field (validation is the codecs')."""
    common: dict[str, Any] = {
        "required": codec.required,
        "read_only": codec.read_only,
        "allow_null": codec.nullable,
    }
    if codec.read_only:
        common = {"read_only": True, "allow_null": codec.nullable}
    if codec.choices is not None:
        return serializers.ChoiceField(choices=list(codec.choices), **common)
    max_length = getattr(codec.field, "max_length", None)
    kind = codec.type
    if kind in ("string", "text"):
        if codec.read_only:
            return serializers.CharField(**common)
        return serializers.CharField(allow_blank=True, max_length=max_length, **common)
    if kind == "reference":
        pk = codec.ref_model._meta.pk if codec.ref_model is not None else None
        if pk is not None and pk.get_internal_type() in ("AutoField", "BigAutoField"):
            return serializers.IntegerField(**common)
        return serializers.UUIDField(**common)
    simple: dict[str, type[serializers.Field]] = {
        "integer": serializers.IntegerField,
        "number": serializers.FloatField,
        "boolean": serializers.BooleanField,
        "date": serializers.DateField,
        "datetime": serializers.DateTimeField,
        "uuid": serializers.UUIDField,
        "json": serializers.JSONField,
        "blob": serializers.JSONField,  # {"sha256", "size", "content_type", "name"}
    }
    return simple[kind](**common)


def _component_name(stype: SyncedType) -> str:
    return "".join(part.capitalize() for part in stype.label.replace("_", ".").split("."))


def serializer_for(stype: SyncedType) -> type[serializers.Serializer]:
    attrs: dict[str, Any] = {
        "id": serializers.UUIDField(
            required=False, help_text="Chosen by the creator; the server picks one if left out."
        ),
        "version": serializers.IntegerField(read_only=True),
    }
    attrs.update({name: _drf_field(codec) for name, codec in stype.codecs.items()})
    if stype.owner_field:
        # Read-only for devices, but an account that sees everything (or staff)
        # may choose the owner; others own what they create.
        owner = stype.codecs[stype.owner_field]
        attrs[stype.owner_field] = _drf_field(replace(owner, read_only=False, required=False))
        attrs[stype.owner_field].help_text = (
            "Who owns it. An unrestricted account may set it; otherwise the writer owns "
            "what it creates."
        )
    return type(_component_name(stype), (serializers.Serializer,), attrs)


class _UtcDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 instant, compared in UTC. PostgreSQL takes offsets up to ±15:59
    only, so `+20:55` (valid ISO) is converted before the query; a value the
    conversion carries off the calendar is a clean 400."""

    def to_python(self, value: Any) -> dt.datetime | None:
        parsed = super().to_python(value)
        if parsed is None or timezone.is_naive(parsed):
            return parsed
        try:
            return parsed.astimezone(dt.UTC)
        except OverflowError:
            raise ValidationError("Outside the range of dates.", code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = _UtcDateTimeField


def filterset_for(stype: SyncedType) -> type[django_filters.FilterSet]:
    names = [
        name
        for name, codec in stype.codecs.items()
        if codec.type in ("string", "integer", "boolean", "date", "uuid", "reference")
        and codec.type != "text"
    ]
    attrs: dict[str, Any] = {
        "updated_after": UtcDateTimeFilter(field_name="updated_at", lookup_expr="gt"),
        "updated_before": UtcDateTimeFilter(field_name="updated_at", lookup_expr="lt"),
        "Meta": type("Meta", (), {"model": stype.model, "fields": names}),
    }
    return type(f"{_component_name(stype)}Filter", (django_filters.FilterSet,), attrs)


class Pages(CursorPagination):
    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    ordering = ("-updated_at", "-id")


# --- the viewset ------------------------------------------------------------------------


_NO_EMPTY = object()


def _empty_value(field: Any) -> Any:
    """What a field holds when nobody set it: its default, else null, else ""."""
    if field.has_default():
        return field.get_default()
    if field.null:
        return None
    if field.empty_strings_allowed:
        return ""
    return _NO_EMPTY


def _etag(version: int) -> str:
    return f'"{version}"'


def _version_from(header: str | None, name: str) -> int | None:
    """`If-Match: "7"` → 7. Weak tags compare as strong; `*` means any version."""
    if not header or header.strip() == "*":
        return None
    tag = header.split(",")[0].strip()
    tag = tag.removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise SyncError(
            "bad_precondition",
            f'{name} must be a version as the ETag gave it, e.g. "7".',
            errors={name: ["Not a version."]},
        )
    return int(tag)


class DataViewSet(viewsets.GenericViewSet, SyncAPIView):
    """Generated per model; `stype` is set on each generated subclass."""

    stype: SyncedType
    permission_classes = [permissions.IsAuthenticated, ModelPermissions]
    throttle_classes = [TokenRateThrottle]
    pagination_class = Pages
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend, filters.OrderingFilter]
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"

    def get_queryset(self) -> QuerySet:
        scope = self._scope()
        return self.stype.model._default_manager.filter(
            scope.filter(self.stype), deleted_at__isnull=True
        )

    def _scope(self) -> Scope:
        cached = getattr(self.request, "_data_scope", None)
        if cached is None:
            cached = data_scope(self.request.user)
            self.request._data_scope = cached  # type: ignore[attr-defined]
        return cached

    def _body(self, obj: Any) -> dict[str, Any]:
        return {"id": str(obj.pk), "version": obj.version, **self.stype.encode(obj.__dict__)}

    def _object(self, pk: Any) -> Any:
        try:
            object_id = uuid.UUID(str(pk))
        except ValueError:
            raise Http404 from None
        obj = self.get_queryset().filter(pk=object_id).first()
        if obj is None:
            raise SyncError("not_found", f"No {self.stype.label} with this id.", status_code=404)
        return obj

    # --- reads

    def list(self, request: Request) -> Response:
        since = request.query_params.get("since")
        if since is not None:
            return self._since(request, since)
        # On the replica when there is one: a list may lag behind a write just
        # made by the replica's replay (`?since=` and reads by id do not).
        queryset = self.filter_queryset(self.get_queryset().using(_read_alias()))
        page = self.paginate_queryset(queryset)
        rows = page if page is not None else list(queryset)
        return self.get_paginated_response([self._body(obj) for obj in rows])

    def _since(self, request: Request, cursor: str) -> Response:
        params = request.query_params
        size = pull_limit(params.get("limit", params.get("page_size")))
        page = pull_page_read(
            user_id=user_id_of(request),
            cursor=cursor or None,
            limit=size,
            models=[self.stype],
            everything=self._scope().channels is None,
        )
        return Response(page.body())

    def retrieve(self, request: Request, pk: str) -> Response:
        obj = self._object(pk)
        seen = request.headers.get("If-None-Match")
        if seen and (seen.strip() == "*" or _version_from(seen, "If-None-Match") == obj.version):
            return Response(
                status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": _etag(obj.version)}
            )
        return Response(self._body(obj), headers={"ETag": _etag(obj.version)})

    # --- writes

    def create(self, request: Request) -> Response:
        data = self._payload(request)
        object_id = data.pop("id", None) or str(uuid.uuid4())
        return self._write(request, Op.CREATE, object_id, data, created=True)

    def update(self, request: Request, pk: str) -> Response:
        data = self._payload(request)
        data.pop("id", None)
        missing = [
            name
            for name, codec in self.stype.writable.items()
            if codec.required and name not in data
        ]
        if missing:
            raise SyncError(
                "invalid",
                "PUT replaces the object: send every required field, or use PATCH.",
                errors={name: ["This field is required."] for name in missing},
            )
        # Replaced: a writable field left out goes back to its empty value.
        for name, codec in self.stype.writable.items():
            if name not in data and name != self.stype.owner_field:
                empty = _empty_value(self.stype.model._meta.get_field(name))
                if empty is not _NO_EMPTY:
                    data[name] = codec.encode(empty)
        return self._write(request, Op.UPDATE, pk, data)

    def partial_update(self, request: Request, pk: str) -> Response:
        data = self._payload(request)
        data.pop("id", None)
        return self._write(request, Op.UPDATE, pk, data)

    def destroy(self, request: Request, pk: str) -> Response:
        return self._write(request, Op.DELETE, pk, None)

    def _payload(self, request: Request) -> dict[str, Any]:
        if not isinstance(request.data, dict):
            raise SyncError("invalid", "The body must be a JSON object of field values.")
        data = dict(request.data)
        data.pop("version", None)  # echoed back from a read: versions come from If-Match
        return self._owner_named(data)

    def _owner_named(self, data: dict[str, Any]) -> dict[str, Any]:
        """An owner may be named by username or e-mail as well as by user id:
        an ERP knows its people by those, and an object owned by the service
        account itself reaches no device."""
        name = self.stype.owner_field
        given = data.get(name) if name else None
        if not isinstance(given, str) or given.isdigit():
            return data
        users = get_user_model()._default_manager
        found = list(
            users.filter(
                Q(**{users.model.USERNAME_FIELD: given}) | Q(email__iexact=given)
            ).values_list("pk", flat=True)[:2]
        )
        if len(found) != 1:
            problem = "No user" if not found else "More than one user"
            raise SyncError(
                "invalid",
                "The request is invalid; see errors.",
                errors={str(name): [f"{problem} with this id, username or e-mail."]},
            )
        return {**data, str(name): found[0]}

    def _write(
        self,
        request: Request,
        op: str,
        object_id: Any,
        data: dict[str, Any] | None,
        *,
        created: bool = False,
    ) -> Response:
        seen = None if created else _version_from(request.headers.get("If-Match"), "If-Match")
        mutation = {
            "mutation_id": request.headers.get("Idempotency-Key") or str(uuid.uuid4()),
            "model": self.stype.label,
            "op": op,
            "id": str(object_id),
            "base_version": seen,
            "data": data,
        }
        item = parse(mutation)
        if isinstance(item, Malformed):
            raise SyncError(
                "invalid", "The request is invalid; see errors.", errors=item.result.errors
            )
        item.at_current = not created and seen is None
        result = self._apply(request, [item])[0]
        return self._respond(result, created=created)

    def _apply(
        self, request: Request, items: builtins.list[Mutation | Malformed]
    ) -> builtins.list[MutationResult]:
        outcome = mutations_apply(
            user=request.user,
            mutations=items,
            scope=self._scope(),
            reason=f"data API ({request.user.get_username()})",
            on_stale=OnStale.MERGE,
        )
        return outcome.results

    def _respond(self, result: MutationResult, *, created: bool) -> Response:
        headers = {"Sync-Status": str(result.status)}
        if result.version is not None:
            headers["ETag"] = _etag(result.version)
        if result.status == Status.REJECTED:
            errors = result.errors or {}
            if result.reason in (Reason.NOT_FOUND, Reason.GONE):
                raise SyncError(
                    "not_found", f"No {self.stype.label} with this id.", status_code=404
                )
            if result.reason == Reason.REUSED:
                raise SyncError(
                    "idempotency_key_reused",
                    "This Idempotency-Key was used for another request: a retry sends the "
                    "same request, a new request a new key.",
                    status_code=422,
                )
            if result.reason == Reason.PROTECTED:
                detail = errors.get("id", ["Other objects refer to it."])[0]
                raise SyncError("protected", detail, status_code=409, errors=errors)
            raise SyncError("invalid", "The change was refused; see errors.", errors=errors)
        current = {
            "model": self.stype.label,
            "id": result.id,
            "version": result.version,
            "data": result.data,
        }
        if result.status == Status.CONFLICT:
            raise SyncError(
                "stale",
                "The object changed since the version in If-Match, on fields you also changed: "
                "nothing was written. The current state is in `object`; the conflict is queued.",
                status_code=412,
                extra={"object": current, "conflict_id": result.conflict_id},
            )
        if result.data is None:  # deleted
            return Response(status=status.HTTP_204_NO_CONTENT, headers=headers)
        body = {"id": result.id, "version": result.version, **result.data}
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(body, status=code, headers=headers)

    # --- bulk

    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        raw = mutations_of(request.data)
        check_batch_size(raw)
        items = [self._bulk_item(request, m) for m in raw]
        results = self._apply(request, items)
        return Response({"results": [r.as_dict() for r in results]})

    def _bulk_item(self, request: Request, raw: Any) -> Mutation | Malformed:
        if isinstance(raw, dict):
            raw = {"model": self.stype.label, **raw}
            raw.setdefault("mutation_id", str(uuid.uuid4()))
            if raw.get("op") == Op.CREATE and not raw.get("id"):
                raw["id"] = str(uuid.uuid4())
        item = parse(raw)
        if isinstance(item, Malformed):
            return item
        if item.type is self.stype and item.data:
            try:
                item.data = self._owner_named(dict(item.data))
            except SyncError as exc:
                return Malformed(
                    item.mutation_id, item.rejected(exc.errors or {}), item.label, item.id
                )
        if item.type is not self.stype:
            return Malformed(
                item.mutation_id,
                item.rejected({"model": [f"This endpoint takes {self.stype.label} only."]}),
                item.label,
                item.id,
            )
        meta = self.stype.model._meta
        needed = f"{meta.app_label}.{OP_PERMISSION[item.op]}_{meta.model_name}"
        if not request.user.has_perm(needed):
            return Malformed(
                item.mutation_id,
                item.rejected({"op": [f"You may not {item.op} {self.stype.label} objects."]}),
                item.label,
                item.id,
            )
        item.at_current = item.op != Op.CREATE and item.base_version is None
        return item


def _listing(stype: SyncedType, serializer: type[serializers.Serializer]) -> Any:
    """The list's answer: a page of objects, or with `since` the pull response's
    shape. One or the other, told apart by `results` / `changes`."""
    name = _component_name(stype)
    page = type(
        f"Paginated{name}List",
        (serializers.Serializer,),
        {
            "next": serializers.URLField(
                allow_null=True, help_text="The next page; null at the end."
            ),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer(many=True),
        },
    )
    return PolymorphicProxySerializer(
        component_name=f"{name}ListOrChanges",
        serializers=[page, PullResponseSerializer],
        resource_type_field_name=None,
        many=False,  # already the page: not to be wrapped in the paginator's schema again
    )


def _schema(stype: SyncedType, viewset: type[DataViewSet]) -> type[DataViewSet]:
    """OpenAPI descriptions of the generated viewset."""
    serializer = serializer_for(stype)
    tag = [f"data: {stype.label}"]
    etag = OpenApiParameter(
        "If-Match",
        str,
        OpenApiParameter.HEADER,
        required=False,
        description='The version you saw, as the ETag gave it ("7"). Stale: merged under the '
        "model's policy, or 412 with the current state.",
    )
    idem = OpenApiParameter(
        "Idempotency-Key",
        str,
        OpenApiParameter.HEADER,
        required=False,
        description="A UUID; a retry with the same key applies nothing twice.",
    )
    errors = {
        400: ErrorSerializer,
        401: ErrorSerializer,
        403: ErrorSerializer,
        404: ErrorSerializer,
    }
    decorate = {
        "list": extend_schema(
            tags=tag,
            parameters=[
                OpenApiParameter(
                    "since",
                    str,
                    description="A cursor (empty for the start): what changed after it, tombstones "
                    "included, in change order, in the pull response's shape.",
                ),
                OpenApiParameter(
                    "limit", int, description="With since: 1..1000, default 500 (as a pull)."
                ),
            ],
            responses={200: _listing(stype, serializer), **errors},
            description=f"Live {stype.label} objects (cursor pagination), or with `since` the "
            "changes after a cursor (the same feed devices pull).",
        ),
        "retrieve": extend_schema(
            tags=tag,
            parameters=[
                OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER, required=False)
            ],
            responses={
                200: serializer,
                304: OpenApiResponse(description="Not modified."),
                **errors,
            },
        ),
        "create": extend_schema(
            tags=tag, parameters=[idem], request=serializer, responses={201: serializer, **errors}
        ),
        "update": extend_schema(
            tags=tag,
            parameters=[etag, idem],
            request=serializer,
            responses={200: serializer, 412: ErrorSerializer, **errors},
        ),
        "partial_update": extend_schema(
            tags=tag,
            parameters=[etag, idem],
            request=serializer,
            responses={200: serializer, 412: ErrorSerializer, **errors},
        ),
        "destroy": extend_schema(
            tags=tag,
            parameters=[etag, idem],
            # 409 `protected`: objects whose reference forbids the delete still point at it.
            responses={204: None, 409: ErrorSerializer, 412: ErrorSerializer, **errors},
        ),
        "bulk": extend_schema(
            tags=tag,
            request=BulkRequestSerializer,
            responses={200: BulkResponseSerializer, 413: ErrorSerializer, **errors},
            description="Up to 500 creates, updates and deletes in the push form; one result per "
            "item, in order. `model` may be left out; `mutation_id` and, for an update or delete, "
            "`base_version` too (then it applies at the current version).",
        ),
    }
    # extend_schema_view gives each generated class its own copy of the
    # inherited methods, so one model's schema does not leak into another's.
    return extend_schema_view(**decorate)(viewset)


class BulkItemSerializer(serializers.Serializer):
    mutation_id = serializers.UUIDField(required=False)
    model = serializers.CharField(required=False)
    op = serializers.ChoiceField(choices=Op.choices)
    id = serializers.UUIDField(required=False)
    base_version = serializers.IntegerField(required=False, allow_null=True)
    data = serializers.JSONField(required=False)  # type: ignore[assignment]


class BulkRequestSerializer(serializers.Serializer):
    mutations = BulkItemSerializer(many=True)


class BulkResponseSerializer(serializers.Serializer):
    results = MutationResultSerializer(many=True)


def viewset_for(stype: SyncedType) -> type[DataViewSet]:
    name = _component_name(stype)
    viewset = type(
        f"{name}DataViewSet",
        (DataViewSet,),
        {
            "stype": stype,
            "queryset": stype.model._default_manager.none(),  # for the model permissions
            "serializer_class": serializer_for(stype),
            "filterset_class": filterset_for(stype),
            "ordering_fields": ["updated_at", "created_at", *_orderable(stype)],
        },
    )
    return _schema(stype, viewset)


def _orderable(stype: SyncedType) -> Iterable[str]:
    return [
        n
        for n, c in stype.codecs.items()
        if c.type in ("string", "integer", "number", "date", "datetime")
    ]


def urls() -> list[Any]:
    router = SimpleRouter()
    for stype in registry.all_types():
        router.register(
            stype.label.replace(".", r"\."), viewset_for(stype), basename=f"data-{stype.label}"
        )
    return router.urls


__all__ = ["PullResponseSerializer", "urls"]


def _read_alias() -> str:
    return sync_settings.READ_DATABASE or DEFAULT_DB_ALIAS
