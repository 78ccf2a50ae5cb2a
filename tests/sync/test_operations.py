"""What an operator uses: the health and readiness checks, manual compaction."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from sync.models import Change
from tests.factories import customer, update

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"


def test_health_check_reports_database_up_without_authentication(settings):
    response = Client().get("/healthz")  # plain HTTP: exempt from the HTTPS redirect
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert ("cache" in body) == bool(settings.REDIS_URL)


@pytest.mark.redis
def test_health_check_covers_redis_when_configured():
    body = Client().get("/healthz").json()
    assert body["cache"] == "ok"


def test_feed_compact_command(alice):
    c = customer()
    alice.push(c, update(CUSTOMER, c["id"], 1, name="2"))
    out = StringIO()
    call_command("feed_compact", stdout=out)
    assert "Removed 1 superseded changes" in out.getvalue()
    assert Change.objects.filter(object_id=c["id"]).count() == 1


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung broker)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def test_readyz_is_503_naming_the_broker_when_it_is_unreachable(settings, closed_port):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port}/0"
    response = Client().get("/readyz")  # plain HTTP: exempt from the HTTPS redirect
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "cache": "ok", "broker": "down"},
    }


def test_readyz_gives_up_on_a_broker_that_does_not_answer(settings, silent_server):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent_server}/0"
    settings.READYZ_TIMEOUT_SECONDS = 0.5
    started = time.monotonic()
    response = Client().get("/readyz")
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "timeout"


def test_readyz_skips_the_broker_when_celery_runs_in_the_web_process(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # would be down: not asked
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "broker": "skipped"}


@pytest.mark.redis
def test_readyz_is_200_when_database_cache_and_broker_answer(settings):
    assert not settings.CELERY_TASK_ALWAYS_EAGER  # a real broker (Redis) is configured
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "broker": "ok"},
    }


def test_rotating_secret_key_keeps_cursors_valid_while_the_old_key_is_a_fallback(alice, settings):
    alice.push(customer("A"))
    _, cursor = alice.pull_all()
    old = settings.SECRET_KEY
    settings.SECRET_KEY = "rotated-" + "k" * 50
    # Without the old key, the device is told to start an initial sync.
    assert alice.pull(expect=400, cursor=cursor)["code"] == "bad_cursor"
    settings.SECRET_KEY_FALLBACKS = [old]
    page = alice.pull(cursor=cursor)
    # What it gets now is signed with the new key: valid once the fallback goes.
    settings.SECRET_KEY_FALLBACKS = []
    alice.pull(cursor=page["cursor"])


def test_production_settings_pass_the_deploy_check(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = "x7#Kp2!vQ9zR4mW8nT1yB6cJ3hF5gD0sL-aE_uI+oP=" * 2
    settings.SECRET_KEY_FALLBACKS = []
    # A shared cache, as production has (the check reads the setting; nothing connects).
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/1",
        }
    }
    out = StringIO()
    call_command("check", "--deploy", "--fail-level", "WARNING", stdout=out, stderr=out)
    assert "no issues" in out.getvalue()
