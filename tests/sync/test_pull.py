from __future__ import annotations

import time
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from fieldwork.services import team_member_add, team_member_remove
from sync.engine.compaction import feed_compact
from sync.models import Change
from tests.factories import TeamFactory, customer, delete, mutation, update, work_order
from tests.helpers import same_page

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"
ORDER = "fieldwork.workorder"


def team_with(*actors):
    team = TeamFactory()
    for actor in actors:
        team_member_add(team=team, user=actor.user)
    return team


def ids(changes, op=None):
    return [c["id"] for c in changes if op is None or c["op"] == op]


def test_initial_sync_pages_through_every_object_once(alice):
    created = [customer(f"c{i}") for i in range(7)]
    alice.push(*created)
    pages = []
    cursor = None
    while True:
        page = alice.pull(limit=3, **({"cursor": cursor} if cursor else {}))
        pages.append(page)
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    assert [len(p["changes"]) for p in pages] == [3, 3, 1]
    assert [p["remaining"] for p in pages] == [4, 1, 0]
    seen = [c["id"] for p in pages for c in p["changes"]]
    assert seen == [m["id"] for m in created]  # change order
    first = pages[0]["changes"][0]
    assert first["model"] == CUSTOMER and first["op"] == "upsert" and first["version"] == 1
    assert first["data"]["name"] == "c0"


def test_up_to_date_pull_is_empty_and_stable(alice):
    alice.push(customer())
    _, cursor = alice.pull_all()
    page = alice.pull(cursor=cursor)
    assert page == {"changes": [], "cursor": page["cursor"], "has_more": False, "remaining": 0}
    assert alice.pull(cursor=page["cursor"])["changes"] == []


def test_latest_state_once_per_page(alice):
    c = customer("v1")
    alice.push(c, update(CUSTOMER, c["id"], 1, name="v2"), update(CUSTOMER, c["id"], 2, name="v3"))
    other = customer("other")
    alice.push(other)
    changes, _ = alice.pull_all()
    assert ids(changes) == [c["id"], other["id"]]
    assert changes[0]["version"] == 3 and changes[0]["data"]["name"] == "v3"


def test_incremental_pull_brings_changes_after_cursor_in_change_order(alice):
    a, b = customer("a"), customer("b")
    alice.push(a, b)
    _, cursor = alice.pull_all()
    alice.push(update(CUSTOMER, b["id"], 1, name="b2"))
    alice.push(update(CUSTOMER, a["id"], 1, name="a2"))
    changes, _ = alice.pull_all(cursor)
    assert [(c["id"], c["data"]["name"]) for c in changes] == [(b["id"], "b2"), (a["id"], "a2")]


def test_delete_arrives_as_tombstone(alice):
    c = customer()
    alice.push(c)
    _, cursor = alice.pull_all()
    alice.push(delete(CUSTOMER, c["id"], 1))
    changes, _ = alice.pull_all(cursor)
    assert changes == [
        {"model": CUSTOMER, "id": c["id"], "op": "delete", "version": 2, "data": None}
    ]


def test_initial_sync_skips_objects_deleted_before_it_started(alice):
    gone, kept = customer("gone"), customer("kept")
    alice.push(gone, kept)
    alice.push(delete(CUSTOMER, gone["id"], 1))
    changes, _ = alice.pull_all()
    assert ids(changes) == [kept["id"]]


def test_delete_during_initial_sync_is_delivered(alice):
    created = [customer(f"c{i}") for i in range(4)]
    alice.push(*created)
    page = alice.pull(limit=2)
    alice.push(delete(CUSTOMER, created[0]["id"], 1))  # already delivered on page 1
    rest, _ = alice.pull_all(page["cursor"], limit=2)
    assert {"id": created[0]["id"], "op": "delete"} in [
        {"id": c["id"], "op": c["op"]} for c in rest
    ]


def test_same_cursor_again_returns_same_or_newer_states(alice, monkeypatch):
    c = customer("v1")
    alice.push(customer("before"))
    _, cursor = alice.pull_all()
    alice.push(c)
    first = alice.pull(cursor=cursor)
    # The retry falls in a later second, as it sometimes did in CI.
    later = time.time() + 1.5
    monkeypatch.setattr(time, "time", lambda: later)
    assert same_page(alice.pull(cursor=cursor), first)
    alice.push(update(CUSTOMER, c["id"], 1, name="v2"))
    retry = alice.pull(cursor=cursor)
    assert ids(retry["changes"]) == [c["id"]]
    assert retry["changes"][0]["version"] == 2 and retry["changes"][0]["data"]["name"] == "v2"


