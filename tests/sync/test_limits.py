"""Every value and every page has a size limit (the probe: ten 9 MiB addresses
were applied, and one pull then returned 104 MB)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import models

from fieldwork.models import Customer
from sync.codecs import codec_for
from tests.factories import customer, mutation

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"


def test_a_9_mib_text_value_is_rejected_with_a_field_error(alice):
    huge = "x" * (9 * 1024 * 1024)
    result = alice.push_one(customer("Big", address=huge))
    assert result["status"] == "rejected"
    assert result["errors"]["address"] == [
        f"Ensure this value has at most 1000 characters (it has {len(huge)})."
    ]
    assert not Customer.objects.exists()


def test_text_at_the_limit_is_accepted(alice):
    assert alice.push_one(customer("Fits", address="y" * 1000))["status"] == "applied"


def test_discovery_shows_every_text_limit(alice):
    described = {m["model"]: m for m in alice.client.get("/api/v1/sync/models/").json()}
    assert described[CUSTOMER]["fields"]["address"]["max_length"] == 1000
    assert described["fieldwork.workorder"]["fields"]["description"]["max_length"] == 5000
    for entry in described.values():
        for name, field in entry["fields"].items():
            if field["type"] in ("string", "text"):
                assert isinstance(field.get("max_length"), int), (entry["model"], name)


def test_unbounded_text_and_json_fields_get_the_default_limits(settings):
    text = models.TextField(blank=True)
    text.set_attributes_from_name("notes")
    blob = models.JSONField(null=True)
    blob.set_attributes_from_name("extra")
    text_codec = codec_for(text, read_only=False)
    json_codec = codec_for(blob, read_only=False)
    assert text_codec.max_length == settings.SYNC_MAX_TEXT_CHARS
    assert json_codec.max_bytes == settings.SYNC_MAX_JSON_BYTES
    assert json_codec.describe()["max_bytes"] == settings.SYNC_MAX_JSON_BYTES
    with pytest.raises(ValidationError, match="at most"):
        text_codec.decode("z" * (settings.SYNC_MAX_TEXT_CHARS + 1))
    with pytest.raises(ValidationError, match="bytes as JSON"):
        json_codec.decode({"k": "v" * settings.SYNC_MAX_JSON_BYTES})
    assert json_codec.decode({"k": [1, 2, 3]}) == {"k": [1, 2, 3]}
    limited = codec_for(blob, read_only=False, limit=10)
    with pytest.raises(ValidationError):
        limited.decode({"long": "enough"})


def pull_everything(actor, **params) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        page = actor.pull(**({"cursor": cursor} if cursor else {}), **params)
        pages.append(page["changes"])
        cursor = page["cursor"]
        if not page["has_more"]:
            return pages


def test_a_page_stops_early_when_its_bytes_are_spent(alice, settings):
    alice.push(*[customer(f"c{i}", address="a" * 900) for i in range(20)])
    settings.SYNC_PULL_MAX_BYTES = 5_000  # about four of these customers
    pages = pull_everything(alice, limit=1000)
    assert len(pages) > 1
    assert all(1 <= len(page) <= 5 for page in pages)
    ids = [c["id"] for page in pages for c in page]
    assert len(ids) == len(set(ids)) == 20


def test_an_object_larger_than_the_budget_goes_out_alone(alice, settings):
    alice.push(customer("big", address="b" * 1000), customer("small"))
    settings.SYNC_PULL_MAX_BYTES = 100
    pages = pull_everything(alice)
    assert [len(p) for p in pages] == [1, 1]
    assert {p[0]["data"]["name"] for p in pages} == {"big", "small"}


def test_the_page_budget_holds_for_incremental_pulls_too(alice, settings):
    first = [customer(f"c{i}") for i in range(6)]
    alice.push(*first)
    _, cursor = alice.pull_all()
    from tests.factories import update

    alice.push(*[update(CUSTOMER, c["id"], 1, address="u" * 900) for c in first])
    settings.SYNC_PULL_MAX_BYTES = 2_500
    seen, has_more = [], True
    while has_more:
        page = alice.pull(cursor=cursor)
        assert len(page["changes"]) <= 2
        seen += [c["id"] for c in page["changes"]]
        cursor, has_more = page["cursor"], page["has_more"]
    assert sorted(seen) == sorted(c["id"] for c in first)


def test_a_push_over_the_body_limit_is_413(alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = {"mutations": [mutation(CUSTOMER, data={"name": "x" * 2000})]}
    response = alice.client.post("/api/v1/sync/push/", body, format="json")
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
