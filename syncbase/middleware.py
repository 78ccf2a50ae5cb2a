from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import is_valid_path
from whitenoise.middleware import WhiteNoiseMiddleware

logger = logging.getLogger(__name__)

# The rest of the chain: returns a response under WSGI, an awaitable of one under ASGI.
GetResponse = Callable[[HttpRequest], Any]


def _in_mode_of(middleware: Callable[..., Any], get_response: GetResponse) -> bool:
    """A middleware runs as the rest of the chain does: a coroutine (marked
    so, for Django) when that is one. Returns whether it is."""
    is_async = iscoroutinefunction(get_response)
    if is_async:
        markcoroutinefunction(middleware)
    return is_async


class SyncAndAsyncMiddleware:
    """A middleware that runs in the handler's own mode: synchronous under WSGI
    (gunicorn), a coroutine under ASGI (uvicorn, live pulls).

    Django runs a sync-only middleware under ASGI in a thread and calls the
    rest of the chain back through async_to_sync, so a live pull waiting up to
    a minute for a change would hold that thread all along. `before` and
    `after` are pure CPU (headers, bodies in memory, no database): in async
    mode they run inline on the event loop, where a thread hop would cost more
    than the work. Subclasses override either; a response from `before` is
    the answer, without the rest of the chain or `after`.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = _in_mode_of(self, get_response)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.__acall__(request)
        early = self.before(request)
        if early is not None:
            return early
        return self.after(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        early = self.before(request)
        if early is not None:
            return early
        return self.after(request, await self.get_response(request))

    def before(self, request: HttpRequest) -> HttpResponse | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        return response


_CODES = {
    400: ("bad_request", "The request could not be understood."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You may not do this."),
    404: ("not_found", "No such endpoint or object."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("payload_too_large", "The request body is too large."),
    429: ("throttled", "Too many requests; wait and try again."),
    500: ("server_error", "The server failed to handle this request."),
}


class APIErrorMiddleware(SyncAndAsyncMiddleware):
    """Under /api/, every error is a JSON `{"code", "detail"}` body, never an HTML page.

    DRF views already answer through `syncbase.errors.exception_handler`; this
    catches what happens outside them (unknown URLs, Django's own 400/404/500
    pages, DEBUG's technical pages) so clients can always parse the error.
    """

    def before(self, request: HttpRequest) -> HttpResponse | None:
        path = request.path_info
        if (
            path.startswith("/api/")
            and not path.endswith("/")
            and request.method not in ("GET", "HEAD")
            and is_valid_path(f"{path}/")
        ):
            # A redirect would drop the body of a POST/PATCH/DELETE; say what to fix.
            return _hardened(
                JsonResponse(
                    {"code": "not_found", "detail": f"No such endpoint; did you mean {path}/ ?"},
                    status=404,
                )
            )
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return _replacing(response, _error(response.status_code))
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api/"):
            return None
        logger.exception("Unhandled error under /api/", exc_info=exception)
        return _error(500)


# What the replaced response said about its body; every other header stays.
_BODY_HEADERS = {"content-type", "content-length", "content-encoding", "content-language"}


def _replacing(original: HttpResponse, replacement: HttpResponse) -> HttpResponse:
    """Keep the original's headers: this middleware runs outside
    SecurityMiddleware and XFrameOptionsMiddleware, so a fresh response would
    lose HSTS, nosniff and frame denial (and Allow, WWW-Authenticate...). An
    error raised before those middlewares ran has none to keep: nosniff and
    frame denial suit any JSON error, so `_hardened` sets them regardless."""
    for name, value in original.items():
        if name.lower() not in _BODY_HEADERS:
            replacement[name] = value
    return _hardened(replacement)


def _hardened(response: HttpResponse) -> HttpResponse:
    response.setdefault("X-Content-Type-Options", "nosniff")
    response.setdefault("X-Frame-Options", "DENY")
    return response


def _error(status: int) -> JsonResponse:
    code, detail = _CODES.get(status, ("error", "The request failed."))
    return JsonResponse({"code": code, "detail": detail}, status=status)


class ReleaseResponseMiddleware(SyncAndAsyncMiddleware):
    """Lets a DRF response, its data and the parsed request go as soon as the
    response is sent.

    DRF links them in cycles: the response to itself and its view through
    `renderer_context`, the view to the response (`view.response`), the
    request to itself and the view through `parser_context`. Objects in cycles
    are freed only by the cyclic garbage collector, and once a request has
    made them long-lived, only by a full collection, which may come hundreds
    of requests later: a worker serving pull pages of 1,000 changes held
    50-70 MB of old pages that way (docs/bench/history.md). Their contexts are used
    to render and to parse, both done when the response comes back here.
    """

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        context = getattr(response, "renderer_context", None)
        if isinstance(context, dict):
            view, drf_request = context.get("view"), context.get("request")
            context.clear()
            if view is not None:
                view.__dict__.pop("response", None)
            parsed = getattr(drf_request, "parser_context", None)
            if isinstance(parsed, dict):
                parsed.clear()
        return response


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, able to run as a coroutine under ASGI (WhiteNoise 6's own
    middleware is sync only, so every live pull would hold a thread in it).

    Under WSGI it is WhiteNoise's own `__call__`. Under ASGI, serving a static
    file (opening it) runs in a thread; any other request goes on to the rest
    of the chain on the event loop. Looking the URL up is a dict lookup, except
    in autorefresh mode (the default with DEBUG), where it stats the disk and
    so runs in a thread too: only the lookup, not the rest of the request."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        super().__init__(get_response)
        self.is_async = _in_mode_of(self, get_response)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        # No database, no thread-local state: any thread of the default pool will do.
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(
                request.path_info
            )
        else:
            static_file = self.files.get(request.path_info)  # built at startup: a dict
        if static_file is None:
            return await self.get_response(request)
        return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
