from __future__ import annotations

import json

import pytest

from devices import push
from tests.devices.fake_fcm import running


@pytest.fixture
def fcm(settings, tmp_path):
    """The real FCM backend (firebase-admin) against a local fake FCM server."""
    key = tmp_path / "service-account.json"
    for fake in running():
        key.write_text(json.dumps(fake.service_account()))
        settings.PUSH_BACKEND = "fcm"
        settings.FCM_CREDENTIALS = str(key)
        settings.FCM_ENDPOINT = fake.url
        push._configured.cache_clear()
        try:
            yield fake
        finally:
            sender = push.backend()
            if isinstance(sender, push.FcmBackend):
                sender.close()
            push._configured.cache_clear()
