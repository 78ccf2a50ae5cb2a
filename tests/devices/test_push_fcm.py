"""The FCM backend drives firebase-admin's real messaging code down to HTTP,
against a local fake of Google's token and send endpoints."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from firebase_admin import messaging

from devices.push import ConsoleBackend, FcmBackend, Target
from tests.devices.fake_fcm import INVALID_TOKEN, QUOTA, UNAVAILABLE, UNREGISTERED, quota, running

DATA = {"type": "sync", "cursor": "c-42"}


@pytest.fixture
def fcm():
    yield from running()


@pytest.fixture
def backend(fcm, tmp_path):
    key = tmp_path / "service-account.json"
    key.write_text(json.dumps(fcm.service_account()))
    sender = FcmBackend(credentials=str(key), endpoint=fcm.url)
    yield sender
    sender.close()


def target(platform: str = "android", token: str | None = None) -> Target:
    return Target(uuid.uuid4(), token or f"tok-{uuid.uuid4()}", platform)


def test_success_sends_the_data_message(fcm, backend):
    t = target()
    report = backend.send([t], DATA)
    assert report.sent == [t.device_id]
    assert report.unregistered == report.temporary == report.failed == []
    [message] = fcm.sent_to(t.token)
    assert message["data"] == {"type": "sync", "cursor": "c-42"}
    assert fcm.token_requests >= 1  # the OAuth exchange went to the fake too


def test_android_apns_and_webpush_payloads(fcm, backend):
    android, ios, web = target("android"), target("ios"), target("web")
    backend.send([android, ios, web], DATA)
    [a] = fcm.sent_to(android.token)
    assert a["android"] == {"priority": "high", "collapse_key": "sync"}
    assert "apns" not in a and "webpush" not in a
    [i] = fcm.sent_to(ios.token)
    assert i["apns"]["payload"] == {"aps": {"content-available": 1}}
    assert i["apns"]["headers"] == {
        "apns-push-type": "background",
        "apns-priority": "5",
        "apns-collapse-id": "sync",
    }
    assert "android" not in i
    [w] = fcm.sent_to(web.token)
    assert w["webpush"]["headers"] == {"Urgency": "high", "Topic": "sync"}
    for message in (a, i, w):
        assert message["data"] == DATA


def test_unregistered_and_invalid_tokens_are_reported_for_deactivation(fcm, backend):
    gone, invalid, fine = target(), target(), target()
    fcm.answer(gone.token, UNREGISTERED)
    fcm.answer(invalid.token, INVALID_TOKEN)
    report = backend.send([gone, invalid, fine], DATA)
    assert sorted(report.unregistered) == sorted([gone.device_id, invalid.device_id])
    assert report.sent == [fine.device_id]


def test_unavailable_is_retried_inside_firebase_admin_then_succeeds(fcm, backend):
    t = target()
    fcm.answer(t.token, UNAVAILABLE)
    report = backend.send([t], DATA)
    assert report.sent == [t.device_id]
    assert len(fcm.sent_to(t.token)) == 2


def test_quota_exceeded_is_temporary(fcm, backend):
    busy, fine = target(), target()
    fcm.answer(busy.token, QUOTA)
    report = backend.send([busy, fine], DATA)
    assert report.temporary == [busy.device_id] and report.sent == [fine.device_id]
    assert report.retry_after is None
    # Sent again later (the task's retry), the fake now answers with success.
    assert backend.send([busy], DATA).sent == [busy.device_id]


def test_retry_after_is_honoured_inside_firebase_admin(fcm, backend):
    t = target()
    fcm.answer(t.token, quota("1"))
    started = time.monotonic()
    assert backend.send([t], DATA).sent == [t.device_id]
    assert time.monotonic() - started >= 1
    assert len(fcm.sent_to(t.token)) == 2


def test_retry_after_of_an_exhausted_quota_is_reported(fcm, backend):
    t = target()
    # firebase-admin's own retries (four, each after Retry-After) run out.
    fcm.answer(t.token, *[quota("1")] * 5)
    report = backend.send([t], DATA)
    assert report.temporary == [t.device_id] and report.retry_after == 1.0


def test_1200_tokens_go_in_chunks_of_500(fcm, backend, monkeypatch):
    sizes = []
    real = messaging.send_each

    def spy(messages, dry_run=False, app=None):
        sizes.append(len(messages))
        return real(messages, dry_run=dry_run, app=app)

    monkeypatch.setattr(messaging, "send_each", spy)
    targets = [target() for _ in range(1200)]
    report = backend.send(targets, DATA)
    assert sizes == [500, 500, 200]
    assert len(report.sent) == 1200 and len(fcm.messages) == 1200


def test_console_backend_logs_the_devices_it_would_wake(caplog):
    t = target("ios")
    with caplog.at_level("INFO", logger="devices.push"):
        report = ConsoleBackend().send([t], DATA)
    assert report.sent == [t.device_id]
    assert str(t.device_id) in caplog.text and "'type': 'sync'" in caplog.text
