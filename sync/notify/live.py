"""Hearing commits, for live pulls (docs/protocol.md, "Live pulls").

A live pull that finds nothing new waits here, on its user's channels, until a
change in one of them commits; then it pulls again. Waiting costs no thread
and no database connection: a waiter is an `asyncio.Event` on its request's
event loop, set from whichever thread hears the commit.

Where commits are heard:

- PostgreSQL: every wake-up the outbox records (a push, a back-office or
  admin write, a captured `.save()`, `update()` or raw SQL in any process)
  NOTIFYs `sync_changes` with its channels, from a trigger on the outbox
  (devices migration 0005). PostgreSQL delivers a notification at commit and
  only then: a rolled-back write wakes nobody. One connection per process
  LISTENs, in a thread of its own (syncbase.listen). A lost connection wakes
  every waiter (something may have been missed while it was down) and is
  made again with backoff.
- Other databases (SQLite, the embedded default): the commits of this
  process, told by the write path after commit (`published`). Writes by other
  processes reach a live pull when its wait ends.

Rather than polling the feed, a woken pull reads it once. A change can be
committed yet still be held back by the feed's frontier (an older
transaction is still open, see sync.engine.feed): a woken pull that found
nothing looks again a few times shortly after (`RECHECKS`), then waits for
the next notification.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connections

from syncbase.conf import sync_settings
from syncbase.errors import SyncError
from syncbase.listen import Listener

NOTIFY_CHANNEL = "sync_changes"
# A payload naming every channel: too many to list (NOTIFY takes 8,000 bytes).
EVERYTHING = "*"
# After a wake-up that brought nothing, look again this long after it (seconds).
RECHECKS = (0.05, 0.25, 1.0)
# Channels whose last notification is remembered, for waiters that register
# after it: past this many, the oldest are forgotten together and a waiter
# older than that is woken to look for itself.
REMEMBERED = 100_000


class Waiter:
    """One live pull's wait: set from any thread, awaited on its loop."""

    __slots__ = ("channels", "event", "loop")

    def __init__(self, channels: frozenset[str]) -> None:
        self.channels = channels
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # its loop has closed: the request is over
            pass

    async def woken(self, timeout: float) -> bool:
        """Wait until woken or `timeout` seconds pass; True if woken (and
        ready to be woken again)."""
        try:
            await asyncio.wait_for(self.event.wait(), max(timeout, 0.0))
        except TimeoutError:
            return False
        self.event.clear()
        return True


