"""Two deviations from the contract found by an independent client; each test
failed before its fix."""

from __future__ import annotations

import pytest

from tests.factories import customer, delete, update

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"


def test_a_push_cursor_before_any_pull_is_safe_to_adopt_with_a_models_filter(alice):
    """A device that has never pulled pushes first, adopts the push's cursor,
    then pulls with a models filter: that must be an initial sync, not 400."""
    c = customer("Mine")
    body = alice.push(c)  # no cursor sent, none stored for the device yet
    page = alice.pull(cursor=body["cursor"], models=CUSTOMER)
    assert [ch["id"] for ch in page["changes"]] == [c["id"]]
    # The cursor it now holds is bound to that filter, as any pull's is.
    again = alice.push(customer("Second"))
    assert alice.pull(cursor=again["cursor"], models=CUSTOMER)["changes"] == []


def test_an_initial_sync_skips_an_object_deleted_before_it_whatever_the_pages(alice):
    """Create, update and delete an object, then an initial sync one change a
    page: no delete at all (the client never had it)."""
    gone = customer("Gone")
    alice.push(gone)
    alice.push_one(update(CUSTOMER, gone["id"], 1, phone="1"))
    alice.push_one(delete(CUSTOMER, gone["id"], 2))
    kept = customer("Kept")
    alice.push(kept)
    changes, _ = alice.pull_all(limit=1)
    assert [(c["id"], c["op"]) for c in changes] == [(kept["id"], "upsert")]


def test_a_delete_during_an_initial_sync_still_reaches_the_client(alice, make_actor):
    """The other side of that rule: what the client was sent and is deleted
    after the sync started arrives as a delete."""
    first, second = customer("First"), customer("Second")
    alice.push(first, second)
    page = alice.pull(limit=1)
    assert [c["id"] for c in page["changes"]] == [first["id"]]
    alice.push_one(delete(CUSTOMER, first["id"], 1))
    rest, _ = alice.pull_all(cursor=page["cursor"], limit=1)
    assert (first["id"], "delete") in [(c["id"], c["op"]) for c in rest]