def test_interrupted_initial_sync_resumes_from_any_cursor(alice):
    created = [customer(f"c{i}") for i in range(6)]
    alice.push(*created)
    page1 = alice.pull(limit=2)
    page2 = alice.pull(limit=2, cursor=page1["cursor"])
    # The connection dropped after page 2 was sent; meanwhile things changed.
    late = customer("late")
    alice.push(late, update(CUSTOMER, created[0]["id"], 1, name="c0-new"))
    resumed, _ = alice.pull_all(page1["cursor"], limit=2)  # resume from the older cursor
    assert ids(resumed)[:2] == ids(page2["changes"])
    everything = ids(page1["changes"]) + ids(resumed)
    assert set(everything) == {m["id"] for m in created} | {late["id"]}
    latest = [c for c in resumed if c["id"] == created[0]["id"]][-1]
    assert latest["data"]["name"] == "c0-new"


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "abc", "2.5"])
def test_limit_out_of_bounds_is_400(alice, limit):
    body = alice.pull(expect=400, limit=limit)
    assert body["code"] == "bad_limit" and "limit" in body["errors"]


@pytest.mark.parametrize("limit", [1, 1000])
def test_limit_bounds_are_accepted(alice, limit):
    alice.push(customer(), customer())
    page = alice.pull(limit=limit)
    assert len(page["changes"]) == min(limit, 2)


def test_models_filter(alice):
    c = customer()
    o = work_order(c["id"])
    alice.push(c, o)
    changes, cursor = alice.pull_all(models=ORDER)
    assert ids(changes) == [o["id"]]
    both, _ = alice.pull_all(models=f"{CUSTOMER}, {ORDER}")
    assert set(ids(both)) == {c["id"], o["id"]}
    body = alice.pull(expect=400, cursor=cursor, models=CUSTOMER)
    assert body["code"] == "bad_cursor"


def test_unknown_model_filter_is_400(alice):
    body = alice.pull(expect=400, models="fieldwork.customer,nope.nope")
    assert body["code"] == "unknown_model"


@pytest.mark.parametrize("cursor", ["garbage", "eyJzIjo5OTl9:xyz:abc"])
def test_cursor_never_issued_is_400(alice, cursor):
    assert alice.pull(expect=400, cursor=cursor)["code"] == "bad_cursor"


def test_tampered_cursor_is_400(alice):
    alice.push(customer())
    cursor = alice.pull()["cursor"]
    tampered = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]
    assert alice.pull(expect=400, cursor=tampered)["code"] == "bad_cursor"


def test_cursor_older_than_retention_is_410(alice, settings):
    settings.SYNC_RETENTION = timedelta(days=30)
    alice.push(customer())
    with mock.patch("sync.engine.cursor.time.time", return_value=time.time() - 31 * 86400):
        old = alice.pull()["cursor"]
    body = alice.pull(expect=410, cursor=old)
    assert body["code"] == "resync_required"


def test_cursor_behind_compacted_tombstones_is_410(alice, settings):
    c = customer()
    alice.push(c, customer())
    _, cursor = alice.pull_all()
    alice.push(delete(CUSTOMER, c["id"], 1))
    _, fresh = alice.pull_all(cursor)
    stats = feed_compact(now=timezone.now() + settings.SYNC_RETENTION + timedelta(days=1))
    assert stats["tombstones"] == 1
    assert alice.pull(expect=410, cursor=cursor)["code"] == "resync_required"
    assert alice.pull(cursor=fresh)["changes"] == []  # a cursor past the tombstone is fine


def test_compaction_keeps_newest_change_per_object_and_pull_still_complete(alice):
    c, d = customer("c"), customer("d")
    alice.push(
        c, d, update(CUSTOMER, c["id"], 1, name="c2"), update(CUSTOMER, c["id"], 2, name="c3")
    )
    _, cursor = alice.pull_all()
    stats = feed_compact()
    assert stats["superseded"] == 2
    assert Change.objects.filter(object_id=c["id"]).count() == 1
    changes, _ = alice.pull_all()
    assert [(x["id"], x["version"]) for x in changes] == [(d["id"], 1), (c["id"], 3)]
    assert alice.pull(cursor=cursor)["changes"] == []


