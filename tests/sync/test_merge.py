"""The merge module as a table: what a stale write does, per policy and situation.

Pure functions, no database: each row gives base / server / client in wire form
and the decision written out by hand.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from sync import merge
from sync.choices import ConflictKind, Policy
from sync.merge import Action, Decision, Resolution

BASE = {"name": "Acme", "phone": "1", "email": "a@x.test"}


def updates(server: dict, client: dict, base: dict | None = BASE) -> merge.Clash:
    return merge.clash_of_updates(base, {**BASE, **server}, client)


# --- the field-level diff -------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "client", "disjoint", "overlap", "changed"),
    [
        # only the client changed phone
        ({}, {"phone": "2"}, {"phone": "2"}, (), ("phone",)),
        # both changed phone, to different values
        ({"phone": "9"}, {"phone": "2"}, {}, ("phone",), ("phone",)),
        # both changed phone to the same value: nothing to decide, nothing to write
        ({"phone": "2"}, {"phone": "2"}, {}, (), ("phone",)),
        # the client sent phone unchanged from base: not a change at all
        ({"phone": "9"}, {"phone": "1"}, {}, (), ()),
        # disjoint fields on each side
        ({"phone": "9"}, {"email": "b@x.test"}, {"email": "b@x.test"}, (), ("email",)),
        # one field each way plus an overlap
        (
            {"phone": "9", "name": "Server"},
            {"phone": "2", "email": "b@x.test"},
            {"email": "b@x.test"},
            ("phone",),
            ("phone", "email"),
        ),
    ],
)
def test_clash_of_updates(server, client, disjoint, overlap, changed):
    clash = updates(server, client)
    assert clash.kind == ConflictKind.UPDATE_UPDATE
    assert clash.disjoint == disjoint
    assert clash.overlap == overlap
    assert clash.changed == changed


def test_without_a_base_every_sent_field_counts_as_changed_on_both_sides():
    clash = updates({"phone": "9"}, {"phone": "2", "email": "a@x.test"}, base=None)
    assert clash.overlap == ("phone",)  # email equals the server's: merges silently
    assert clash.disjoint == {}
    assert clash.changed == ("phone", "email")


def test_clash_of_update_with_delete_keeps_the_client_fields():
    clash = merge.clash_of_update_with_delete(BASE, {"phone": "2", "email": "b@x.test"})
    assert clash.kind == ConflictKind.UPDATE_DELETE
    assert clash.server is None and clash.changed == ("phone", "email")


def test_clash_of_delete_with_update():
    clash = merge.clash_of_delete_with_update(BASE, {**BASE, "phone": "9"})
    assert clash.kind == ConflictKind.DELETE_UPDATE
    assert clash.client is None and clash.changed == () and clash.overlap == ()
    assert clash.disjoint == {}


# --- the policies ---------------------------------------------------------------------

DISJOINT = updates({"phone": "9"}, {"email": "b@x.test"})
OVERLAP = updates({"phone": "9"}, {"phone": "2", "email": "b@x.test"})
UNCHANGED = updates({"phone": "9"}, {"phone": "1"})
UPDATE_DELETE = merge.clash_of_update_with_delete(BASE, {"phone": "2", "email": "b@x.test"})
DELETE_UPDATE = merge.clash_of_delete_with_update(BASE, {**BASE, "phone": "9"})


# Expected decisions spell out every field, rather than borrow the defaults of
# the module under test.
def write(values: dict) -> Decision:
    return Decision(Action.WRITE, values, (), frozenset())


def person(*fields: str, writing: dict | None = None) -> Decision:
    """A conflict on `fields`; `writing`: the client's changes written at once."""
    return Decision(Action.PERSON, writing or {}, fields, frozenset())


KEEP = Decision(Action.KEEP, {}, (), frozenset())
DELETE = Decision(Action.DELETE, {}, (), frozenset())

