"""`syncbase.bulk.insert` (on PostgreSQL INSERT … VALUES for a few rows, COPY
for more) writes exactly what Django's bulk_create writes, value for value,
and fails as the ORM does; every test here runs both ways."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from fieldwork.models import Customer, Note, WorkOrder
from sync.models import Change, MutationRecord
from syncbase import bulk

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=False)]


def _row(model: type[models.Model], pk: Any) -> dict[str, Any]:
    row = model._default_manager.filter(pk=pk).values().get()
    row.pop(model._meta.pk.attname)
    # Stamped by defaults (or auto_now) as each instance is made or saved.
    for stamp in ("created_at", "updated_at"):
        if stamp in row:
            assert abs(timezone.now() - row.pop(stamp)) < dt.timedelta(seconds=5)
    return row


def _both(model: type[models.Model], make: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same values written by bulk_create and by bulk.insert, read back."""
    by_django, by_copy = make(), make()
    model._default_manager.bulk_create([by_django])
    bulk.insert(model, [by_copy])
    assert not by_copy._state.adding
    if by_copy.pk is None:  # an auto-incremented key: the newest row
        by_copy.pk = model._default_manager.order_by("-pk").values_list("pk", flat=True)[0]
    return _row(model, by_django.pk), _row(model, by_copy.pk)


@pytest.fixture(autouse=True, params=["insert", "copy"])
def way(request: Any, monkeypatch: Any) -> str:
    monkeypatch.setattr(bulk, "COPY_FROM", bulk.COPY_FROM if request.param == "insert" else 1)
    return request.param


@pytest.fixture
def user() -> Any:
    return get_user_model().objects.create(username="bulk")


def test_synced_objects_of_every_field_type(user):
    moment = timezone.now()
    customer = Customer.objects.create(name="c", owner=user)

    def order() -> WorkOrder:
        return WorkOrder(
            id=uuid.uuid4(),
            owner=user,
            customer_id=customer.pk,
            title='Fix 🚲 "boiler"\n\t\\ ünï',
            description="",
            scheduled_for=dt.date(2026, 12, 1),
            due_at=moment,
            estimated_hours=1e-7,
        )

    assert_same(*_both(WorkOrder, order))
    job = WorkOrder.objects.create(owner=user, customer=customer, title="t")
    assert_same(
        *_both(
            Note,
            lambda: Note(id=uuid.uuid4(), owner=user, work_order=job, body="b", pinned=True),
        )
    )
    # Values of other types than the column's are converted as Django does.
    assert_same(
        *_both(
            WorkOrder,
            lambda: WorkOrder(
                id=uuid.uuid4(),
                owner_id=str(user.pk),
                customer_id=str(customer.pk),
                title=123,
                due_at=dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC),
                scheduled_for=dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC).date(),
                estimated_hours=Decimal("2.5"),
            ),
        )
    )


def assert_same(by_django: dict[str, Any], by_copy: dict[str, Any]) -> None:
    assert by_copy == by_django


def test_json_values_written_with_orjson_read_back_as_with_django(user):
    results = [
        {"status": "applied", "object": {"name": "Zoë \u2028", "n": 1.5, "none": None}},
        {"errors": {"name": ["Too long."]}, "nested": [[1, 2], {"a": True}]},
        {1: "a key that is not a string"},
        {"big": 2**70},  # beyond orjson: Django's own encoding
        [],
        "text",
    ]
    for result in results:

        def record(result: Any = result) -> MutationRecord:
            return MutationRecord(
                user=user,
                mutation_id=uuid.uuid4(),
                status="applied",
                result=result,
                created_at=timezone.now(),
            )

        by_django, by_copy = _both(MutationRecord, record)
        by_django.pop("mutation_id"), by_copy.pop("mutation_id")
        assert by_copy == by_django


def test_feed_rows_keep_their_order_and_positions(user):
    object_id = uuid.uuid4()
    rows = [
        {
            "channel": "user:1",
            "model": "fieldwork.note",
            "object_id": object_id,
            "version": v,
            "op": Change.Op.UPSERT,
            "created_at": timezone.now(),
        }
        for v in range(1, 6)
    ]
    with transaction.atomic():
        from sync.engine import feed

        written = feed.append(rows)
    assert written is not None
    stored = list(Change.objects.filter(object_id=object_id).order_by("seq"))
    assert [c.version for c in stored] == [1, 2, 3, 4, 5]
    assert {c.tx for c in stored} == {written.tx} and written.tx > 0
    assert (written.first, written.last) == (stored[0].seq, stored[-1].seq)


