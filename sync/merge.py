"""What a stale write does: the three-way merge and the conflict policies.

Pure functions of wire values (JSON types), so every rule reads, and is tested,
as a table: `decide(policy, clash)` takes what both sides did since the
version the client started from and answers what to write, or that a person
must decide. Nothing here loads, validates or writes; `sync.engine.batch` does that
around it.

A write is *stale* when its `base_version` is older than the server's version.
Three situations follow (`ConflictKind`), each settled by the model's policy:

    policy       both changed fields      client updated,        client deleted,
                                          server deleted         server changed
    merge        disjoint: write;         person                 person
                 overlap: person (the
                 disjoint ones written)
    manual       any change: person       person                 person
    server_wins  client's disjoint only   keep deleted           keep the object
    client_wins  client's over server's   restore with client's  delete
    custom       disjoint: write;         person                 person
                 overlap: the resolver
                 (or a person)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sync.choices import ConflictKind, Policy

logger = logging.getLogger(__name__)

Values = Mapping[str, Any]


@dataclass(frozen=True)
class Resolution:
    """What a custom resolver decided: `values` to write over the server state, or
    `needs_person=True` to queue a conflict."""

    values: Values = field(default_factory=dict)
    needs_person: bool = False


# resolver(base, server, client, fields) -> Resolution; all dicts in wire form.
Resolver = Callable[[Values | None, Values, Values, list[str]], Resolution]


@dataclass(frozen=True)
class Clash:
    """What both sides did since the client's base version.

    `base` is the stored state at the base version (None when history no longer
    has it), `server` the current state (None when deleted), `client` the
    fields the client sent (None for a delete).
    """

    kind: ConflictKind
    base: Values | None
    server: Values | None
    client: Values | None
    # update_update only: client changes to fields the server left alone ...
    disjoint: Values = field(default_factory=dict)
    # ... fields both sides changed, to different values ...
    overlap: tuple[str, ...] = ()
    # ... and every field the client changed since base.
    changed: tuple[str, ...] = ()


def clash_of_updates(base: Values | None, server: Values, client: Values) -> Clash:
    """Field by field: what only the client changed, and what both changed.

    Without a base (history pruned) every field the client sent counts as
    changed on both sides, so only identical values merge silently.
    """
    changed = tuple(f for f, v in client.items() if base is None or base[f] != v)
    disjoint: dict[str, Any] = {}
    overlap: list[str] = []
    for f in changed:
        server_changed = base is None or server[f] != base[f]
        if not server_changed:
            disjoint[f] = client[f]
        elif server[f] != client[f]:
            overlap.append(f)
    return Clash(
        ConflictKind.UPDATE_UPDATE,
        base,
        server,
        client,
        disjoint=disjoint,
        overlap=tuple(overlap),
        changed=changed,
    )


def clash_of_update_with_delete(base: Values | None, client: Values) -> Clash:
    """The client updated an object the server has deleted since."""
    return Clash(ConflictKind.UPDATE_DELETE, base, None, client, changed=tuple(client))


def clash_of_delete_with_update(base: Values | None, server: Values) -> Clash:
    """The client deleted an object the server has changed since."""
    return Clash(ConflictKind.DELETE_UPDATE, base, server, None)


class Action(StrEnum):
    WRITE = "write"  # write `values` over the server state (restoring it if deleted)
    DELETE = "delete"  # delete the object
    KEEP = "keep"  # leave the server state as it is
    # Queue a conflict on `fields` for a person, writing `values` (the client's
    # changes nobody else made) at once: those are never held back or lost.
    PERSON = "person"


@dataclass(frozen=True)
class Decision:
    action: Action
    values: Values = field(default_factory=dict)
    fields: tuple[str, ...] = ()  # for PERSON: the fields at stake
    # Values a custom resolver chose: unlike the client's, not validated yet.
    from_resolver: frozenset[str] = frozenset()


KEEP = Decision(Action.KEEP)
DELETE = Decision(Action.DELETE)


def write(values: Values) -> Decision:
    return Decision(Action.WRITE, dict(values))


def person(clash: Clash, fields: tuple[str, ...] | None = None) -> Decision:
    """Queue a conflict. By default on the overlapping fields of an update, whose
    disjoint fields are written at once; on every field the client sent for an
    update of a deleted object; on none for a delete. Given `fields`, the
    conflict holds those and nothing is written."""
    if fields is not None:
        return Decision(Action.PERSON, fields=tuple(sorted(fields)))
    if clash.kind == ConflictKind.UPDATE_UPDATE:
        return Decision(Action.PERSON, dict(clash.disjoint), tuple(sorted(clash.overlap)))
    return Decision(Action.PERSON, fields=tuple(sorted(clash.changed)))


# --- one function per policy ------------------------------------------------------


def merge(clash: Clash) -> Decision:
    if clash.kind == ConflictKind.UPDATE_UPDATE and not clash.overlap:
        return write(clash.disjoint)
    return person(clash)


def manual(clash: Clash) -> Decision:
    if clash.kind == ConflictKind.UPDATE_UPDATE and not clash.changed:
        return write({})  # the client's values were the base's: nothing to decide
    # Every concurrent change goes to a person, disjoint ones included.
    return person(clash, clash.changed if clash.kind == ConflictKind.UPDATE_UPDATE else None)


def server_wins(clash: Clash) -> Decision:
    if clash.kind == ConflictKind.UPDATE_UPDATE:
        return write(clash.disjoint)
    return KEEP  # the object stays deleted, or stays as the server changed it


def client_wins(clash: Clash) -> Decision:
    if clash.kind == ConflictKind.UPDATE_UPDATE:
        assert clash.client is not None  # noqa: S101 - an update always carries client values
        return write({**clash.disjoint, **{f: clash.client[f] for f in clash.overlap}})
    if clash.kind == ConflictKind.UPDATE_DELETE:
        assert clash.client is not None  # noqa: S101
        return write(clash.client)  # restores the object with the client's fields
    return DELETE


def custom(clash: Clash, resolver: Resolver) -> Decision:
    """The model's resolver settles overlapping fields; a resolver that fails,
    declines or answers nonsense leaves them to a person (a broken resolver must
    not fail a whole push)."""
    if clash.kind != ConflictKind.UPDATE_UPDATE:
        return person(clash)
    if not clash.overlap:
        return write(clash.disjoint)
    assert clash.server is not None and clash.client is not None  # noqa: S101
    try:
        outcome = resolver(clash.base, clash.server, clash.client, list(clash.overlap))
    except Exception:
        logger.exception("Custom resolver failed; queueing a conflict")
        return person(clash)
    if not isinstance(outcome, Resolution) or outcome.needs_person:
        return person(clash)
    return Decision(
        Action.WRITE,
        {**clash.disjoint, **outcome.values},
        from_resolver=frozenset(outcome.values),
    )


_POLICIES: dict[str, Callable[[Clash], Decision]] = {
    Policy.MERGE: merge,
    Policy.MANUAL: manual,
    Policy.SERVER_WINS: server_wins,
    Policy.CLIENT_WINS: client_wins,
}


def decide(policy: str, clash: Clash, resolver: Resolver | None = None) -> Decision:
    """What a stale write does under `policy`."""
    if policy == Policy.CUSTOM:
        if resolver is None:
            raise ValueError("The custom policy needs a resolver")
        return custom(clash, resolver)
    return _POLICIES[policy](clash)
