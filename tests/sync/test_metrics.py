"""/metrics: who may read it, and the sync engine's counters in it."""

from __future__ import annotations

import ipaddress

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from sync.engine.conflicts import conflict_dismiss, conflict_resolve
from tests.factories import customer, update

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"
TOKEN = "metrics-token-0123456789"


def scrape(**headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def token(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


# --- who may read it ----------------------------------------------------------------------


def test_metrics_are_refused_when_nothing_allows_the_caller(settings):
    settings.DEBUG = False
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []
    response = Client().get("/metrics")  # plain HTTP: exempt from the HTTPS redirect
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert b"sync_" not in response.content


@pytest.mark.parametrize(
    "header",
    ["", "Bearer wrong-token", f"Token {TOKEN}", f"Bearer {TOKEN}x", "Bearer"],
    ids=["none", "wrong", "other-scheme", "longer", "empty"],
)
def test_metrics_are_refused_without_the_right_bearer_token(token, header):
    response = Client().get("/metrics", HTTP_AUTHORIZATION=header)
    assert response.status_code == 403


def test_metrics_are_served_with_the_bearer_token(token):
    samples = scrape()
    assert ("sync_pull_pages_total", ()) in samples
    # django-prometheus' request and database metrics are there too.
    names = {name for name, _ in samples}
    assert "django_http_requests_total_by_method_total" in names
    assert "django_db_execute_total" in names


def test_metrics_are_served_to_an_allowed_address_only(settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.0.0.0/8")]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.168.1.9").get("/metrics").status_code == 403
    # A forwarded address is the client's own claim: never trusted here.
    spoofed = Client(REMOTE_ADDR="192.168.1.9").get("/metrics", HTTP_X_FORWARDED_FOR="10.1.2.3")
    assert spoofed.status_code == 403


def test_metrics_are_open_in_debug(settings):
    settings.DEBUG = True
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 200


# --- what they count ----------------------------------------------------------------------


def test_pulls_count_pages_and_changes_sent(alice, token):
    alice.push(customer("A"), customer("B"), customer("C"))
    before = scrape()
    changes, _ = alice.pull_all(limit=2)  # a page of 2, then a page of 1
    after = scrape()
    assert len(changes) == 3
    assert value(after, "sync_pull_pages_total") - value(before, "sync_pull_pages_total") == 2
    assert value(after, "sync_pull_changes_total") - value(before, "sync_pull_changes_total") == 3


def test_pushes_count_mutations_by_status(alice, token):
    before = scrape()
    alice.push(customer("ok"), customer("also"), customer(""))
    after = scrape()

    def delta(status: str) -> float:
        name = "sync_push_mutations_total"
        return value(after, name, status=status) - value(before, name, status=status)

    assert (delta("applied"), delta("rejected"), delta("conflict")) == (2, 1, 0)


def test_conflicts_count_opened_superseded_resolved_and_dismissed(
    alice, token, admin_user, django_capture_on_commit_callbacks
):
    def opened(c: dict, phone: str) -> str:
        result = alice.push_one(update(CUSTOMER, c["id"], 1, phone=phone))
        assert result["status"] == "conflict"
        return result["conflict_id"]

    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        first, second = customer("A", phone="1"), customer("B", phone="1")
        alice.push(first, second)
        alice.push(update(CUSTOMER, first["id"], 1, phone="2"))
        alice.push(update(CUSTOMER, second["id"], 1, phone="2"))
        opened(first, "3")
        superseding = opened(first, "4")  # the same fields again: replaces the first
        to_dismiss = opened(second, "5")
        conflict_resolve(
            conflict_id=superseding, user=alice.user, choice="server", expected_version=2
        )
        conflict_dismiss(conflict_id=to_dismiss, user=admin_user)
    after = scrape()

    def delta(event: str) -> float:
        name = "sync_conflicts_total"
        return value(after, name, event=event) - value(before, name, event=event)

    assert {e: delta(e) for e in ("opened", "superseded", "resolved", "dismissed")} == {
        "opened": 3,
        "superseded": 1,
        "resolved": 1,
        "dismissed": 1,
    }


def test_a_rolled_back_conflict_is_not_counted(alice, token, django_capture_on_commit_callbacks):
    c = customer("A", phone="1")
    alice.push(c)
    alice.push(update(CUSTOMER, c["id"], 1, phone="2"))
    before = scrape()
    with django_capture_on_commit_callbacks(execute=False):
        result = alice.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    assert result["status"] == "conflict"  # raised, but its commit callbacks never ran
    after = scrape()
    assert value(after, "sync_conflicts_total", event="opened") == value(
        before, "sync_conflicts_total", event="opened"
    )