class Hub:
    """The waiting live pulls of this process, by channel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_channel: dict[str, set[Waiter]] = {}
        self._users: Counter[int] = Counter()
        self._seq = 0  # notifications heard so far
        self._latest: dict[str, int] = {}  # channel -> the last one naming it
        self._floor = 0  # anything at or before this may have named any channel
        self._closing = False
        self._listener: Listener | None = None

    # --- the request's side ---

    def mark(self) -> int:
        """Where the notifications stand: taken before a pull reads, given to
        `waiting`, so that a commit between the read and the wait is not lost."""
        return self._seq

    @property
    def closing(self) -> bool:
        return self._closing

    @contextmanager
    def reserved(self, user_id: int) -> Iterator[Slot]:
        """One of the user's live pulls in this process, or 429 when they have
        LIVE_PULLS_PER_USER already. Released on leaving, unless kept."""
        limit = int(sync_settings.LIVE_PULLS_PER_USER)
        with self._lock:
            if self._users[user_id] >= limit:
                raise SyncError(
                    "too_many_live_pulls",
                    f"This account already has {limit} live pulls waiting; "
                    "close one, or pull without waiting.",
                    status_code=429,
                )
            self._users[user_id] += 1
        slot = Slot(self, user_id)
        self.listen()
        try:
            yield slot
        finally:
            if not slot.kept:
                slot.release()

    def _release(self, user_id: int) -> None:
        with self._lock:
            self._users[user_id] -= 1
            if self._users[user_id] <= 0:
                del self._users[user_id]

    def waiting(self, user_id: int) -> int:
        """The user's live pulls in this process (reading, or waiting)."""
        with self._lock:
            return self._users.get(user_id, 0)

    def waiters(self) -> int:
        """Live pulls waiting for a change now (past their read)."""
        with self._lock:
            return len({w for found in self._by_channel.values() for w in found})

    @contextmanager
    def waiter(self, channels: frozenset[str], *, since: int) -> Iterator[Waiter]:
        """Wait on `channels` (on the running event loop); the waiter is woken
        at once if a notification for them came after `since`, or if the hub
        is closing."""
        waiter = Waiter(channels)
        with self._lock:
            for channel in channels:
                self._by_channel.setdefault(channel, set()).add(waiter)
            missed = self._floor > since or any(
                self._latest.get(channel, 0) > since for channel in channels
            )
        if missed or self._closing:
            waiter.wake()
        try:
            yield waiter
        finally:
            with self._lock:
                for channel in channels:
                    found = self._by_channel.get(channel)
                    if found is not None:
                        found.discard(waiter)
                        if not found:
                            del self._by_channel[channel]

    # --- the commits' side ---

    def publish(self, channels: Iterable[str] | None) -> int:
        """Changes in `channels` (None: any) have committed: wake their
        waiters; returns how many."""
        with self._lock:
            self._seq += 1
            if channels is None:
                self._floor = self._seq
                woken = {w for found in self._by_channel.values() for w in found}
            else:
                woken = set()
                for channel in channels:
                    self._latest[channel] = self._seq
                    woken.update(self._by_channel.get(channel, ()))
                if len(self._latest) > REMEMBERED:
                    self._latest.clear()
                    self._floor = self._seq
        for waiter in woken:
            waiter.wake()
        return len(woken)

    def close(self, *, join: float = 0.0) -> int:
        """The server is going away: every waiter answers now, and new live
        pulls do not wait. The listener stops (its connection closed within
        a second; `join`: wait up to that long for it). Returns how many
        were waiting."""
        self._closing = True
        woken = self.publish(None)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
            if join:
                listener.join(join)
        return woken

    def reopen(self) -> None:
        """Tests, and a server started again in the same process."""
        self._closing = False

    # --- hearing commits ---

    def listen(self) -> None:
        """Start hearing other processes' commits, once (PostgreSQL only)."""
        if self._listener is not None or not _postgres():
            return
        with self._lock:
            if self._listener is None and not self._closing:
                # Anything committed before LISTEN took effect was not heard,
                # nor while the connection was down: every waiter looks.
                self._listener = Listener(
                    {NOTIFY_CHANNEL: lambda payload: self.publish(payload_channels(payload))},
                    on_connect=lambda: self.publish(None),
                    using=sync_settings.LISTEN_DATABASE,
                )
                self._listener.start()


class Slot:
    """A reserved live pull; `keep()` hands its release to the waiting part."""

    __slots__ = ("hub", "kept", "released", "user_id")

    def __init__(self, hub: Hub, user_id: int) -> None:
        self.hub, self.user_id = hub, user_id
        self.kept = self.released = False

    def keep(self) -> Slot:
        self.kept = True
        return self

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.hub._release(self.user_id)


def _postgres(alias: str = DEFAULT_DB_ALIAS) -> bool:
    return connections[alias].vendor == "postgresql"


def payload_channels(payload: str) -> list[str] | None:
    """The channels a notification names (None: every channel)."""
    if not payload or payload == EVERYTHING:
        return None
    return payload.split(",")


hub = Hub()


def published(channels: Iterable[str] | None) -> None:
    """The write path, after a commit of changes in `channels` (None: not
    known): wakes this process's waiters where the database does not (not
    PostgreSQL)."""
    if not _postgres():
        hub.publish(None if channels is None else list(channels))
