"""Waking devices after a write: who is woken, outcomes, retries, the outbox.

The tasks' functions are called directly here (CONVENTIONS: test a task by
calling its function); `test_wakeups_worker.py` proves the wiring with a real
worker on the real broker. FCM is the local fake behind firebase-admin.
"""

from __future__ import annotations

import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from config.celery import app
from devices.models import Device, PushOutbox
from sync.engine.write import mutations_apply
from sync.models import Change
from sync.notify.wakeups import counters, retry_delay, wakeups_send
from tests.devices.fake_fcm import QUOTA, UNREGISTERED
from tests.factories import customer, team_of, update

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"


def with_token(actor, token: str | None = None) -> str:
    token = token or f"tok-{uuid.uuid4()}"
    response = actor.client.patch(
        f"/api/v1/devices/{actor.device_id}/", {"push_token": token}, format="json"
    )
    assert response.status_code == 200, response.content
    return token


def only_outbox_row() -> PushOutbox:
    rows = list(PushOutbox.objects.all())
    assert len(rows) == 1, rows
    return rows[0]


@pytest.fixture
def eager():
    """Tasks a fan-out schedules (retries, flushes) run at once, in this thread."""
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def scene(make_actor):
    """Alice (phone, tablet), Bob on her team, Carol on her own."""
    phone = make_actor()
    tablet = make_actor(user=phone.user)
    bob, carol = make_actor(), make_actor()
    team = team_of(phone.user, bob.user)
    tokens = {
        name: with_token(a)
        for name, a in (("phone", phone), ("tablet", tablet), ("bob", bob), ("carol", carol))
    }
    PushOutbox.objects.all().delete()  # the team grants' own wake-ups
    return phone, tablet, bob, carol, team, tokens


def test_a_write_wakes_the_other_devices_in_scope_only(fcm, scene, eager):
    phone, tablet, bob, carol, team, tokens = scene
    body = phone.push(customer("Shared", team=str(team.pk)))
    assert body["results"][0]["status"] == "applied"
    row = only_outbox_row()
    assert row.origin_device_id == phone.device_id
    assert set(row.channels) == {f"user:{phone.user.pk}", f"team:{team.pk}"}
    last_seq = Change.objects.order_by("-seq").values_list("seq", flat=True).first()
    assert row.seq == last_seq
    stats = wakeups_send(row.pk)  # the first change in a quiet window: sent at once
    assert stats is not None and stats.devices == 2 and stats.sent == 2 and stats.scheduled == 0
    assert fcm.sent_to(tokens["phone"]) == [] and fcm.sent_to(tokens["carol"]) == []
    for name in ("tablet", "bob"):
        [message] = fcm.sent_to(tokens[name])
        assert message["data"] == {"type": "sync", "cursor": str(last_seq)}
    assert not PushOutbox.objects.exists()
    woken = Device.objects.get(pk=bob.device_id)
    assert woken.last_push_outcome == "sent" and woken.last_push_at is not None
    assert Device.objects.get(pk=carol.device_id).last_push_at is None


def test_devices_without_token_inactive_or_of_inactive_users_are_not_woken(fcm, scene, make_actor):
    phone, tablet, bob, carol, team, tokens = scene
    Device.objects.filter(pk=tablet.device_id).update(push_active=False)
    get_user_model().objects.filter(pk=bob.user.pk).update(is_active=False)
    no_token = make_actor(user=phone.user)  # registered without a push token
    phone.push(customer("Shared", team=str(team.pk)))
    stats = wakeups_send(only_outbox_row().pk)
    assert stats is not None and stats.devices == 0
    assert fcm.messages == []
    assert Device.objects.get(pk=no_token.device_id).last_push_at is None


def test_a_task_delivered_twice_sends_once(fcm, scene, eager):
    phone, tablet, bob, carol, team, tokens = scene
    phone.push(customer("Mine"))
    row = only_outbox_row()
    assert wakeups_send(row.pk) is not None
    assert wakeups_send(row.pk) is None  # done: the row is gone
    assert len(fcm.sent_to(tokens["tablet"])) == 1


def test_a_claimed_row_is_not_sent_by_a_second_task(fcm, scene):
    from django.utils import timezone

    phone, *_ = scene
    phone.push(customer("Mine"))
    row = only_outbox_row()
    PushOutbox.objects.filter(pk=row.pk).update(
        claimed_until=timezone.now() + timezone.timedelta(minutes=1)
    )
    assert wakeups_send(row.pk) is None
    assert fcm.messages == []


def test_wakeups_are_recorded_in_the_write_and_sent_after_commit(
    scene, django_capture_on_commit_callbacks
):
    phone, *_ = scene
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        phone.push(customer("Mine"))
    assert PushOutbox.objects.count() == 1
    assert len(callbacks) == 1


