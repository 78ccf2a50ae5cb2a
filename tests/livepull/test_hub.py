"""The hub's decisions (sync.notify.live), without a server or a database:
who is woken by which notification, and what a waiter that registers late
learns of the notifications it missed."""

from __future__ import annotations

import asyncio
import threading

from asgiref.sync import async_to_sync

from sync.notify import live
from sync.notify.live import Hub, payload_channels


def run(coroutine_fn):
    return async_to_sync(coroutine_fn)()


def test_a_notification_wakes_the_waiters_of_its_channels_only():
    hub = Hub()

    async def scenario() -> tuple[bool, bool]:
        since = hub.mark()
        with hub.waiter(frozenset({"user:1", "team:a"}), since=since) as mine:
            with hub.waiter(frozenset({"user:2"}), since=since) as other:
                assert hub.publish(["team:a", "team:b"]) == 1
                return await mine.woken(1), await other.woken(0.05)

    assert run(scenario) == (True, False)


def test_a_notification_between_the_read_and_the_wait_is_not_lost():
    hub = Hub()

    async def scenario() -> tuple[bool, bool]:
        since = hub.mark()  # taken before the read
        hub.publish(["user:1"])  # a commit while the read ran
        with hub.waiter(frozenset({"user:1"}), since=since) as missed:
            first = await missed.woken(1)
        with hub.waiter(frozenset({"user:1"}), since=hub.mark()) as fresh:
            return first, await fresh.woken(0.05)

    assert run(scenario) == (True, False)


def test_everything_wakes_all_and_counts_as_missed_by_older_marks():
    hub = Hub()

    async def scenario() -> list[bool]:
        since = hub.mark()
        with hub.waiter(frozenset({"user:1"}), since=since) as a:
            hub.publish(None)
            woken = [await a.woken(1)]
        with hub.waiter(frozenset({"user:9"}), since=since) as late:
            woken.append(await late.woken(1))
        return woken

    assert run(scenario) == [True, True]


def test_forgetting_old_channels_makes_older_waiters_look(monkeypatch):
    monkeypatch.setattr(live, "REMEMBERED", 3)
    hub = Hub()

    async def scenario() -> bool:
        since = hub.mark()
        hub.publish([f"user:{i}" for i in range(10)])  # more than remembered
        with hub.waiter(frozenset({"user:42"}), since=since) as waiter:
            return await waiter.woken(1)

    assert run(scenario) is True


def test_a_waiter_is_woken_from_another_thread_and_leaves_no_trace():
    hub = Hub()

    async def scenario() -> bool:
        with hub.waiter(frozenset({"user:1"}), since=hub.mark()) as waiter:
            threading.Timer(0.05, lambda: hub.publish(["user:1"])).start()
            woken = await waiter.woken(5)
        return woken

    assert run(scenario) is True
    assert hub._by_channel == {}
    assert hub.publish(["user:1"]) == 0


def test_closing_wakes_everyone_and_new_waiters_at_once():
    hub = Hub()

    async def scenario() -> list[bool]:
        with hub.waiter(frozenset({"user:1"}), since=hub.mark()) as waiter:
            asyncio.get_running_loop().call_later(0.05, hub.close)
            woken = [await waiter.woken(5)]
        with hub.waiter(frozenset({"user:2"}), since=hub.mark()) as late:
            woken.append(await late.woken(1))
        return woken

    assert run(scenario) == [True, True]


def test_payloads():
    assert payload_channels("user:1,team:a") == ["user:1", "team:a"]
    assert payload_channels("*") is None
    assert payload_channels("") is None
