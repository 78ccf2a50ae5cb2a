"""`manage.py serve_live`: the project under an ASGI server (uvicorn), for the
live pulls of `/api/v1/sync/live/` (sync.api.live).

Any URL of the project works here, but the proxy sends it only the live pulls:
everything else is faster on gunicorn's sync workers. Waiting costs this
process no thread: one process holds thousands of waiting devices.

On SIGTERM or SIGINT (a deploy, a scale-down), every waiting live pull is
answered at once with its page and cursor before the server stops, so apps
simply ask again, of another instance, instead of seeing a dropped
connection. uvicorn sends its shutdown event to the application only after
the requests in flight have finished, which a long poll would hold up for its
whole wait: hence a server of our own rather than `uvicorn config.asgi:...`.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import uvicorn
from django.core.handlers.asgi import ASGIHandler
from django.core.management.base import BaseCommand, CommandParser

from sync.notify.live import hub

logger = logging.getLogger(__name__)


class LiveHandler(ASGIHandler):
    """Django's ASGI handler, without a thread of its own for each request.

    Django runs each request in a ThreadSensitiveContext: the first
    thread-sensitive call of a request (its `request_started` signal's
    receivers) starts a thread that lives until the request ends, so a
    thousand waiting live pulls would hold a thousand idle threads. Without
    that context, those small calls (signal receivers, closing the response)
    share asgiref's one sync thread; everything that reads the database runs
    in the live pulls' own pool of threads (sync.api.live.in_thread)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)


class LiveServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        woken = hub.close()
        logger.info("Answered %d waiting live pull(s) before shutting down", woken)
        await super().shutdown(sockets)


class Command(BaseCommand):
    help = (
        "Serve live pulls (GET /api/v1/sync/live/) with an ASGI server; route that "
        "path here from the proxy (README, 'Production')."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument(
            "--graceful-seconds",
            type=float,
            default=10.0,
            help="How long requests in flight get to finish on shutdown.",
        )
        parser.add_argument(
            "--forwarded-allow-ips",
            default="127.0.0.1",
            help="Proxies whose X-Forwarded-For/-Proto are trusted (uvicorn's).",
        )
        parser.add_argument("--log-level", default="warning", help="uvicorn's own log level.")

    def handle(self, *args: Any, **options: Any) -> None:
        hub.reopen()
        hub.listen()  # hear commits before the first live pull comes
        config = uvicorn.Config(
            LiveHandler(),
            host=options["host"],
            port=options["port"],
            lifespan="off",  # Django has no lifespan handler
            timeout_graceful_shutdown=options["graceful_seconds"],
            forwarded_allow_ips=options["forwarded_allow_ips"],
            log_level=options["log_level"],
            access_log=False,  # one line per request comes from syncbase.request_log
        )
        self.stdout.write(f"Serving live pulls on http://{options['host']}:{options['port']}/")
        LiveServer(config).run()