def test_users_never_see_each_others_objects(alice, bob):
    alice.push(customer("alice's"))
    bob_obj = customer("bob's")
    bob.push(bob_obj)
    bob_changes, _ = bob.pull_all()
    assert ids(bob_changes) == [bob_obj["id"]]
    alice_changes, _ = alice.pull_all()
    assert bob_obj["id"] not in ids(alice_changes)


def test_joining_a_team_backfills_its_existing_objects(alice, bob):
    team = team_with(bob)
    shared = customer("shared", team=str(team.pk))
    bob.push(shared, customer("bob private"))
    alice.push(customer("alice own"))
    _, cursor = alice.pull_all()
    assert shared["id"] not in ids(alice.pull_all()[0])
    team_member_add(team=team, user=alice.user)
    changes, cursor = alice.pull_all(cursor, limit=1)
    assert ids(changes) == [shared["id"]]
    assert changes[0]["op"] == "upsert" and changes[0]["data"]["name"] == "shared"
    # And from then on, the team's new changes arrive with the main feed.
    bob.push(update(CUSTOMER, shared["id"], 1, name="shared v2"))
    changes, _ = alice.pull_all(cursor)
    assert [(c["id"], c["data"]["name"]) for c in changes] == [(shared["id"], "shared v2")]


def test_leaving_a_team_turns_its_objects_into_deletes(alice, bob):
    team = team_with(alice, bob)
    shared = customer("shared", team=str(team.pk))
    mine = customer("mine", team=str(team.pk))
    bob.push(shared)
    alice.push(mine)
    changes, cursor = alice.pull_all()
    assert set(ids(changes)) == {shared["id"], mine["id"]}
    team_member_remove(team=team, user=alice.user)
    changes, cursor = alice.pull_all(cursor)
    # Bob's object is gone for Alice; hers stays visible through her own channel.
    assert [(c["id"], c["op"]) for c in changes if c["id"] == shared["id"]] == [
        (shared["id"], "delete")
    ]
    assert all(c["op"] == "upsert" for c in changes if c["id"] == mine["id"])
    bob.push(update(CUSTOMER, shared["id"], 1, name="after"))
    assert shared["id"] not in ids(alice.pull_all(cursor)[0])


def test_object_leaving_a_channel_is_a_delete_for_that_channel(alice, bob):
    team = team_with(alice, bob)
    c = customer("moving", team=str(team.pk))
    bob.push(c)
    changes, cursor = alice.pull_all()
    assert ids(changes, "upsert") == [c["id"]]
    bob.push(update(CUSTOMER, c["id"], 1, team=None))
    changes, _ = alice.pull_all(cursor)
    assert [(x["id"], x["op"], x["version"]) for x in changes] == [(c["id"], "delete", 2)]
    bob_changes, _ = bob.pull_all()
    assert [(x["id"], x["op"]) for x in bob_changes] == [(c["id"], "upsert")]


def test_new_user_syncs_own_objects_without_any_grant(make_actor):
    actor = make_actor()
    c = customer("first")
    assert actor.push_one(c)["status"] == "applied"
    changes, _ = actor.pull_all()
    assert ids(changes) == [c["id"]]


def test_push_cursor_skips_own_changes_only(alice, make_actor):
    phone = make_actor(user=alice.user)  # a second device of the same user
    alice.push(customer("seed"))
    _, cursor = alice.pull_all()
    body = alice.push(customer("mine"), cursor=cursor)
    assert alice.pull(cursor=body["cursor"])["changes"] == []
    # When someone else changed something in between, the cursor does not move.
    theirs = customer("from phone")
    phone.push(theirs)
    body = alice.push(customer("mine again"), cursor=body["cursor"])
    changes, _ = alice.pull_all(body["cursor"])
    assert theirs["id"] in ids(changes)


