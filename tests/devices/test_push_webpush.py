"""Web Push to browsers (devices/webpush.py): a device registers its push
subscription, the server sends each wake-up encrypted and VAPID-signed to
the push service the subscription names (a local one here,
tests/devices/fake_webpush.py), and sorts the push service's answers.

What arrives is decrypted and its signature checked by code written from the
RFCs in the fake, not by the library that sent it.
"""

from __future__ import annotations

import json
import uuid

import pytest

from devices import push
from devices.models import Device, PushOutbox
from devices.push import Target
from devices.webpush import WebPushBackend, public_key
from sync.notify.wakeups import wakeups_send
from tests.devices.fake_webpush import check_vapid, running, vapid_key_pair
from tests.factories import customer, team_of

DATA = {"type": "sync", "cursor": "c-42"}


@pytest.fixture
def vapid(settings):
    pem, public = vapid_key_pair()
    settings.WEBPUSH_VAPID_PRIVATE_KEY = pem
    settings.WEBPUSH_VAPID_SUBJECT = "mailto:ops@example.com"
    return public


@pytest.fixture
def service(settings, vapid):
    """A local push service the settings allow (http, 127.0.0.1)."""
    settings.WEBPUSH_ALLOW_HTTP = True
    settings.WEBPUSH_ENDPOINT_HOSTS = ["127.0.0.1"]
    yield from running()


def target(service, name: str, platform: str = "web"):
    sub, keys = service.subscription(name)
    return Target(uuid.uuid4(), json.dumps(sub), platform), keys


# --- sending --------------------------------------------------------------------------------


def test_a_wake_up_arrives_encrypted_for_the_browser_and_signed_by_the_server(service, vapid):
    t, keys = target(service, "a")
    report = WebPushBackend().send([t], DATA)
    assert report.sent == [t.device_id]
    assert report.unregistered == report.temporary == report.failed == []
    [got] = service.to("a")
    assert got.headers["content-encoding"] == "aes128gcm"
    assert json.loads(keys.decrypt(got.body)) == DATA
    claims = check_vapid(got.headers["authorization"], public_key=vapid, audience=service.url)
    assert claims["sub"] == "mailto:ops@example.com"
    assert got.headers["urgency"] == "high" and got.headers["topic"] == "sync"
    assert got.headers["ttl"] == "3600"
    assert vapid not in got.body.decode("latin-1")  # nothing readable on the wire
    assert b"c-42" not in got.body


def test_another_browsers_keys_cannot_read_it(service):
    t, _ = target(service, "a")
    _, stranger = service.subscription("b")
    WebPushBackend().send([t], DATA)
    [got] = service.to("a")
    with pytest.raises(Exception):  # noqa: B017,PT011 - AES-GCM refuses: InvalidTag
        stranger.decrypt(got.body)


@pytest.mark.parametrize(
    ("status", "headers", "outcome", "retry_after"),
    [
        (410, {}, "unregistered", None),  # unsubscribed or expired
        (404, {}, "unregistered", None),
        (429, {"Retry-After": "30"}, "temporary", 30.0),
        (503, {}, "temporary", None),
        (500, {}, "temporary", None),
        (400, {}, "failed", None),
        (403, {}, "failed", None),  # our key or claims: not the device's fault
        (413, {}, "failed", None),
    ],
)
def test_the_push_services_answers_are_sorted(service, status, headers, outcome, retry_after):
    t, _ = target(service, "a")
    service.answer("a", (status, headers))
    report = WebPushBackend().send([t], DATA)
    assert getattr(report, outcome) == [t.device_id]
    assert len(report.sent + report.unregistered + report.temporary + report.failed) == 1
    assert report.retry_after == retry_after


def test_a_push_service_that_is_down_is_tried_again_later(service, settings):
    t, _ = target(service, "a")
    service.stop()  # nothing listens on its port any more
    report = WebPushBackend().send([t], DATA)
    assert report.temporary == [t.device_id]


def test_many_browsers_each_get_their_own_message(service):
    pairs = [target(service, f"d{i}") for i in range(20)]
    service.answer("d7", (410, {}))
    report = WebPushBackend().send([t for t, _ in pairs], DATA)
    assert report.unregistered == [pairs[7][0].device_id]
    assert sorted(map(str, report.sent)) == sorted(
        str(t.device_id) for i, (t, _) in enumerate(pairs) if i != 7
    )
    for i, (_, keys) in enumerate(pairs):
        if i != 7:
            [got] = service.to(f"d{i}")
            assert json.loads(keys.decrypt(got.body)) == DATA


