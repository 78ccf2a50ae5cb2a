"""What an operator uses: the health check, manual compaction, the push log."""

from __future__ import annotations

import logging
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


def test_each_push_is_logged_with_its_outcome(alice, caplog):
    with caplog.at_level(logging.INFO, logger="sync.views"):
        alice.push(customer("ok"), customer(""))
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("push "))
    assert f"user={alice.user.pk}" in line and f"device={alice.device_id}" in line
    assert "mutations=2 applied=1 rejected=1" in line