def test_a_rolled_back_write_records_and_sends_nothing(scene, django_capture_on_commit_callbacks):
    phone, *_ = scene

    class Abort(Exception):
        pass

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        with pytest.raises(Abort), transaction.atomic():
            mutations_apply(user=phone.user, mutations=[customer("never")])
            assert PushOutbox.objects.count() == 1
            raise Abort
    assert not PushOutbox.objects.exists()
    assert callbacks == []


def test_unregistered_token_is_deactivated_for_good(fcm, scene, eager):
    phone, tablet, bob, carol, team, tokens = scene
    fcm.answer(tokens["bob"], UNREGISTERED)
    phone.push(customer("Shared", team=str(team.pk)))
    wakeups_send(only_outbox_row().pk)
    gone = Device.objects.get(pk=bob.device_id)
    assert gone.push_active is False and gone.last_push_outcome == "unregistered"
    assert counters()["unregistered"] == 1
    # The next change does not try it again.
    phone.push(customer("Again", team=str(team.pk)))
    wakeups_send(only_outbox_row().pk)
    assert len(fcm.sent_to(tokens["bob"])) == 1
    # A new token from the app turns it back on.
    with_token(bob)
    assert Device.objects.get(pk=bob.device_id).push_active is True


def test_temporary_failures_retry_only_the_failed_tokens(fcm, scene, eager):
    phone, tablet, bob, carol, team, tokens = scene
    fcm.answer(tokens["bob"], QUOTA)
    phone.push(customer("Shared", team=str(team.pk)))
    wakeups_send(only_outbox_row().pk)
    assert len(fcm.sent_to(tokens["bob"])) == 2  # refused once, then sent on the retry
    assert len(fcm.sent_to(tokens["tablet"])) == 1  # not sent again
    assert Device.objects.get(pk=bob.device_id).last_push_outcome == "sent"


def test_retries_stop_after_max_attempts(fcm, scene, eager, settings):
    settings.PUSH_MAX_ATTEMPTS = 3
    phone, tablet, bob, carol, team, tokens = scene
    fcm.answer(tokens["bob"], *[QUOTA] * 10)
    phone.push(customer("Shared", team=str(team.pk)))
    wakeups_send(only_outbox_row().pk)
    assert len(fcm.sent_to(tokens["bob"])) == 3
    device = Device.objects.get(pk=bob.device_id)
    assert device.last_push_outcome == "failed" and device.push_active is True


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 12])
def test_retry_delay_backs_off_with_jitter_and_honours_retry_after(attempt):
    top = min(300.0, 2.0 * 2**attempt)
    delays = [retry_delay(attempt, None) for _ in range(200)]
    assert all(top / 2 <= d <= top for d in delays)
    assert len(set(delays)) > 1  # jittered
    assert retry_delay(attempt, 1000.0) == 1000.0


def test_a_resolved_conflict_tells_the_device_that_raised_it(fcm, scene, eager):
    phone, tablet, bob, carol, team, tokens = scene
    c = customer("Acme", phone="1")
    phone.push(c)
    phone.push(update(CUSTOMER, c["id"], 1, phone="2"))
    raised = phone.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    PushOutbox.objects.all().delete()
    response = tablet.client.post(
        f"/api/v1/sync/conflicts/{raised['conflict_id']}/resolve/",
        {"choice": "client", "expected_version": 2},
        format="json",
    )
    assert response.status_code == 200, response.content
    row = only_outbox_row()
    assert row.origin_device_id == tablet.device_id
    assert row.conflict_id == uuid.UUID(raised["conflict_id"])
    wakeups_send(row.pk)
    kinds = sorted(m["data"]["type"] for m in fcm.sent_to(tokens["phone"]))
    assert kinds == ["conflict_resolved", "sync"]
    resolved = next(
        m for m in fcm.sent_to(tokens["phone"]) if m["data"]["type"] == "conflict_resolved"
    )
    assert resolved["data"]["conflict_id"] == raised["conflict_id"]
    assert fcm.sent_to(tokens["tablet"]) == []  # it resolved it itself


def test_joining_a_team_wakes_the_new_members_devices(fcm, scene, make_actor, eager):
    phone, *_ = scene
    newcomer = make_actor()
    token = with_token(newcomer)
    PushOutbox.objects.all().delete()
    team_of(newcomer.user)
    wakeups_send(only_outbox_row().pk)
    assert [m["data"]["type"] for m in fcm.sent_to(token)] == ["sync"]


@pytest.mark.postgres
@pytest.mark.parametrize("members", [10, 1000])
def test_fan_out_queries_do_not_grow_with_the_devices_woken(
    scene, members, django_assert_max_num_queries, settings, eager
):
    settings.PUSH_BACKEND = "console"
    phone, tablet, bob, carol, team, tokens = scene
    from devices import push
    from sync.models import ChannelGrant

    push._configured.cache_clear()
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"m{members}-{i}") for i in range(members)]
    )
    ChannelGrant.objects.bulk_create(
        [ChannelGrant(user=u, channel=f"team:{team.pk}") for u in users]
    )
    Device.objects.bulk_create(
        [
            Device(
                id=uuid.uuid4(),
                user=u,
                platform="android",
                push_token=f"t-{u.pk}",
                push_active=True,
            )
            for u in users
        ]
    )
    phone.push(customer("Shared", team=str(team.pk)))
    row = only_outbox_row()
    # The fan-out, sending at once (the leading edge).
    with django_assert_max_num_queries(10):
        stats = wakeups_send(row.pk)
    assert stats is not None and stats.devices == members + 2 and stats.sent == members + 2
    assert Device.objects.filter(last_push_outcome="sent").count() == members + 2


