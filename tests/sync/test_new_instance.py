"""`SyncedType.new`: the unsaved instance a create starts from, as the model's
own constructor builds it, and the model's class itself where a shortcut
could differ."""

from __future__ import annotations

import uuid

import pytest
from django.db.models import signals
from django.utils import timezone

from fieldwork.models import Customer, Note, WorkOrder
from sync import registry

pytestmark = pytest.mark.django_db

# Defaults that differ on every call.
PER_CALL = {"id", "created_at", "updated_at"}


def _fields(obj):
    return {k: v for k, v in vars(obj).items() if k != "_state"}


@pytest.mark.parametrize("model", [Customer, WorkOrder, Note])
def test_new_builds_what_the_constructor_builds(model):
    stype = registry.for_model(model)
    pk, now = uuid.uuid4(), timezone.now()
    ours = stype.new(id=pk, created_at=now)
    theirs = model(id=pk, created_at=now)
    assert _fields(ours).keys() == _fields(theirs).keys()
    assert {k: v for k, v in _fields(ours).items() if k != "updated_at"} == {
        k: v for k, v in _fields(theirs).items() if k != "updated_at"
    }
    assert (ours._state.adding, ours._state.db) == (True, None)
    # Every default is called anew: two instances share no generated value.
    a, b = stype.new(), stype.new()
    assert a.pk != b.pk and a.pk is not None


def test_given_values_win_over_defaults(alice):
    stype = registry.for_model(WorkOrder)
    client = Customer.objects.create(owner=alice.user, name="Acme")
    obj = stype.new(
        id=uuid.uuid4(), title="Fix", status="done", owner_id=alice.user.pk, customer_id=client.pk
    )
    assert (obj.title, obj.status, obj.owner_id, obj.version) == ("Fix", "done", alice.user.pk, 0)
    obj.save()
    assert WorkOrder.objects.get(pk=obj.pk).title == "Fix"


def test_a_model_with_init_listeners_is_built_by_its_class(monkeypatch):
    stype = registry.for_model(Note)
    seen = []

    def heard(sender, instance, **kwargs):
        seen.append(instance)

    monkeypatch.setattr(stype, "_plain_init", None)  # worked out again
    signals.post_init.connect(heard, sender=Note)
    try:
        obj = stype.new(id=uuid.uuid4(), body="b")
    finally:
        signals.post_init.disconnect(heard, sender=Note)
        stype._plain_init = None
    assert seen == [obj] and obj.body == "b"


def test_a_name_that_is_no_field_is_refused_not_dropped():
    stype = registry.for_model(Customer)
    with pytest.raises(TypeError, match="nmae"):
        stype.new(id=uuid.uuid4(), nmae="typo")
