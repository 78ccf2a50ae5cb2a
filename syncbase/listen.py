"""Hearing PostgreSQL NOTIFY in a thread of the process's own.

psycopg's `notifies()` on a connection opened with Django's settings but
outside Django's per-thread connections: it lives as long as the process
and runs no query. A lost connection is made again with backoff, and
`on_connect` runs each time LISTEN takes effect (notifications sent while
there was none are lost: the caller catches up there).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

logger = logging.getLogger(__name__)


class Listener(threading.Thread):
    POLL_SECONDS = 1.0  # how often it looks whether it should stop
    BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)

    def __init__(
        self,
        handlers: Mapping[str, Callable[[str], Any]],
        *,
        on_connect: Callable[[], Any] = lambda: None,
        using: str = DEFAULT_DB_ALIAS,
    ) -> None:
        super().__init__(name=f"listen-{'-'.join(handlers)}", daemon=True)
        self.handlers = dict(handlers)
        self.on_connect = on_connect
        self.using = using
        self.ready = threading.Event()
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                self._listen()
                failures = 0
            except Exception:
                delay = self.BACKOFF_SECONDS[min(failures, len(self.BACKOFF_SECONDS) - 1)]
                failures += 1
                logger.warning(
                    "Listening for %s failed; again in %.1f s",
                    ", ".join(self.handlers),
                    delay,
                    exc_info=True,
                )
                self._stopping.wait(delay)

    def _listen(self) -> None:
        wrapper = connections[self.using]
        conn: Any = wrapper.get_new_connection(wrapper.get_connection_params())
        try:
            conn.autocommit = True
            for channel in self.handlers:
                conn.execute(f"LISTEN {channel}")
            self.ready.set()
            self.on_connect()
            while not self._stopping.is_set():
                for notification in conn.notifies(timeout=self.POLL_SECONDS):
                    try:
                        self.handlers[notification.channel](notification.payload)
                    except Exception:
                        logger.exception("Handling a %s notification failed", notification.channel)
        finally:
            self.ready.clear()
            conn.close()