def test_without_a_key_nothing_is_sent_and_it_says_why(service, settings, caplog):
    t, _ = target(service, "a")
    settings.WEBPUSH_VAPID_PRIVATE_KEY = ""
    report = WebPushBackend().send([t], DATA)
    assert report.failed == [t.device_id] and service.received == []
    assert "WEBPUSH_VAPID_PRIVATE_KEY is not set" in caplog.text


def test_an_unreadable_key_fails_the_sends_and_the_check(service, settings, caplog):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    t, _ = target(service, "a")
    settings.WEBPUSH_VAPID_PRIVATE_KEY = "not-a-key"
    report = WebPushBackend().send([t], DATA)
    assert report.failed == [t.device_id] and service.received == []
    assert "cannot be read" in caplog.text
    with pytest.raises(SystemCheckError, match="sync.E006"):
        call_command("check")


def test_a_subscription_to_a_service_since_taken_off_the_list_is_dropped(service, settings):
    t, _ = target(service, "a")
    settings.WEBPUSH_ENDPOINT_HOSTS = ["fcm.googleapis.com"]
    report = WebPushBackend().send([t], DATA)
    assert report.unregistered == [t.device_id] and service.received == []


def test_the_key_may_be_a_pem_file_or_the_raw_key(service, settings, tmp_path, vapid):
    pem = settings.WEBPUSH_VAPID_PRIVATE_KEY
    path = tmp_path / "private_key.pem"
    path.write_text(pem)
    settings.WEBPUSH_VAPID_PRIVATE_KEY = str(path)
    assert public_key() == vapid
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(pem.encode(), password=None)
    raw = private.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    import base64

    settings.WEBPUSH_VAPID_PRIVATE_KEY = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert public_key() == vapid
    t, keys = target(service, "a")
    assert WebPushBackend().send([t], DATA).sent == [t.device_id]
    check_vapid(service.to("a")[0].headers["authorization"], public_key=vapid, audience=service.url)


def test_the_router_sends_subscriptions_by_web_push_and_tokens_by_fcm(
    service, fcm, settings, tmp_path
):
    web, keys = target(service, "a")
    android = Target(uuid.uuid4(), "fcm-token-1", "android")
    report = push.backend().send([web, android], DATA)
    assert sorted(map(str, report.sent)) == sorted([str(web.device_id), str(android.device_id)])
    assert json.loads(keys.decrypt(service.to("a")[0].body)) == DATA
    assert [m["data"] for m in fcm.sent_to("fcm-token-1")] == [DATA]
    assert fcm.sent_to(web.token) == []


def test_push_backend_webpush_serves_browsers_only(service, settings, caplog):
    settings.PUSH_BACKEND = "webpush"
    push._configured.cache_clear()
    try:
        web, _ = target(service, "a")
        android = Target(uuid.uuid4(), "fcm-token-1", "android")
        report = push.backend().send([web, android], DATA)
        assert report.sent == [web.device_id] and report.failed == [android.device_id]
        assert "PUSH_BACKEND is webpush" in caplog.text
    finally:
        push._configured.cache_clear()


def test_the_console_backend_sends_nothing_anywhere(service, settings):
    settings.PUSH_BACKEND = "console"
    push._configured.cache_clear()
    web, _ = target(service, "a")
    assert push.backend().send([web], DATA).sent == [web.device_id]
    assert service.received == []


# --- registering ------------------------------------------------------------------------------

pytest_db = pytest.mark.django_db


@pytest_db
def test_a_browser_registers_its_subscription_which_is_stored_compact(service, make_actor):
    actor = make_actor()
    sub, _ = service.subscription("a")
    response = actor.client.patch(
        f"/api/v1/devices/{actor.device_id}/", {"push_token": json.dumps(sub)}, format="json"
    )
    assert response.status_code == 200, response.content
    stored = Device.objects.get(pk=actor.device_id)
    assert stored.push_active is True
    assert json.loads(stored.push_token) == {"endpoint": sub["endpoint"], "keys": sub["keys"]}
    assert " " not in stored.push_token  # compact: expirationTime and spaces dropped


def bad(**change):
    sub = {
        "endpoint": "https://fcm.googleapis.com/fcm/send/abc",
        "keys": {
            "p256dh": "B" + "A" * 86,  # 65 bytes starting 0x04 once decoded
            "auth": "A" * 22,
        },
    }
    for key, value in change.items():
        if key in ("p256dh", "auth"):
            sub["keys"][key] = value  # type: ignore[index]
        else:
            sub[key] = value
    return json.dumps(sub)


