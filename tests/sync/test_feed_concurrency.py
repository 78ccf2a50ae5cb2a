"""Many writers committing out of order while readers pull: no reader misses a
change, with no lock serialising the writers (sync.engine.feed)."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
from django.db import connection, transaction

from fieldwork.models import Customer
from sync.engine.pull import pull_page
from sync.engine.write import mutations_apply
from tests.factories import customer, team_of, update
from tests.sync.test_concurrency import Worker

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CUSTOMER = "fieldwork.customer"
WRITERS, WRITES_EACH, READERS = 8, 12, 2


def test_readers_never_miss_a_change_from_writers_committing_out_of_order(make_actor):
    actors = [make_actor() for _ in range(WRITERS)]
    team = team_of(*[a.user for a in actors])
    team_id = str(team.pk)
    done = threading.Event()

    def writer(index: int):
        rng = random.Random(index)
        user = actors[index].user
        mine: list[tuple[str, int]] = []
        for _ in range(WRITES_EACH):
            with transaction.atomic():
                if mine and rng.random() < 0.5:
                    k = rng.randrange(len(mine))
                    object_id, version = mine[k]
                    m = update(CUSTOMER, object_id, version, name=f"w{index}-{rng.random():.5f}")
                    result = mutations_apply(user=user, mutations=[m]).results[0]
                    mine[k] = (object_id, result.version)
                else:
                    m = customer(f"w{index}", team=team_id)
                    result = mutations_apply(user=user, mutations=[m]).results[0]
                    mine.append((result.id, result.version))
                assert result.status == "applied", result
                # Hold the transaction open a moment after its feed rows are in:
                # commits land out of the order their rows were numbered.
                time.sleep(rng.random() * 0.01)
        return len(mine)

    def reader(index: int):
        user_id = actors[index].user.pk
        state: dict[str, dict] = {}
        cursor = None
        pages = 0

        def page() -> bool:
            nonlocal cursor, pages
            result = pull_page(user_id=user_id, cursor=cursor, limit=7, models=None)
            for change in result.decoded():
                if change["op"] == "upsert":
                    state[change["id"]] = {"version": change["version"], **change["data"]}
                else:
                    state.pop(change["id"], None)
            cursor = result.cursor
            pages += 1
            return result.has_more

        while not done.is_set():
            page()
            time.sleep(0.002)
        while page():
            pass
        return state, pages

    writers = [Worker(lambda i=i: writer(i)) for i in range(WRITERS)]
    readers = [Worker(lambda i=i: reader(i)) for i in range(READERS)]
    for w in readers + writers:
        w.start()
    created = sum(w.outcome(timeout=120) for w in writers)
    done.set()
    outcomes = [r.outcome(timeout=60) for r in readers]

    truth = {
        str(pk): version
        for pk, version in Customer.objects.filter(team=team).values_list("pk", "version")
    }
    assert len(truth) == created
    for state, pages in outcomes:
        assert pages > 3  # they really did read while the writers wrote
        assert {k: v["version"] for k, v in state.items()} == truth


@pytest.mark.parametrize("guessed", [False, True], ids=["first pull", "read ahead"])
def test_a_committed_row_waits_for_an_older_transaction_still_in_flight(alice, guessed):
    """The frontier: a newer transaction's change is not handed out while an
    older one is open, and comes once that one ends (never skipped). With a
    pull before, the pull knows the caller's channels and reads the page in
    the horizon's round trip, below the frontier that statement found."""
    from sync.engine import feed

    if guessed:
        pull_page(user_id=alice.user.pk, cursor=None, limit=100, models=None)
    older_open, release = threading.Event(), threading.Event()

    def older():
        with transaction.atomic():
            feed.current_tx()  # takes its transaction id first
            older_open.set()
            release.wait(10)
            mutations_apply(user=alice.user, mutations=[customer("older")])

    holder = Worker(older)
    holder.start()
    assert older_open.wait(10)
    newer = customer("newer")
    mutations_apply(user=alice.user, mutations=[newer])  # commits first
    first = pull_page(user_id=alice.user.pk, cursor=None, limit=100, models=None)
    assert first.decoded() == [] and first.has_more is False
    release.set()
    holder.outcome()
    later = pull_page(user_id=alice.user.pk, cursor=first.cursor, limit=100, models=None)
    assert sorted(c["data"]["name"] for c in later.decoded()) == ["newer", "older"]
    connection.close()
    assert uuid.UUID(newer["id"])
