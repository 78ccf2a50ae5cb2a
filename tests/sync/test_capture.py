"""Every write to a synced model reaches devices, whatever path made it
(sync.engine.capture): the ORM, the admin, fixtures, data migrations, raw SQL and
other processes. Each path gets a new version, a history row and feed rows,
and the device's next pull brings it."""

from __future__ import annotations

import json
import uuid

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import RequestFactory

from devices.models import PushOutbox
from fieldwork.models import Customer, WorkOrder
from sync import registry, writers
from sync.engine import capture
from sync.models import Change
from tests.factories import customer, team_of, update, work_order
from tests.helpers import psql, sync_check_passes

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"
WORK_ORDER = "fieldwork.workorder"


@pytest.fixture
def synced(alice):
    """Alice's phone has pulled a customer and a work order it created."""
    [c] = [r["id"] for r in alice.push(customer("Acme"))["results"]]
    [w] = [r["id"] for r in alice.push(work_order(c, "Fix boiler"))["results"]]
    _, cursor = alice.pull_all()
    return {"customer": c, "work_order": w, "cursor": cursor}


def pulled(actor, cursor: str) -> dict[str, dict]:
    """What the device's next pull brings, by object id."""
    changes, _ = actor.pull_all(cursor)
    return {c["id"]: c for c in changes}


def history(model, object_id) -> list[tuple[int, str]]:
    return list(
        model.history.filter(id=object_id)
        .order_by("version")
        .values_list("version", "history_type")
    )


def feed(object_id) -> list[tuple[str, int, int]]:
    return list(
        Change.objects.filter(object_id=object_id)
        .order_by("tx", "seq")
        .values_list("channel", "version", "op")
    )


# --- one test per write path ---------------------------------------------------------------


def test_save_makes_a_new_version_that_the_device_pulls(alice, synced):
    job = WorkOrder.objects.get(pk=synced["work_order"])
    before = job.updated_at
    job.title = "Fix boiler (urgent)"
    job.save()
    assert job.version == 2 and job.updated_at > before  # the instance knows its new state
    change = pulled(alice, synced["cursor"])[synced["work_order"]]
    assert change["op"] == "upsert" and change["version"] == 2
    assert change["data"]["title"] == "Fix boiler (urgent)"
    assert history(WorkOrder, job.pk) == [(1, "+"), (2, "~")]
    assert feed(job.pk)[-1] == (f"user:{alice.user.pk}", 2, Change.Op.UPSERT)
    sync_check_passes()


def test_objects_create_starts_at_version_1_and_reaches_the_device(alice, synced):
    job = WorkOrder.objects.create(
        owner=alice.user, customer_id=synced["customer"], title="Made on the server"
    )
    assert job.version == 1
    change = pulled(alice, synced["cursor"])[str(job.pk)]
    assert change["version"] == 1 and change["data"]["title"] == "Made on the server"
    assert history(WorkOrder, job.pk) == [(1, "+")]
    sync_check_passes()


def test_get_or_create_and_update_or_create(alice, synced):
    job, created = WorkOrder.objects.get_or_create(
        title="Inspect", defaults={"owner": alice.user, "customer_id": synced["customer"]}
    )
    assert created and job.version == 1
    job, created = WorkOrder.objects.update_or_create(pk=job.pk, defaults={"status": "done"})
    assert not created and job.version == 2
    change = pulled(alice, synced["cursor"])[str(job.pk)]
    assert change["version"] == 2 and change["data"]["status"] == "done"
    sync_check_passes()


def test_delete_leaves_a_tombstone_the_device_pulls_and_cascades(alice, synced):
    [note] = [r["id"] for r in alice.push(_note(synced["work_order"]))["results"]]
    _, cursor = alice.pull_all(synced["cursor"])
    job = WorkOrder.objects.get(pk=synced["work_order"])
    job.delete()
    assert job.pk is not None and job.is_deleted and job.version == 2
    row = WorkOrder.objects.get(pk=job.pk)  # the row stays, as a tombstone
    assert row.deleted_at is not None and row.version == 2
    changes = pulled(alice, cursor)
    assert changes[str(job.pk)]["op"] == "delete" and changes[str(job.pk)]["version"] == 2
    # The note goes with its work order (on_delete=CASCADE), as a tombstone too.
    assert changes[note]["op"] == "delete"
    assert history(WorkOrder, job.pk)[-1] == (2, "-")
    sync_check_passes()


