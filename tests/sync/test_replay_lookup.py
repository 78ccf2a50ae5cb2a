"""How a push finds the mutations it has seen before (idempotent replay).

Mutation ids are the client's, unique per user: the same id from another user
is another mutation. The lookup must stay an index probe per id however many
records the user has, including right after they grew, before PostgreSQL's
statistics know it (an import, a device's first large push): asked with a
condition on the user, the planner took that user for a rare one and read
all of its records for every batch.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fieldwork.models import Customer
from sync.engine.write import mutations_apply
from sync.models import MutationRecord
from syncbase import bulk
from tests.factories import customer
from tests.helpers import plan_nodes

pytestmark = pytest.mark.django_db


def test_the_same_mutation_id_from_another_user_is_another_mutation(alice, bob):
    shared = str(uuid.uuid4())
    theirs = {**customer("Bob's"), "mutation_id": shared}
    ours = {**customer("Alice's"), "mutation_id": shared}
    assert bob.push_one(theirs)["status"] == "applied"
    result = alice.push_one(ours)
    assert (result["status"], result["id"]) == ("applied", ours["id"])
    assert Customer.objects.get(pk=ours["id"]).owner_id == alice.user.pk
    # And each replays its own.
    assert bob.push_one(theirs)["id"] == theirs["id"]
    assert alice.push_one(ours)["id"] == ours["id"]


def _records(user_id: int, n: int) -> list[dict[str, Any]]:
    now = timezone.now()
    return [
        {
            "user_id": user_id,
            "mutation_id": uuid.uuid4(),
            "model": "fieldwork.customer",
            "status": "applied",
            "result": {},
            "created_at": now,
        }
        for _ in range(n)
    ]


@pytest.mark.postgres
def test_a_user_whose_records_grew_since_analyze_is_still_looked_up_by_id(alice, make_actor):
    # Statistics that know many users with a record or two each, and not alice.
    others = [make_actor().user.pk for _ in range(40)]
    bulk.insert_values(MutationRecord, [r for u in others for r in _records(u, 2)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE sync_mutationrecord")
    # Then alice's records grow by thousands.
    bulk.insert_values(MutationRecord, _records(alice.user.pk, 20_000))

    batch = [customer(f"c{i}") for i in range(50)]
    with CaptureQueriesContext(connection) as queries:
        mutations_apply(user=alice.user, mutations=batch)
    lookup = next(q["sql"] for q in queries if 'FROM "sync_mutationrecord"' in q["sql"])
    # The nodes that read the records' table or one of its indexes.
    nodes = [
        n
        for n in plan_nodes(lookup)
        if n.get("Relation Name") == "sync_mutationrecord"
        or n.get("Index Name", "").startswith("sync_mutation")
    ]
    # The ids are looked up in an index, never checked row by row.
    assert any("mutation_id" in node.get("Index Cond", "") for node in nodes), nodes
    assert not any("mutation_id" in node.get("Filter", "") for node in nodes), nodes