@pytest.mark.postgres
@pytest.mark.parametrize("n", [10, 500])
def test_pull_queries_do_not_grow_with_page_size(alice, django_assert_max_num_queries, n):
    c = customer()
    orders = [work_order(c["id"], f"o{i}") for i in range(n // 2)]
    notes = [
        mutation("fieldwork.note", data={"work_order": o["id"], "body": "x"})
        for o in orders[: n - len(orders) - 1]
    ]
    alice.push(c, *orders, *notes)
    with django_assert_max_num_queries(12):
        page = alice.pull(limit=1000)
    assert len(page["changes"]) == n
    assert {x["model"] for x in page["changes"]} == {CUSTOMER, ORDER, "fieldwork.note"}
    with django_assert_max_num_queries(12):
        page = alice.pull(limit=n // 2)
    assert page["has_more"] and len(page["changes"]) == n // 2


def test_pulled_data_is_exactly_what_push_returned(alice):
    c = customer("Acme", email="a@b.test")
    o = work_order(
        c["id"],
        due_at="2026-12-01T08:30:00.250000+02:00",
        scheduled_for="2026-12-01",
        estimated_hours=2.5,
    )
    pushed = {r["id"]: r["data"] for r in alice.push(c, o)["results"]}
    pulled = {x["id"]: x["data"] for x in alice.pull_all()[0]}
    assert pulled == pushed
    assert pulled[o["id"]]["due_at"] == "2026-12-01T06:30:00.250000Z"
    assert pulled[o["id"]]["created_at"].endswith("Z")


def test_initial_sync_resumes_after_compaction_purged_older_tombstones(alice, bob, settings):
    alice.push(*[customer(f"c{i}") for i in range(4)])
    gone = customer("bob's, deleted")
    bob.push(gone)
    bob.push(delete(CUSTOMER, gone["id"], 1))  # a tombstone after Alice's rows
    page = alice.pull(limit=2)
    feed_compact(now=timezone.now() + settings.SYNC_RETENTION + timedelta(days=1))
    rest, _ = alice.pull_all(page["cursor"], limit=2)
    assert len(page["changes"]) + len(rest) == 4


def test_an_initial_sync_after_the_newest_row_was_compacted_is_not_sent_back(alice, bob, settings):
    # Found by the client's end-to-end property test: purging the feed's newest
    # row (a tombstone) moved the head back below the purge, so every initial
    # sync started behind it and was answered 410 on its next page, forever.
    alice.push(*[customer(f"c{i}") for i in range(3)])
    gone = customer("bob's")
    bob.push(gone)
    bob.push(delete(CUSTOMER, gone["id"], 1))  # the newest row of the feed is a tombstone
    feed_compact(now=timezone.now() + settings.SYNC_RETENTION + timedelta(days=1))
    page = alice.pull(limit=2)
    assert page["has_more"]
    rest, cursor = alice.pull_all(page["cursor"], limit=2)
    assert len(page["changes"]) + len(rest) == 3
    assert alice.pull(cursor=cursor)["changes"] == []


def test_idle_cursor_moves_with_the_feed_so_compaction_does_not_force_a_resync(
    alice, bob, settings
):
    alice.push(customer("alice's"))
    _, cursor = alice.pull_all()
    gone = customer("bob's")
    bob.push(gone)
    bob.push(delete(CUSTOMER, gone["id"], 1))
    _, cursor = alice.pull_all(cursor)  # nothing for Alice, but she is up to date
    feed_compact(now=timezone.now() + settings.SYNC_RETENTION + timedelta(days=1))
    assert alice.pull(cursor=cursor)["changes"] == []


def test_cursor_of_another_account_is_400(alice, bob):
    alice.push(customer())
    _, cursor = alice.pull_all()
    assert bob.pull(expect=400, cursor=cursor)["code"] == "bad_cursor"


@pytest.mark.parametrize("limit", ["\u00b2", "", " 5"])
def test_limit_that_is_not_plain_digits_is_400(alice, limit):
    assert alice.pull(expect=400, limit=limit)["code"] == "bad_limit"


def test_teammate_can_edit_a_shared_object_but_not_move_own_objects_to_foreign_teams(alice, bob):
    shared_team, foreign_team = team_with(alice, bob), TeamFactory()
    shared = customer("bob's shared", team=str(shared_team.pk))
    bob.push(shared)
    edited = alice.push_one(update(CUSTOMER, shared["id"], 1, phone="555"))
    assert edited["status"] == "applied"
    mine = customer("alice's")
    alice.push(mine)
    moved = alice.push_one(update(CUSTOMER, mine["id"], 1, team=str(foreign_team.pk)))
    assert moved["status"] == "rejected" and "team" in moved["errors"]


def _final_state(changes):
    """What a client holds after applying `changes` in order."""
    state = {}
    for change in changes:
        if change["op"] == "upsert":
            state[change["id"]] = change["data"]
        else:
            state.pop(change["id"], None)
    return state


def test_grant_during_an_initial_sync_brings_the_team_too(alice, bob):
    team = team_with(bob)
    shared = [customer(f"team {i}", team=str(team.pk)) for i in range(3)]
    bob.push(*shared)
    alice.push(*[customer(f"own {i}") for i in range(4)])
    page = alice.pull(limit=2)
    team_member_add(team=team, user=alice.user)
    rest, _ = alice.pull_all(page["cursor"], limit=2)
    held = _final_state(page["changes"] + rest)
    assert {m["id"] for m in shared} <= set(held)
    assert len(held) == 7


def test_revoke_then_regrant_before_the_next_pull_keeps_the_objects(alice, bob):
    team = team_with(alice, bob)
    shared = customer("shared", team=str(team.pk))
    bob.push(shared)
    changes, cursor = alice.pull_all()
    team_member_remove(team=team, user=alice.user)
    team_member_add(team=team, user=alice.user)
    later, _ = alice.pull_all(cursor)
    assert shared["id"] in _final_state(changes + later)


def test_grant_then_revoke_before_the_next_pull_leaves_nothing(alice, bob):
    team = team_with(bob)
    shared = customer("shared", team=str(team.pk))
    bob.push(shared)
    changes, cursor = alice.pull_all()
    team_member_add(team=team, user=alice.user)
    team_member_remove(team=team, user=alice.user)
    later, _ = alice.pull_all(cursor)
    assert shared["id"] not in _final_state(changes + later)


def test_regrant_while_a_revocation_is_still_being_sent_brings_everything_back(alice, bob):
    team = team_with(alice, bob)
    shared = [customer(f"shared {i}", team=str(team.pk)) for i in range(3)]
    bob.push(*shared)
    changes, cursor = alice.pull_all()
    team_member_remove(team=team, user=alice.user)
    page = alice.pull(cursor=cursor, limit=1)  # the revocation's deletes, one page of them
    assert page["has_more"] and page["changes"][0]["op"] == "delete"
    team_member_add(team=team, user=alice.user)
    rest, _ = alice.pull_all(page["cursor"])
    held = _final_state(changes + page["changes"] + rest)
    assert {m["id"] for m in shared} <= set(held)


def test_push_cursor_never_jumps_over_compacted_tombstones(alice, make_actor, settings):
    phone = make_actor(user=alice.user)
    c = customer("soon gone")
    alice.push(c)
    _, cursor = alice.pull_all()
    phone.push(delete(CUSTOMER, c["id"], 1))  # a tombstone Alice's device has not seen
    feed_compact(now=timezone.now() + settings.SYNC_RETENTION + timedelta(days=1))
    body = alice.push(customer("new"), cursor=cursor)
    # Adopting the push cursor must not hide the purge: the next pull says resync.
    assert alice.pull(expect=410, cursor=body["cursor"])["code"] == "resync_required"


@pytest.mark.postgres
def test_remaining_past_the_exact_count_is_the_planners_estimate(alice, monkeypatch):
    from django.db import connection

    from sync.engine import pull as selectors

    alice.push(*[customer(f"c{i}") for i in range(12)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE sync_change")
    monkeypatch.setattr(selectors, "REMAINING_EXACT", 4)
    first = alice.pull(limit=2)
    # Estimated (not counted) past 4 rows, never below what was counted.
    assert 4 < first["remaining"] <= 40, first["remaining"]
    monkeypatch.setattr(selectors, "REMAINING_COUNT_CAP", 5)
    assert alice.pull(limit=2)["remaining"] == 5  # capped
    changes, _ = alice.pull_all(limit=5)  # ends with remaining 0 (asserted there)
    assert len(changes) == 12


def _push_in_batches(actor, mutations, size=400):
    for start in range(0, len(mutations), size):
        actor.push(*mutations[start : start + size])


@pytest.mark.postgres
def test_an_initial_syncs_first_estimate_is_of_everything_it_will_send(alice, bob, monkeypatch):
    """The planner multiplies a channel's share of the feed by the share of
    a position's range as if the two were unrelated; when the caller's rows
    all come after everyone else's, that was a third of the true number."""
    from django.db import connection

    from sync.engine import pull as selectors

    _push_in_batches(bob, [customer(f"b{i}") for i in range(600)])
    _push_in_batches(alice, [customer(f"a{i}") for i in range(300)], size=100)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE sync_change")
    monkeypatch.setattr(selectors, "REMAINING_EXACT", 50)
    first = alice.pull(limit=2)
    assert 0.8 * 298 <= first["remaining"] <= 1.2 * 298, first["remaining"]