def test_queryset_update_reaches_the_device(alice, synced):
    assert WorkOrder.objects.filter(pk=synced["work_order"]).update(status="scheduled") == 1
    change = pulled(alice, synced["cursor"])[synced["work_order"]]
    assert change["version"] == 2 and change["data"]["status"] == "scheduled"
    assert history(WorkOrder, synced["work_order"]) == [(1, "+"), (2, "~")]
    sync_check_passes()


def test_queryset_delete_leaves_tombstones(alice, synced):
    WorkOrder.objects.filter(pk=synced["work_order"]).delete()
    change = pulled(alice, synced["cursor"])[synced["work_order"]]
    assert change["op"] == "delete" and change["version"] == 2
    sync_check_passes()


def test_bulk_create_and_bulk_update(alice, synced):
    jobs = WorkOrder.objects.bulk_create(
        [
            WorkOrder(owner=alice.user, customer_id=synced["customer"], title=f"Job {i}")
            for i in range(3)
        ]
    )
    for job in jobs:
        job.priority = "high"
    WorkOrder.objects.bulk_update(jobs, ["priority"])
    changes = pulled(alice, synced["cursor"])
    for job in jobs:
        assert changes[str(job.pk)]["version"] == 2
        assert changes[str(job.pk)]["data"]["priority"] == "high"
        assert history(WorkOrder, job.pk) == [(1, "+"), (2, "~")]
    sync_check_passes()


def test_a_plain_model_admin_saves_and_deletes_reach_the_device(alice, synced, admin_user):
    """Any ModelAdmin, not only the sync admin: it saves with `save_model`
    and deletes with `delete_model` / `delete_queryset` (the bulk action)."""
    model_admin = admin.ModelAdmin(WorkOrder, admin.AdminSite())
    request = RequestFactory().post("/")
    request.user = admin_user
    job = WorkOrder.objects.get(pk=synced["work_order"])
    job.title = "Edited by staff"
    model_admin.save_model(request, job, form=None, change=True)
    other = WorkOrder.objects.create(
        owner=alice.user, customer_id=synced["customer"], title="Another"
    )
    model_admin.delete_queryset(request, WorkOrder.objects.filter(pk=other.pk))
    changes = pulled(alice, synced["cursor"])
    assert changes[str(job.pk)]["data"]["title"] == "Edited by staff"
    assert changes[str(other.pk)]["op"] == "delete"
    model_admin.delete_model(request, job)
    assert WorkOrder.objects.get(pk=job.pk).is_deleted
    sync_check_passes()


def test_loaddata_reaches_the_device(alice, synced, tmp_path):
    new_id = uuid.uuid4()
    fixture = tmp_path / "jobs.json"
    fixture.write_text(
        json.dumps(
            [
                {
                    "model": "fieldwork.workorder",
                    "pk": str(new_id),
                    "fields": {
                        "owner": alice.user.pk,
                        "customer": synced["customer"],
                        "title": "From a fixture",
                        "version": 7,  # what another database had: the capture restarts it
                    },
                },
                {
                    "model": "fieldwork.workorder",
                    "pk": synced["work_order"],
                    "fields": {
                        "owner": alice.user.pk,
                        "customer": synced["customer"],
                        "title": "Fixture over it",
                    },
                },
            ]
        )
    )
    call_command("loaddata", str(fixture), verbosity=0)
    changes = pulled(alice, synced["cursor"])
    assert changes[str(new_id)]["version"] == 1
    assert changes[str(new_id)]["data"]["title"] == "From a fixture"
    assert changes[synced["work_order"]]["version"] == 2
    assert changes[synced["work_order"]]["data"]["title"] == "Fixture over it"
    sync_check_passes()


def test_a_data_migrations_historical_models_reach_the_device(alice, synced):
    """A data migration writes with the models of its migration state, which
    have neither our methods nor our managers: the database captures it."""
    state = MigrationExecutor(connection).loader.project_state()
    Job = state.apps.get_model("fieldwork", "WorkOrder")
    Job.objects.filter(pk=synced["work_order"]).update(estimated_hours=2.5)
    made = Job.objects.create(
        id=uuid.uuid4(), owner_id=alice.user.pk, customer_id=synced["customer"], title="Migrated"
    )
    changes = pulled(alice, synced["cursor"])
    assert changes[synced["work_order"]]["data"]["estimated_hours"] == 2.5
    assert changes[str(made.pk)]["version"] == 1
    sync_check_passes()