def test_device_admin_shows_last_push_and_counters(fcm, scene, eager):
    from django.test import Client

    phone, tablet, bob, carol, team, tokens = scene
    phone.push(customer("Shared", team=str(team.pk)))
    wakeups_send(only_outbox_row().pk)
    staff = get_user_model().objects.create_superuser("ops", password="ops-pass-1234")
    client = Client(HTTP_X_FORWARDED_PROTO="https")
    client.force_login(staff)
    html = client.get("/admin/devices/device/").content.decode()
    assert 'id="push-counters"' in html and "sent <strong>2</strong>" in html
    assert '<td class="field-last_push_outcome">sent</td>' in html
    assert "Wake-ups waiting in the outbox: <strong>0</strong>" in html


@pytest.mark.redis
def test_the_first_change_is_sent_at_once_and_the_rest_of_the_window_held_for_its_flush(
    fcm, scene, settings
):
    """Without a worker, a scheduled flush waits in the broker: the first
    change wakes the devices at once, the next ones send nothing until the
    flush runs, which sends one message per device with the newest change."""
    from sync.notify.wakeups import wakeups_flush

    settings.PUSH_COALESCE_SECONDS = 1
    assert not app.conf.task_always_eager  # the broker holds the scheduled flush
    phone, tablet, bob, carol, team, tokens = scene
    c = customer("Busy", team=str(team.pk))
    phone.push(c)
    first = wakeups_send(only_outbox_row().pk)
    assert first is not None and (first.sent, first.scheduled) == (2, 0)
    created = Change.objects.order_by("-seq").values_list("seq", flat=True).first()
    for name in ("tablet", "bob"):
        assert [m["data"] for m in fcm.sent_to(tokens[name])] == [
            {"type": "sync", "cursor": str(created)}
        ]
    for version in range(1, 6):
        phone.push(update(CUSTOMER, c["id"], version, name=f"n{version}"))
        again = wakeups_send(only_outbox_row().pk)
        # The first held change schedules the window's flush; the others join it.
        assert again is not None and again.devices == 2 and again.sent == 0
        assert again.scheduled == (2 if version == 1 else 0)
    assert len(fcm.messages) == 2
    last = Change.objects.order_by("-seq").values_list("seq", flat=True).first()
    report = wakeups_flush([str(tablet.device_id), str(bob.device_id)])
    assert sorted(report.sent) == sorted([tablet.device_id, bob.device_id])
    for name in ("tablet", "bob"):
        assert [m["data"]["cursor"] for m in fcm.sent_to(tokens[name])] == [
            str(created),
            str(last),
        ]
    assert counters()["coalesced"] == 10
    # A flush with nothing pending sends nothing.
    assert wakeups_flush([str(tablet.device_id)]).sent == []
    # The flush's message opened the next window: a change now is held for it...
    phone.push(update(CUSTOMER, c["id"], 6, name="later"))
    held = wakeups_send(only_outbox_row().pk)
    assert held is not None and (held.sent, held.scheduled) == (0, 2)
    # ...and once the device has been quiet for a window, a change is sent at once.
    wakeups_flush([str(tablet.device_id), str(bob.device_id)])
    time.sleep(1.2)
    phone.push(update(CUSTOMER, c["id"], 7, name="quiet again"))
    fresh = wakeups_send(only_outbox_row().pk)
    assert fresh is not None and (fresh.sent, fresh.scheduled) == (2, 0)
    assert len(fcm.sent_to(tokens["tablet"])) == 4


def test_push_outcomes_are_prometheus_counters_at_metrics(fcm, scene, eager, settings):
    from django.test import Client
    from prometheus_client.parser import text_string_to_metric_families

    settings.METRICS_TOKEN = "metrics-token"
    phone, tablet, bob, carol, team, tokens = scene
    fcm.answer(tokens["bob"], UNREGISTERED)
    phone.push(customer("Shared", team=str(team.pk)))
    wakeups_send(only_outbox_row().pk)  # tablet: sent; bob: unregistered
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token")
    [family] = [
        f
        for f in text_string_to_metric_families(response.content.decode())
        if f.name == "sync_push_notifications"
    ]
    assert family.type == "counter"
    assert {s.labels["outcome"]: s.value for s in family.samples} == {
        "sent": 1,
        "unregistered": 1,
        "retrying": 0,
        "failed": 0,
        "coalesced": 0,
    }
