"""`field__any=values` (syncbase/lookups.py): the same rows as `__in`, sent as one
array parameter on PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fieldwork.models import Customer
from sync.models import MutationRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def customers(alice):
    return [Customer.objects.create(owner=alice.user, name=f"C{i}") for i in range(4)]


@pytest.mark.parametrize(
    "pick",
    [
        lambda cs: [c.pk for c in cs[:2]],
        lambda cs: [str(c.pk) for c in cs[1:3]],  # text is converted like __in does
        lambda cs: {cs[0].pk, uuid.uuid4(), None},  # unknown ids and NULL match nothing
        lambda cs: [cs[3].pk, cs[3].pk],
        lambda cs: [],
        lambda cs: [None],
    ],
)
def test_any_finds_what_in_finds(customers, pick):
    values = pick(customers)
    by_in = set(Customer.objects.filter(pk__in=values).values_list("pk", flat=True))
    by_any = set(Customer.objects.filter(pk__any=values).values_list("pk", flat=True))
    assert by_any == by_in


def test_any_on_a_reference_and_an_integer(customers, alice, bob):
    Customer.objects.create(owner=bob.user, name="Theirs")
    assert Customer.objects.filter(owner_id__any=[alice.user.pk]).count() == len(customers)
    assert Customer.objects.filter(owner__any=[alice.user]).count() == len(customers)
    everyone = type(alice.user).objects.values("pk")
    assert Customer.objects.filter(owner__any=everyone).count() == len(customers) + 1
    assert Customer.objects.filter(version__any=[0, 1]).count() == len(customers) + 1


def test_any_with_a_subquery_is_in(customers):
    inner = Customer.objects.filter(name__in=["C1", "C2"]).values("pk")
    assert {c.name for c in Customer.objects.filter(pk__any=inner)} == {"C1", "C2"}


@pytest.mark.postgres
def test_one_array_parameter_however_many_values(customers):
    few = [uuid.uuid4() for _ in range(3)]
    many = [uuid.uuid4() for _ in range(400)]
    with CaptureQueriesContext(connection) as ctx:
        list(MutationRecord.objects.filter(mutation_id__any=few))
        list(MutationRecord.objects.filter(mutation_id__any=many))
    texts = [q["sql"] for q in ctx.captured_queries]
    assert all("= ANY(" in t for t in texts)
    # The statement text does not grow with the values (one parameter), so
    # PostgreSQL can prepare it once.
    compiled = [
        MutationRecord.objects.filter(mutation_id__any=v).query.sql_with_params()
        for v in (few, many)
    ]
    assert compiled[0][0] == compiled[1][0]
    assert [len(p) for _, p in compiled] == [1, 1]