def test_raw_sql_update_insert_and_delete_reach_the_device(alice, synced):
    table = WorkOrder._meta.db_table
    made = uuid.uuid4()
    hexed = made.hex if connection.vendor == "sqlite" else str(made)
    now = "CURRENT_TIMESTAMP"
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET title = 'raw' WHERE title = 'Fix boiler'")  # noqa: S608
        cursor.execute(
            f"INSERT INTO {table} (id, owner_id, customer_id, title, description, status, "  # noqa: S608
            "priority, version, created_at, updated_at) "
            f"VALUES (%s, %s, %s, 'raw insert', '', 'open', 'low', 0, {now}, {now})",
            [
                hexed,
                alice.user.pk,
                WorkOrder.objects.get(pk=synced["work_order"]).customer_id.hex
                if connection.vendor == "sqlite"
                else synced["customer"],
            ],
        )
    changes = pulled(alice, synced["cursor"])
    assert changes[synced["work_order"]]["version"] == 2
    assert changes[synced["work_order"]]["data"]["title"] == "raw"
    assert changes[str(made)]["version"] == 1
    _, cursor_after = alice.pull_all(synced["cursor"])
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE title = 'raw insert'")  # noqa: S608
    change = pulled(alice, cursor_after)[str(made)]
    assert change["op"] == "delete" and change["version"] == 2
    sync_check_passes()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_another_process_writing_sql_reaches_the_device(alice, synced):
    """psql, another service on the same database: nothing of ours runs there."""
    psql(f"UPDATE fieldwork_workorder SET status = 'done' WHERE id = '{synced['work_order']}'")  # noqa: S608
    change = pulled(alice, synced["cursor"])[synced["work_order"]]
    assert change["version"] == 2 and change["data"]["status"] == "done"
    # Its wake-up waits in the outbox for the sweep (nobody here was told).
    assert PushOutbox.objects.filter(captured=True, claimed_until__isnull=True).exists()
    sync_check_passes()


# --- what a captured write does -------------------------------------------------------------


def test_moving_an_object_between_channels_deletes_it_where_it_was(alice, bob, synced):
    team = team_of(alice.user, bob.user)
    _, bob_cursor = bob.pull_all()
    WorkOrder.objects.filter(pk=synced["work_order"]).update(team=team)
    assert pulled(bob, bob_cursor)[synced["work_order"]]["op"] == "upsert"
    _, bob_cursor = bob.pull_all(bob_cursor)
    job = WorkOrder.objects.get(pk=synced["work_order"])
    job.team = None
    job.save()
    assert pulled(bob, bob_cursor)[synced["work_order"]]["op"] == "delete"
    assert pulled(alice, synced["cursor"])[synced["work_order"]]["op"] == "upsert"


def test_a_write_that_changes_nothing_makes_no_version(synced):
    job = WorkOrder.objects.get(pk=synced["work_order"])
    job.save()
    WorkOrder.objects.filter(pk=job.pk).update(title=job.title)
    assert WorkOrder.objects.get(pk=job.pk).version == 1
    assert history(WorkOrder, job.pk) == [(1, "+")]


def test_the_service_writes_are_not_counted_twice(alice, synced):
    body = alice.push(update(WORK_ORDER, synced["work_order"], 1, title="From the phone"))
    assert body["results"][0]["version"] == 2
    assert history(WorkOrder, synced["work_order"]) == [(1, "+"), (2, "~")]
    assert feed(synced["work_order"]) == [
        (f"user:{alice.user.pk}", 1, Change.Op.UPSERT),
        (f"user:{alice.user.pk}", 2, Change.Op.UPSERT),
    ]
    sync_check_passes()


def test_the_history_names_the_user_and_reason(alice, synced, admin_user):
    job = WorkOrder.objects.get(pk=synced["work_order"])
    job._history_user = admin_user
    job._change_reason = "called the customer"
    job.title = "Call first"
    job.save()
    with writers.write_context(user_id=admin_user.pk, reason="nightly import"):
        WorkOrder.objects.filter(pk=job.pk).update(priority="high")
    rows = list(
        WorkOrder.history.filter(id=job.pk, version__gt=1)
        .order_by("version")
        .values_list("history_user_id", "history_change_reason")
    )
    assert rows == [(admin_user.pk, "called the customer"), (admin_user.pk, "nightly import")]


