"""Live pulls: `GET /api/v1/sync/live/?cursor=…&wait=30` (docs/protocol.md,
"Live pulls").

A pull page, as `sync/pull/` answers it, except that when there is nothing new
the request waits up to `wait` seconds for a change in the caller's scope to
commit, then answers with it (or, when the wait ends, with the empty page
and its cursor).

Two halves. The DRF view (`LivePullView`) does what every pull does,
authentication, throttles, the device, the first read, in a thread; the
waiting is done by `live_pull`, an async view, on the event loop (the hub of
sync.notify.live wakes it). Served by an ASGI server (`manage.py
serve_live`), a waiting request holds neither a thread nor a database
connection; under a WSGI server (`runserver`, gunicorn) it holds its thread
for the wait, which suits development only.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from devices.models import Device
from devices.selectors import user_id_of
from sync.api.serializers import ErrorSerializer, PullResponseSerializer
from sync.api.views import ERRORS, PULL_PARAMETERS, PullView
from sync.engine import metrics
from sync.engine.pull import PullPage
from sync.notify.live import RECHECKS, Slot, hub
from syncbase import request_log
from syncbase.conf import sync_settings
from syncbase.errors import SyncError

T = TypeVar("T")


def wait_seconds(raw: str | None) -> int:
    """`?wait=`: whole seconds, 0 (answer at once) up to LIVE_PULL_MAX_WAIT;
    a longer wait is shortened to it."""
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6):
        top = sync_settings.LIVE_PULL_MAX_WAIT
        raise SyncError(
            "bad_wait",
            f"wait must be a whole number of seconds (at most {top} are waited).",
            errors={"wait": ["Must be a whole number of seconds."]},
        )
    return min(int(raw), int(sync_settings.LIVE_PULL_MAX_WAIT))


class LivePullView(PullView):
    @extend_schema(
        parameters=[
            *PULL_PARAMETERS,
            OpenApiParameter(
                "wait",
                int,
                description="Seconds to wait for a change when there is nothing new "
                "(default 0; longer than the server's maximum, 50 by default, is "
                "shortened to it).",
            ),
        ],
        responses={
            200: PullResponseSerializer,
            410: ErrorSerializer,
            426: ErrorSerializer,
            429: ErrorSerializer,
            **ERRORS,
        },
        description="A pull that waits for a change when there is nothing new (a long poll).",
    )
    def get(self, request: Request) -> Response:
        wait = wait_seconds(request.query_params.get("wait"))
        device = self.admitted(request)
        if not wait or hub.closing:
            return super().get(request)
        with hub.reserved(user_id_of(request)) as slot:
            # Before the read: a commit between the read and the wait still wakes it.
            since = hub.mark()
            page = self.read(request, device)
            if page.changes or page.has_more or page.channels is None:
                return self.answer(request, device, page)
            response = Response(page.body())
            response.live = Waiting(  # type: ignore[attr-defined]
                self, request, device, page, since=since, wait=wait, slot=slot.keep()
            )
            return response


@dataclass
class Waiting:
    """A live pull that found nothing new, handed from the view to the waiting,
    with the response the view began (its renderer chosen)."""

    view: LivePullView
    request: Request
    device: Device
    page: PullPage
    since: int
    wait: int
    slot: Slot
    response: Response | None = None

    async def answer(self, raw: HttpRequest) -> Response:
        """Wait for a change, then answer with it (rendered); when the wait
        ends or the server is closing, answer with the last page read."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        page, woken_at, rechecks = self.page, None, list[float]()
        with hub.waiter(page.channels or frozenset(), since=self.since) as waiter:
            while not hub.closing:
                left = deadline - loop.time()
                if left <= 0:
                    break
                if await waiter.woken(min(left, rechecks[0]) if rechecks else left):
                    woken_at = woken_at or loop.time()
                    rechecks = list(RECHECKS)
                elif rechecks:
                    rechecks.pop(0)  # held back by the frontier? look again
                else:
                    break  # the wait is over
                if hub.closing:
                    break
                self._annotate(raw, deadline - loop.time(), woken_at)
                found = await in_thread(raw, self.look, page.cursor)
                if isinstance(found, Response):
                    return found
                page = found
        self._annotate(raw, deadline - loop.time(), woken_at)
        return await in_thread(raw, self.finish, page)

    def look(self, cursor: str) -> PullPage | Response:
        """Read from `cursor`: a page with changes is answered at once, in
        this same thread job (a thousand woken together then answer as each
        is read, not after all of them); an empty one is returned."""
        try:
            page = self.view.read(self.request, self.device, cursor=cursor)
        except Exception as exc:  # as the view answers it: {"code", "detail"}
            return self.view.finalize_response(
                self.request, self.view.handle_exception(exc)
            ).render()
        if page.changes or page.has_more:
            return self.finish(page)
        return page

    def finish(self, page: PullPage) -> Response:
        assert self.response is not None  # noqa: S101 - set by the view
        answered = self.view.answer(self.request, self.device, page)
        self.response.data = answered.data
        for name, value in answered.items():
            if name.lower() != "content-type":
                self.response[name] = value
        return self.response.render()

    def _annotate(self, raw: HttpRequest, left: float, woken_at: float | None) -> None:
        request_log.annotate(
            raw, waited=f"{self.wait - max(left, 0):.3f}", woken=woken_at is not None
        )


_view = LivePullView.as_view()


@csrf_exempt
async def live_pull(request: HttpRequest) -> HttpResponse:
    response = await in_thread(request, _view, request)
    waiting: Waiting | None = getattr(response, "live", None)
    if waiting is None:
        return response
    del response.live  # type: ignore[attr-defined]
    waiting.response = response
    metrics.LIVE_WAITING.inc()
    try:
        return await waiting.answer(request)
    finally:
        metrics.LIVE_WAITING.dec()
        waiting.slot.release()


# The view behind it, as `as_view()` would name it: drf-spectacular documents
# it, and its methods are the only ones answered (others: 405).
live_pull.cls = live_pull.view_class = LivePullView  # type: ignore[attr-defined]
live_pull.initkwargs = {}  # type: ignore[attr-defined]


_executor: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=int(sync_settings.LIVE_PULL_THREADS), thread_name_prefix="sync-live"
        )
    return _executor


def _job(fn: Callable[..., T], *args: Any) -> T:
    # These threads outlive requests: their connections are checked (and
    # closed once CONN_MAX_AGE is up) here, as Django does at each request.
    close_old_connections()
    return fn(*args)


async def in_thread(request: HttpRequest, fn: Callable[..., T], *args: Any) -> T:
    """Run the synchronous `fn` (the ORM, DRF) for this request.

    Under ASGI, in a small pool of long-lived threads whose database
    connections persist (Django's own thread per request would open one for
    every live pull); under WSGI, in the request's own thread."""
    if isinstance(request, ASGIRequest):
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        job = functools.partial(context.run, _job, fn, *args)
        return await loop.run_in_executor(_threads(), job)
    return await sync_to_async(fn, thread_sensitive=True)(*args)