def test_a_duplicate_is_djangos_integrity_error_and_the_transaction_survives(user):
    mutation_id = uuid.uuid4()

    def record() -> MutationRecord:
        return MutationRecord(user=user, mutation_id=mutation_id, status="applied", result={})

    bulk.insert(MutationRecord, [record()])
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk.insert(MutationRecord, [record()])
    assert MutationRecord.objects.filter(mutation_id=mutation_id).count() == 1
    assert connection.vendor == "postgresql"


def test_rows_given_as_values_are_written_as_instances_would_be(user):
    history = Customer.history.model
    moment = timezone.now()
    values = {
        "id": uuid.uuid4(),
        "version": 3,
        "created_at": moment,
        "updated_at": moment,
        "owner_id": user.pk,
        "name": "Zoë",
        "email": "z@example.com",
        "history_date": moment,
        "history_type": "~",
        "history_user_id": user.pk,
        # left out: deleted_at, last_device_id, team_id, phone, address (defaults)
    }
    history._default_manager.bulk_create([history(**values, history_change_reason="a")])
    bulk.insert_values(history, [{**values, "history_change_reason": "b"}])
    by_django, by_values = (
        history._default_manager.filter(history_change_reason=r).values().get() for r in "ab"
    )
    for row in (by_django, by_values):
        row.pop("history_id"), row.pop("history_change_reason")
    assert by_values == by_django
    assert by_values["phone"] == "" and by_values["deleted_at"] is None


def test_rows_copied_from_their_source_in_the_order_given(user):
    history = Customer.history.model
    moment = timezone.now()
    made = [
        Customer.objects.create(name=f"c{i}", email=f"{i}@example.com", owner=user)
        for i in range(3)
    ]
    ids = [made[2].pk, made[0].pk, made[1].pk]
    bulk.insert_selected(
        history,
        Customer,
        ids,
        fixed={"history_date": moment, "history_user_id": user.pk, "history_change_reason": "r"},
        each={"history_type": ["+", "~", "-"]},
    )
    rows = list(history.objects.filter(history_change_reason="r").order_by("history_id").values())
    assert [(r["id"], r["history_type"]) for r in rows] == list(zip(ids, "+~-", strict=True))
    for row in rows:
        source = Customer.objects.filter(pk=row["id"]).values().get()
        assert {k: row[k] for k in source} == source
        assert (row["history_date"], row["history_user_id"]) == (moment, user.pk)


def test_a_missing_source_row_fails_rather_than_lose_a_row(user):
    kept = Customer.objects.create(name="c", owner=user)
    with pytest.raises(RuntimeError, match="copied 1 rows of 2"), transaction.atomic():
        bulk.insert_selected(
            Customer.history.model,
            Customer,
            [kept.pk, uuid.uuid4()],
            fixed={
                "history_date": timezone.now(),
                "history_user_id": None,
                "history_change_reason": "r",
            },
            each={"history_type": ["+", "+"]},
        )
    assert not Customer.history.filter(history_change_reason="r").exists()


def test_each_row_takes_its_own_values_where_the_condition_still_holds(user):
    rows = [
        MutationRecord.objects.create(
            user=user,
            mutation_id=uuid.uuid4(),
            model="fieldwork.customer",
            status="applied",
            result={"n": i},
        )
        for i in range(4)
    ]
    rows[3].status = "rejected"
    rows[3].save()
    changed = bulk.update_each(
        MutationRecord,
        {r.pk: {"status": "merged", "result": {"n": 10 + i}} for i, r in enumerate(rows)},
        only_if={"status": "applied"},
    )
    assert changed == 3
    after = {r.pk: (r.status, r.result) for r in MutationRecord.objects.all()}
    assert after == {
        rows[0].pk: ("merged", {"n": 10}),
        rows[1].pk: ("merged", {"n": 11}),
        rows[2].pk: ("merged", {"n": 12}),
        rows[3].pk: ("rejected", {"n": 3}),  # no longer matched: left alone
    }
    assert bulk.update_each(MutationRecord, {}, only_if={}) == 0