def test_a_stale_device_edit_merges_with_a_server_write_or_conflicts(alice, synced):
    WorkOrder.objects.filter(pk=synced["work_order"]).update(status="scheduled")
    # Another field than the server's: merged over version 2.
    merged = alice.push_one(update(WORK_ORDER, synced["work_order"], 1, priority="high"))
    assert merged["status"] == "merged" and merged["version"] == 3
    assert merged["data"]["status"] == "scheduled" and merged["data"]["priority"] == "high"
    # The same field the server changed, to another value: a conflict.
    job = WorkOrder.objects.get(pk=synced["work_order"])
    job.title = "Server title"
    job.save()
    clash = alice.push_one(update(WORK_ORDER, synced["work_order"], 3, title="Phone title"))
    assert clash["status"] == "conflict"
    assert WorkOrder.objects.get(pk=synced["work_order"]).title == "Server title"


def test_a_rolled_back_write_leaves_nothing(alice, synced):
    before = Change.objects.count(), PushOutbox.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        WorkOrder.objects.filter(pk=synced["work_order"]).update(title="never")
        raise RuntimeError
    assert (Change.objects.count(), PushOutbox.objects.count()) == before
    assert pulled(alice, synced["cursor"]) == {}


def test_a_captured_write_wakes_the_users_devices(
    make_actor, alice, synced, settings, django_capture_on_commit_callbacks, caplog
):
    from config.celery import app

    settings.PUSH_BACKEND = "console"
    tablet = make_actor(user=alice.user)
    response = tablet.client.patch(
        f"/api/v1/devices/{tablet.device_id}/", {"push_token": "tok-1"}, format="json"
    )
    assert response.status_code == 200
    PushOutbox.objects.all().delete()
    app.conf.task_always_eager = True
    try:
        with caplog.at_level("INFO", logger="devices.push"):
            with django_capture_on_commit_callbacks(execute=True):
                job = WorkOrder.objects.get(pk=synced["work_order"])
                job.status = "done"
                job.save()
    finally:
        app.conf.task_always_eager = False
    assert not PushOutbox.objects.exists()  # taken and sent
    sent = [r.getMessage() for r in caplog.records if "console backend" in r.getMessage()]
    assert len(sent) == 1 and str(tablet.device_id) in sent[0]


def test_baseline_gives_rows_written_before_the_capture_version_1(alice, synced):
    """Rows of a model registered with data already in it (or written before
    its triggers existed) get version 1, history and feed rows; twice changes
    nothing."""
    with writers.service_writes():  # as if no trigger had been there
        made = Customer.objects.create(owner=alice.user, name="Old row")
    assert Customer.objects.get(pk=made.pk).version == 0
    assert capture.baseline(registry.for_model(Customer), connection) == 1
    assert Customer.objects.get(pk=made.pk).version == 1
    assert history(Customer, made.pk) == [(1, "+")]
    assert pulled(alice, synced["cursor"])[str(made.pk)]["version"] == 1
    assert capture.baseline(registry.for_model(Customer), connection) == 0
    sync_check_passes()


def test_migrate_installs_the_triggers_of_the_code():
    for stype in registry.all_types():
        assert capture.installed(stype, connection) == capture.fingerprint(stype, connection)
    assert capture.missing() == []


def test_purging_deletes_for_good():
    owner = get_user_model().objects.create(username="gone")
    made = Customer.objects.create(owner=owner, name="Erase me")
    with writers.purging():
        Customer.objects.filter(pk=made.pk).delete()
    assert not Customer.objects.filter(pk=made.pk).exists()


def _note(work_order_id: str) -> dict:
    from tests.factories import mutation

    return mutation("fieldwork.note", data={"work_order": work_order_id, "body": "hi"})


def test_migrate_baselines_rows_that_predate_the_capture(alice, synced):
    """`migrate` (step 6 of the README's guide) gives old rows version 1 once."""
    with writers.service_writes():
        made = Customer.objects.create(owner=alice.user, name="Imported before sync")
    call_command("migrate", verbosity=0)
    assert Customer.objects.get(pk=made.pk).version == 1
    assert pulled(alice, synced["cursor"])[str(made.pk)]["version"] == 1
    call_command("migrate", verbosity=0)
    assert history(Customer, made.pk) == [(1, "+")]