@pytest_db
@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("{not json", "not valid JSON"),
        ('{"endpoint": "https://fcm.googleapis.com/x"}', '"keys"'),
        ('{"endpoint": [1], "keys": {}}', '"keys"'),
        (bad(endpoint="http://fcm.googleapis.com/fcm/send/abc"), "https URL"),
        (bad(endpoint="https://intranet.example.com/push"), "not a push service"),
        (bad(endpoint="https://fcm.googleapis.com.evil.test/x"), "not a push service"),
        (bad(endpoint="https://u:p@fcm.googleapis.com/x"), "credentials"),
        (bad(p256dh="AAAA"), "keys.p256dh must be"),
        (bad(p256dh="!!!"), "keys.p256dh"),
        (bad(auth="A" * 40), "keys.auth must be 16 bytes"),
        (bad(auth=7), "keys.auth must be a URL-safe base64 string"),
    ],
)
def test_a_bad_subscription_is_refused_with_a_clear_error(vapid, make_actor, token, says):
    actor = make_actor()
    before = Device.objects.get(pk=actor.device_id).push_token
    response = actor.client.patch(
        f"/api/v1/devices/{actor.device_id}/", {"push_token": token}, format="json"
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "bad_push_token", body
    assert says in body["detail"], body
    assert Device.objects.get(pk=actor.device_id).push_token == before  # nothing written


@pytest_db
def test_a_well_formed_subscription_to_a_real_push_service_is_taken(vapid, make_actor):
    actor = make_actor()
    response = actor.client.patch(
        f"/api/v1/devices/{actor.device_id}/", {"push_token": bad()}, format="json"
    )
    assert response.status_code == 200, response.content


@pytest_db
def test_a_subscription_on_a_server_without_web_push_is_refused(make_actor, settings):
    settings.WEBPUSH_VAPID_PRIVATE_KEY = ""
    actor = make_actor()
    response = actor.client.post(
        "/api/v1/devices/",
        {"id": str(uuid.uuid4()), "platform": "web", "push_token": bad()},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "webpush_not_configured"
    # An FCM token (the Firebase JS SDK's) is still taken.
    response = actor.client.post(
        "/api/v1/devices/",
        {"id": str(uuid.uuid4()), "platform": "web", "push_token": "fcm-web-token"},
        format="json",
    )
    assert response.status_code == 201, response.content


@pytest_db
def test_the_public_key_is_given_to_the_app(vapid, make_actor, settings):
    actor = make_actor()
    response = actor.client.get("/api/v1/devices/webpush-key/")
    assert response.status_code == 200 and response.json() == {"public_key": vapid}
    settings.WEBPUSH_VAPID_PRIVATE_KEY = ""
    response = actor.client.get("/api/v1/devices/webpush-key/")
    assert response.status_code == 404 and response.json()["code"] == "webpush_not_configured"


@pytest_db
def test_the_web_app_page_carries_the_public_key(vapid, client, settings, tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text('<head><meta name="push-public-key" content="" /></head>')
    settings.WEBAPP_DIST = str(dist)
    page = client.get("/app/", secure=True).content.decode()
    assert f'<meta name="push-public-key" content="{vapid}" />' in page
    settings.WEBPUSH_VAPID_PRIVATE_KEY = ""
    assert (
        '<meta name="push-public-key" content="" />'
        in client.get("/app/", secure=True).content.decode()
    )


# --- through the wake-up pipeline ----------------------------------------------------------


@pytest_db
def test_a_write_wakes_a_browser_and_a_gone_subscription_is_switched_off(
    service, fcm, make_actor, settings
):
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        phone = make_actor()
        browser = make_actor(user=phone.user)
        bob = make_actor()
        team = team_of(phone.user, bob.user)
        sub, keys = service.subscription("browser")
        response = browser.client.patch(
            f"/api/v1/devices/{browser.device_id}/", {"push_token": json.dumps(sub)}, format="json"
        )
        assert response.status_code == 200
        bob.client.patch(
            f"/api/v1/devices/{bob.device_id}/", {"push_token": "bob-fcm"}, format="json"
        )
        PushOutbox.objects.all().delete()

        phone.push(customer("Shared", team=str(team.pk)))
        [row] = PushOutbox.objects.all()
        wakeups_send(row.pk)
        [got] = service.to("browser")
        message = json.loads(keys.decrypt(got.body))
        assert message == {"type": "sync", "cursor": str(row.seq)}
        assert [m["data"] for m in fcm.sent_to("bob-fcm")] == [message]
        assert Device.objects.get(pk=browser.device_id).last_push_outcome == "sent"

        # The browser unsubscribed: the push service says 410, the device is switched off.
        service.answer("browser", (410, {}))
        phone.push(customer("Again", team=str(team.pk)))
        [row] = PushOutbox.objects.all()
        wakeups_send(row.pk)
        gone = Device.objects.get(pk=browser.device_id)
        assert gone.push_active is False and gone.last_push_outcome == "unregistered"
    finally:
        app.conf.task_always_eager = False
