"""One structured log line per request, and the request id on every line.

`RequestLogMiddleware` (outermost) writes, after the response, one record on
the `sync.request` logger: request id, method, path, status, duration, user
id, device id, and what the view added with `annotate` (a push's mutation
counts by status). The request id is the client's `X-Request-Id` when it is a
sane value (a load balancer's or an app's own), else a new one; it is echoed
in the response header and stamped on every record logged while the request
runs (`install_record_factory`), so a warning deep in a service can be tied to
its request.

Formatting: python-json-logger for `LOG_FORMAT=json`. It is a formatter only:
the fields come from this middleware, which knows what a sync request is
(device, push outcome); django-structlog was the alternative, but it logs two
events per request (started, finished) and brings structlog's own processor
chain and configuration next to the standard logging Django, Celery and
django-axes already use.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Awaitable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.functional import empty
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from syncbase.middleware import SyncAndAsyncMiddleware

logger = logging.getLogger("sync.request")

REQUEST_ID_HEADER = "X-Request-Id"
# Up to 128 characters a proxy or an app would use for an id (UUIDs, hex,
# base64, AWS/GCP trace ids); anything else (spaces, quotes, line breaks, huge
# values) could forge or break log lines and is replaced.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:=+/-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Probes and scrapes come every few seconds: logged only at DEBUG while they succeed.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_ANNOTATIONS = "_request_log_fields"


def current_request_id() -> str | None:
    return _request_id.get()


def install_record_factory() -> None:
    """Give every log record the current request id (`-` outside a request).

    At record creation rather than in a handler's filter, so that every
    handler sees it (the console, pytest's capture, an error tracker)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "stamps_request_id", False):
        return  # installed already (ready() may run more than once in tests)

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = _request_id.get() or "-"
        return record

    factory.stamps_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def annotate(request: Any, **fields: Any) -> None:
    """Add fields to this request's log line (a DRF Request or a Django HttpRequest)."""
    raw = getattr(request, "_request", request)
    found = getattr(raw, _ANNOTATIONS, None)
    if found is None:
        found = {}
        setattr(raw, _ANNOTATIONS, found)
    found.update(fields)


def _request_id_of(request: HttpRequest) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    if _SANE_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def _device_id_of(request: HttpRequest) -> str | None:
    """The device the client names, when it is a UUID (what the sync views accept)."""
    raw = request.headers.get("X-Device-Id")
    if not raw:
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


def _user_id_of(request: HttpRequest) -> int | None:
    """The authenticated user, without loading one just for the log: a session
    user nobody asked for stays a lazy object (no query); DRF sets the token's
    user on the request when it authenticates."""
    user = request.__dict__.get("user")
    if user is None:
        return None
    if getattr(user, "_wrapped", None) is empty:
        return None
    pk = getattr(user, "pk", None)
    return int(pk) if pk is not None else None


class RequestLogMiddleware(SyncAndAsyncMiddleware):
    """Outermost, so its duration is the whole request's. Not `before`/`after`:
    the request id must be unset even when the rest of the chain raises (a
    live pull cancelled because its client went away, under ASGI)."""

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.__acall__(request)
        request_id, token, started = self._start(request)
        try:
            return self._finish(request, self.get_response(request), request_id, started)
        finally:
            _request_id.reset(token)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        request_id, token, started = self._start(request)
        try:
            return self._finish(request, await self.get_response(request), request_id, started)
        finally:
            _request_id.reset(token)

    def _start(self, request: HttpRequest) -> tuple[str, contextvars.Token[str | None], float]:
        request_id = _request_id_of(request)
        return request_id, _request_id.set(request_id), time.perf_counter()

    def _finish(
        self, request: HttpRequest, response: HttpResponse, request_id: str, started: float
    ) -> HttpResponse:
        response[REQUEST_ID_HEADER] = request_id
        self._log(request, response, time.perf_counter() - started)
        # Django's handler logs every 4xx/5xx response once more on
        # `django.request` unless it has been logged; ours is that line. An
        # unhandled exception is still logged there, with its traceback, by
        # the handler's exception conversion before it gets here.
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response

    def _log(self, request: HttpRequest, response: HttpResponse, seconds: float) -> None:
        status = response.status_code
        if status >= 500:
            level = logging.ERROR
        elif request.path in QUIET_PATHS and status < 400:
            level = logging.DEBUG
        else:
            level = logging.INFO
        if not logger.isEnabledFor(level):
            return
        # The request id comes with every record (install_record_factory).
        fields: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "user_id": _user_id_of(request),
            "device_id": _device_id_of(request),
            **getattr(request, _ANNOTATIONS, {}),
        }
        extra = " ".join(
            f"{k}={v}"
            for k, v in fields.items()
            if k not in ("method", "path", "status", "duration_ms") and v is not None
        )
        logger.log(
            level,
            "%s %s %s %.0fms%s",
            request.method,
            # A path may hold any character (%0A decodes to a line break): in
            # the readable message, control characters are escaped.
            _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", request.path),
            status,
            seconds * 1000,
            f" {extra}" if extra else "",
            extra=fields,
        )


class ContextFilter(logging.Filter):
    """Keeps tracebacks out of Django's security log: a suspicious request (bad
    Host header, too many fields) is an expected 400, not a bug. Also stamps
    a request id on records made before the record factory was installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        if record.name.startswith("django.security."):
            record.exc_info = None
            record.exc_text = None
        return True


class JsonFormatter(OrjsonFormatter):
    """One JSON object per line: time, level, logger, message, request id, and
    the record's extra fields (the request line's method, path, status, ...)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", ["levelname", "name", "message"])
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")  # ISO 8601, UTC
        # Django attaches the request object to its records: not for a log line.
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request", "taskName"])
        super().__init__(*args, **kwargs)