TABLE = [
    # merge: disjoint fields merge, overlaps and deletes go to a person (the
    # disjoint fields of an overlapping update are written all the same)
    (Policy.MERGE, DISJOINT, write({"email": "b@x.test"})),
    (Policy.MERGE, OVERLAP, person("phone", writing={"email": "b@x.test"})),
    (Policy.MERGE, UNCHANGED, write({})),
    (Policy.MERGE, UPDATE_DELETE, person("email", "phone")),
    (Policy.MERGE, DELETE_UPDATE, person()),
    # manual: every concurrent change goes to a person, on every field it changed
    (Policy.MANUAL, DISJOINT, person("email")),
    (Policy.MANUAL, OVERLAP, person("email", "phone")),
    (Policy.MANUAL, UNCHANGED, write({})),
    (Policy.MANUAL, UPDATE_DELETE, person("email", "phone")),
    (Policy.MANUAL, DELETE_UPDATE, person()),
    # server_wins: the client's disjoint fields only; deletes on either side stand
    (Policy.SERVER_WINS, DISJOINT, write({"email": "b@x.test"})),
    (Policy.SERVER_WINS, OVERLAP, write({"email": "b@x.test"})),
    (Policy.SERVER_WINS, UNCHANGED, write({})),
    (Policy.SERVER_WINS, UPDATE_DELETE, KEEP),
    (Policy.SERVER_WINS, DELETE_UPDATE, KEEP),
    # client_wins: the client's fields over the server's; a client delete deletes
    (Policy.CLIENT_WINS, DISJOINT, write({"email": "b@x.test"})),
    (Policy.CLIENT_WINS, OVERLAP, write({"email": "b@x.test", "phone": "2"})),
    (Policy.CLIENT_WINS, UNCHANGED, write({})),
    (Policy.CLIENT_WINS, UPDATE_DELETE, write({"phone": "2", "email": "b@x.test"})),
    (Policy.CLIENT_WINS, DELETE_UPDATE, DELETE),
]


@pytest.mark.parametrize(("policy", "clash", "expected"), TABLE)
def test_policy_table(policy, clash, expected):
    assert merge.decide(policy, clash) == expected


def test_every_policy_but_custom_is_in_the_table():
    assert {row[0] for row in TABLE} == set(Policy) - {Policy.CUSTOM}


# --- custom resolvers -----------------------------------------------------------------


def test_custom_writes_disjoint_fields_without_asking_the_resolver():
    def never(*args):
        raise AssertionError("not called for disjoint changes")

    assert merge.decide(Policy.CUSTOM, DISJOINT, never) == write({"email": "b@x.test"})


def test_custom_resolver_sees_base_server_client_and_the_overlap():
    seen = []

    def resolver(base, server, client, fields):
        seen.append((base, server, client, fields))
        return Resolution(values={"phone": "resolved"})

    decision = merge.decide(Policy.CUSTOM, OVERLAP, resolver)
    assert seen == [
        (
            BASE,
            {**BASE, "phone": "9"},
            {"phone": "2", "email": "b@x.test"},
            ["phone"],
        )
    ]
    assert decision == Decision(
        Action.WRITE,
        {"email": "b@x.test", "phone": "resolved"},
        (),
        frozenset({"phone"}),
    )


def test_custom_resolver_answering_no_values_keeps_the_servers_overlap():
    decision = merge.decide(Policy.CUSTOM, OVERLAP, lambda *a: Resolution())
    assert decision == Decision(Action.WRITE, {"email": "b@x.test"}, (), frozenset())


@pytest.mark.parametrize(
    "answer",
    [
        Resolution(needs_person=True),
        Resolution(values={"phone": "x"}, needs_person=True),
        {"phone": "x"},  # not a Resolution
        None,
    ],
)
def test_custom_resolver_that_declines_or_answers_nonsense_leaves_it_to_a_person(answer):
    expected = person("phone", writing={"email": "b@x.test"})
    assert merge.decide(Policy.CUSTOM, OVERLAP, lambda *a: answer) == expected


def test_custom_resolver_that_raises_leaves_it_to_a_person_and_is_logged(caplog):
    def broken(*args):
        raise RuntimeError("bug")

    with caplog.at_level(logging.ERROR, logger="sync.merge"):
        expected = person("phone", writing={"email": "b@x.test"})
        assert merge.decide(Policy.CUSTOM, OVERLAP, broken) == expected
    [record] = caplog.records
    assert record.getMessage() == "Custom resolver failed; queueing a conflict"
    assert record.exc_info[0] is RuntimeError


@pytest.mark.parametrize("clash", [UPDATE_DELETE, DELETE_UPDATE])
def test_custom_sends_deletes_to_a_person_without_the_resolver(clash):
    def never(*args):
        raise AssertionError("not called for deletes")

    assert merge.decide(Policy.CUSTOM, clash, never) == person(*sorted(clash.changed))


def test_custom_without_a_resolver_is_a_programming_error():
    with pytest.raises(ValueError, match="resolver"):
        merge.decide(Policy.CUSTOM, OVERLAP)


def test_fields_for_a_person_are_sorted():
    clash = updates({"phone": "9", "name": "S"}, {"phone": "2", "name": "C"})
    assert merge.decide(Policy.MERGE, clash).fields == ("name", "phone")


@pytest.mark.parametrize(
    ("obj", "attr"),
    [
        (merge.KEEP, "action"),  # KEEP and DELETE are shared by every decision
        (merge.write({}), "values"),
        (DISJOINT, "overlap"),
        (Resolution(), "values"),
    ],
)
def test_decisions_clashes_and_resolutions_are_immutable(obj, attr):
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, attr, getattr(obj, attr))
