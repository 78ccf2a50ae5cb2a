"""The whole Web Push chain for the web app, in Chromium: the page subscribes
with the server's VAPID key and registers the subscription as its device's
push token; a change by another device makes the server send an encrypted,
signed Web Push to the subscription's push service; the push service hands
it to the browser's service worker, and the page syncs.

Two parts are stood in for, because headless Chromium has no push service
(`pushManager.subscribe` fails there, and nothing on this machine reaches
Google's): `PushManager.subscribe` answers with a subscription whose
endpoint is a local push service (tests/devices/fake_webpush.py) and whose
keys the test holds; that service decrypts what the server sent with those
keys, as the browser would, and delivers the plaintext to the service worker
through the DevTools protocol (`ServiceWorker.deliverPushMessage`). The
app's code, the device endpoint, the wake-up pipeline, the sender's
encryption and signature and the service worker are the real ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from config.celery import app as celery_app
from devices import push
from devices.models import Device
from tests.browser.test_webapp import PASSWORD, seed  # noqa: F401
from tests.browser.test_webapp_tabs_push import (  # noqa: F401  (fixtures)
    another_device_edits,
    built_webapp,
    log_in,
    new_context,
    sw_registration,
    syncs,
    until,
)
from tests.devices.fake_webpush import FakePushService, check_vapid, running, vapid_key_pair

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.browser,
]

STUB = """
(() => {
  const subscription = %s;
  let current = null;
  const handle = {
    endpoint: subscription.endpoint,
    expirationTime: null,
    toJSON: () => subscription,
    unsubscribe: async () => { current = null; return true; },
  };
  PushManager.prototype.getSubscription = async function () { return current; };
  PushManager.prototype.subscribe = async function (options) {
    window.pushSubscribedWith = {
      userVisibleOnly: options.userVisibleOnly,
      applicationServerKey: String(options.applicationServerKey),
    };
    current = handle;
    return handle;
  };
})();
"""


@pytest.fixture
def web_push(settings: Any) -> Iterator[tuple[FakePushService, str]]:
    """The server sends Web Push (and only that) to a local push service."""
    pem, public = vapid_key_pair()
    settings.WEBPUSH_VAPID_PRIVATE_KEY = pem
    settings.WEBPUSH_ALLOW_HTTP = True
    settings.WEBPUSH_ENDPOINT_HOSTS = ["127.0.0.1"]
    settings.PUSH_BACKEND = "webpush"
    push._configured.cache_clear()
    # The wake-up task runs in the writer's thread (no worker in these tests).
    celery_app.conf.task_always_eager = True
    try:
        for service in running():
            yield service, public
    finally:
        celery_app.conf.task_always_eager = False
        push._configured.cache_clear()


def test_a_change_elsewhere_reaches_the_page_through_web_push(
    new_context: Callable[[], Any],  # noqa: F811
    live_server: Any,
    web_push: tuple[FakePushService, str],
) -> None:
    service, public = web_push
    user = get_user_model().objects.create_user("webpushy", password=PASSWORD)
    ids = seed(user)
    sub, keys = service.subscription("page")
    context = new_context()
    context.grant_permissions(["notifications"], origin=live_server.url)
    context.add_init_script(STUB % json.dumps(sub))
    page = context.new_page()

    # --- the page subscribes and registers its subscription ---------------------------
    log_in(page, "webpushy", "/app/?poll=off")  # only a push can make it sync again
    page.locator("#push", has_text="Wake-ups: on").wait_for()
    assert page.evaluate("window.pushSubscribedWith") == {
        "userVisibleOnly": True,
        "applicationServerKey": public,  # the key the server put in the page
    }
    [device] = Device.objects.filter(user=user)
    assert device.platform == "web" and device.push_active
    assert json.loads(device.push_token) == {"endpoint": sub["endpoint"], "keys": sub["keys"]}
    until(page, "navigator.serviceWorker.controller !== null")
    cdp = context.new_cdp_session(page)
    registration = sw_registration(cdp, page, f"{live_server.url}/app/")
    ran_before = len(syncs(page))

    # --- another device changes a work order: the server pushes ------------------------
    another_device_edits(user, ids["boiler"], title="Boiler service (pushed)")
    [got] = service.wait_for("page")
    check_vapid(got.headers["authorization"], public_key=public, audience=service.url)
    message = json.loads(keys.decrypt(got.body))
    assert message["type"] == "sync" and message["cursor"]
    page.wait_for_timeout(500)
    assert len(syncs(page)) == ran_before  # it has not synced by itself

    # --- the push service delivers it to the browser ------------------------------------
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": live_server.url,
            "registrationId": registration,
            "data": keys.decrypt(got.body).decode(),
        },
    )
    page.locator("#orders li.order", has_text="Boiler service (pushed)").wait_for()
    new = syncs(page)[ran_before:]
    assert {s["reason"] for s in new} == {"push"}, new
