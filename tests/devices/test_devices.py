"""Device registration and the X-Device-Id header, through the HTTP API only."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from devices.models import Device
from fieldwork.models import Customer
from tests.conftest import make_client
from tests.factories import UserFactory, customer
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

DEVICES = "/api/v1/devices/"
PULL = "/api/v1/sync/pull/"
PUSH = "/api/v1/sync/push/"


def detail_url(device_id: Any) -> str:
    return f"{DEVICES}{device_id}/"


def register(client: APIClient, **body: Any) -> Any:
    return client.post(DEVICES, body, format="json")


@pytest.fixture
def user() -> Any:
    return UserFactory()


@pytest.fixture
def client(user: Any) -> APIClient:
    return make_client(user)


# --- POST /api/v1/devices/ ---------------------------------------------------------


def test_first_registration_is_201_with_the_device(user, client):
    device_id = uuid.uuid4()
    response = register(
        client,
        id=str(device_id),
        platform="ios",
        name="Alice's iPhone",
        push_token="tok-1",
        app_version="2.3.0",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] == str(device_id)
    assert body["platform"] == "ios"
    assert body["name"] == "Alice's iPhone"
    assert body["push_token"] == "tok-1"
    assert body["app_version"] == "2.3.0"
    assert body["push_active"] is True
    assert body["last_seen"] is None
    device = Device.objects.get(pk=device_id)
    assert device.user == user
    assert device.push_active is True


def test_registration_without_push_token_is_not_push_active(client):
    response = register(client, id=str(uuid.uuid4()), platform="web")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["push_token"] == "" and body["push_active"] is False
    assert body["name"] == "" and body["app_version"] == ""


def test_registering_the_same_id_again_is_200_and_updates_fields(user, client):
    device_id = str(uuid.uuid4())
    first = register(client, id=device_id, platform="android", name="Old", push_token="tok-1")
    assert first.status_code == 201, first.content
    again = register(
        client,
        id=device_id,
        platform="android",
        name="New name",
        push_token="tok-2",
        app_version="1.1",
    )
    assert again.status_code == 200, again.content
    body = again.json()
    assert body["id"] == device_id
    assert body["name"] == "New name"
    assert body["push_token"] == "tok-2"
    assert body["app_version"] == "1.1"
    assert body["push_active"] is True
    assert body["created_at"] == first.json()["created_at"]
    assert Device.objects.filter(user=user).count() == 1
    device = Device.objects.get(pk=device_id)
    assert (device.name, device.push_token, device.app_version) == ("New name", "tok-2", "1.1")


def test_registering_the_same_body_twice_is_idempotent(user, client):
    body = {"id": str(uuid.uuid4()), "platform": "ios", "name": "Pad", "push_token": "t"}
    first = register(client, **body)
    second = register(client, **body)
    assert (first.status_code, second.status_code) == (201, 200)
    keys = ("id", "platform", "name", "push_token", "app_version", "push_active", "created_at")
    assert {k: second.json()[k] for k in keys} == {k: first.json()[k] for k in keys}
    assert Device.objects.filter(user=user).count() == 1


def test_re_registration_with_an_empty_push_token_turns_push_off(client):
    device_id = str(uuid.uuid4())
    assert register(client, id=device_id, platform="ios", push_token="t").status_code == 201
    response = register(client, id=device_id, platform="ios", push_token="")
    assert response.status_code == 200, response.content
    assert response.json()["push_token"] == ""
    assert response.json()["push_active"] is False
    assert Device.objects.get(pk=device_id).push_active is False


def test_uuid_spelling_does_not_matter_for_the_upsert(user, client):
    device_id = uuid.uuid4()
    assert register(client, id=str(device_id), platform="ios").status_code == 201
    response = register(client, id=str(device_id).upper(), platform="ios", name="Same")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(device_id)
    assert Device.objects.filter(user=user).count() == 1


def test_an_id_registered_by_another_user_is_409_and_untouched(user, client):
    device_id = str(uuid.uuid4())
    assert register(client, id=device_id, platform="ios", push_token="mine").status_code == 201
    intruder = make_client(UserFactory())
    response = register(intruder, id=device_id, platform="android", push_token="theirs")
    assert_error(response, 409, "device_taken")
    device = Device.objects.get(pk=device_id)
    assert device.user == user
    assert (device.platform, device.push_token) == ("ios", "mine")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "ID", "platform": "blackberry"}, "platform"),
        ({"id": "ID"}, "platform"),
        ({"platform": "android"}, "id"),
        ({"id": "not-a-uuid", "platform": "android"}, "id"),
        ({"id": "1234", "platform": "ios"}, "id"),
        ({"id": "ID", "platform": "ios", "name": "x" * 201}, "name"),
        ({"id": "ID", "platform": "ios", "name": None}, "name"),
    ],
)
def test_invalid_registration_is_400_with_field_errors(user, client, body, field):
    body = {k: (str(uuid.uuid4()) if v == "ID" else v) for k, v in body.items()}
    response = register(client, **body)
    payload = assert_error(response, 400, "invalid")
    assert isinstance(payload["errors"], dict)
    assert field in payload["errors"], payload
    messages = payload["errors"][field]
    assert isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages)
    assert not Device.objects.filter(user=user).exists()


def test_a_json_number_is_not_a_device_id(user, client):
    response = register(client, id=1234, platform="ios")
    payload = assert_error(response, 400, "invalid")
    assert "id" in payload["errors"]
    assert not Device.objects.filter(user=user).exists()


def test_registration_body_must_be_json(client):
    response = client.post(DEVICES, {"id": str(uuid.uuid4()), "platform": "ios"})  # multipart
    assert_error(response, 415, "unsupported_media_type")


def test_registration_needs_authentication():
    anon = APIClient()
    response = anon.post(
        DEVICES,
        {"id": str(uuid.uuid4()), "platform": "ios"},
        format="json",
        HTTP_X_FORWARDED_PROTO="https",
    )
    assert_error(response, 401, "not_authenticated")
    assert not Device.objects.exists()


# --- GET / PATCH / DELETE -----------------------------------------------------------


def test_list_returns_only_own_devices(user, client):
    mine = [str(uuid.uuid4()) for _ in range(2)]
    for device_id in mine:
        assert register(client, id=device_id, platform="android").status_code == 201
    other = make_client(UserFactory())
    theirs = str(uuid.uuid4())
    assert register(other, id=theirs, platform="ios").status_code == 201

    response = client.get(DEVICES)
    assert response.status_code == 200, response.content
    assert sorted(d["id"] for d in response.json()) == sorted(mine)
    assert [d["id"] for d in other.get(DEVICES).json()] == [theirs]
    assert make_client(UserFactory()).get(DEVICES).json() == []


def test_get_own_device(client):
    device_id = str(uuid.uuid4())
    register(client, id=device_id, platform="web", name="Browser")
    response = client.get(detail_url(device_id))
    assert response.status_code == 200, response.content
    assert response.json()["id"] == device_id and response.json()["name"] == "Browser"


def test_patch_rotates_push_token_and_push_active_follows(client):
    device_id = str(uuid.uuid4())
    register(client, id=device_id, platform="android")
    assert Device.objects.get(pk=device_id).push_active is False

    response = client.patch(detail_url(device_id), {"push_token": "fcm-1"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["push_token"] == "fcm-1" and response.json()["push_active"] is True
    device = Device.objects.get(pk=device_id)
    assert (device.push_token, device.push_active) == ("fcm-1", True)

    response = client.patch(detail_url(device_id), {"push_token": "fcm-2"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["push_token"] == "fcm-2" and response.json()["push_active"] is True
    assert Device.objects.get(pk=device_id).push_token == "fcm-2"

    response = client.patch(detail_url(device_id), {"push_token": ""}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["push_token"] == "" and response.json()["push_active"] is False
    device = Device.objects.get(pk=device_id)
    assert (device.push_token, device.push_active) == ("", False)


def test_patch_of_other_fields_leaves_push_token_alone(client):
    device_id = str(uuid.uuid4())
    register(client, id=device_id, platform="android", push_token="fcm-1")
    response = client.patch(
        detail_url(device_id), {"name": "Renamed", "app_version": "9"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "Renamed" and body["app_version"] == "9"
    assert body["push_token"] == "fcm-1" and body["push_active"] is True


def test_patch_with_invalid_platform_is_400(client):
    device_id = str(uuid.uuid4())
    register(client, id=device_id, platform="android")
    response = client.patch(detail_url(device_id), {"platform": "symbian"}, format="json")
    body = assert_error(response, 400, "invalid")
    assert "platform" in body["errors"]
    assert Device.objects.get(pk=device_id).platform == "android"


def test_delete_own_device_is_204_and_it_is_gone(user, client):
    device_id = str(uuid.uuid4())
    register(client, id=device_id, platform="android")
    response = client.delete(detail_url(device_id))
    assert response.status_code == 204, response.content
    assert response.content == b""
    assert not Device.objects.filter(pk=device_id).exists()
    assert_error(client.get(detail_url(device_id)), 404, "not_found")
    # A deleted device can no longer sync, and registering it again is a fresh 201.
    synced = make_client(user, uuid.UUID(device_id)).get(PULL)
    assert_error(synced, 403, "device_forbidden")
    assert register(client, id=device_id, platform="android").status_code == 201


def test_unknown_device_is_404_json(client):
    missing = uuid.uuid4()
    assert_error(client.get(detail_url(missing)), 404, "not_found")
    assert_error(client.patch(detail_url(missing), {"name": "x"}, format="json"), 404, "not_found")
    assert_error(client.delete(detail_url(missing)), 404, "not_found")


def test_another_users_device_is_404_for_get_patch_and_delete(client):
    owner = UserFactory()
    owner_client = make_client(owner)
    device_id = str(uuid.uuid4())
    register(owner_client, id=device_id, platform="ios", name="Owner's", push_token="t")

    get = assert_error(client.get(detail_url(device_id)), 404, "not_found")
    patch = assert_error(
        client.patch(detail_url(device_id), {"push_token": "hijack"}, format="json"),
        404,
        "not_found",
    )
    delete = assert_error(client.delete(detail_url(device_id)), 404, "not_found")
    # Indistinguishable from an id that does not exist at all.
    assert get == patch == delete == client.get(detail_url(uuid.uuid4())).json()

    device = Device.objects.get(pk=device_id)
    assert device.user == owner
    assert (device.name, device.push_token) == ("Owner's", "t")


def test_malformed_device_id_in_url_is_404_json(client):
    assert_error(client.get(f"{DEVICES}not-a-uuid/"), 404, "not_found")


# --- X-Device-Id on pull and push ---------------------------------------------------


def _sync(client: APIClient, path: str, **headers: Any) -> Any:
    if path == PULL:
        return client.get(PULL, **headers)
    return client.post(PUSH, {"mutations": [customer("Acme")]}, format="json", **headers)


@pytest.mark.parametrize("path", [PULL, PUSH])
def test_missing_device_header_is_400_device_required(user, path):
    assert_error(_sync(make_client(user), path), 400, "device_required")


@pytest.mark.parametrize("path", [PULL, PUSH])
@pytest.mark.parametrize("raw", ["not-a-uuid", "1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
def test_malformed_device_header_is_400_bad_device_id(user, path, raw):
    response = _sync(make_client(user), path, HTTP_X_DEVICE_ID=raw)
    assert_error(response, 400, "bad_device_id")


@pytest.mark.parametrize("path", [PULL, PUSH])
def test_unknown_device_header_is_403_device_forbidden(user, path):
    assert_error(_sync(make_client(user, uuid.uuid4()), path), 403, "device_forbidden")


@pytest.mark.parametrize("path", [PULL, PUSH])
def test_another_users_device_is_403_device_forbidden(alice, bob, path):
    before = Device.objects.get(pk=alice.device_id).last_seen
    response = _sync(make_client(bob.user, alice.device_id), path)
    assert_error(response, 403, "device_forbidden")
    assert Device.objects.get(pk=alice.device_id).last_seen == before


def test_push_with_a_forbidden_device_writes_nothing(alice, bob):
    m = customer("Sneaky")
    response = make_client(bob.user, alice.device_id).post(PUSH, {"mutations": [m]}, format="json")
    assert_error(response, 403, "device_forbidden")
    assert not Customer.objects.filter(pk=m["id"]).exists()


def test_pull_updates_last_seen(alice):
    assert Device.objects.get(pk=alice.device_id).last_seen is None
    alice.pull()
    first = Device.objects.get(pk=alice.device_id).last_seen
    assert first is not None
    alice.pull()
    assert Device.objects.get(pk=alice.device_id).last_seen >= first
    (listed,) = alice.client.get(DEVICES).json()
    assert listed["id"] == str(alice.device_id) and listed["last_seen"] is not None


def test_push_updates_last_seen(alice):
    assert Device.objects.get(pk=alice.device_id).last_seen is None
    assert alice.push_one(customer("Acme"))["status"] == "applied"
    assert Device.objects.get(pk=alice.device_id).last_seen is not None


def test_pull_with_a_valid_device_does_not_touch_other_devices(make_actor):
    alice = make_actor()
    second_id = uuid.uuid4()
    response = make_client(alice.user).post(
        DEVICES, {"id": str(second_id), "platform": "ios"}, format="json"
    )
    assert response.status_code == 201
    alice.pull()
    assert Device.objects.get(pk=alice.device_id).last_seen is not None
    assert Device.objects.get(pk=second_id).last_seen is None


# --- Concurrent registration (a real database with row locks) ----------------------


def _register_concurrently(clients: list[APIClient], device_id: str) -> list[Any]:
    barrier = threading.Barrier(len(clients))
    responses: list[Any] = [None] * len(clients)

    def run(i: int, client: APIClient) -> None:
        try:
            barrier.wait(timeout=10)
            responses[i] = register(client, id=device_id, platform="android", name=f"c{i}")
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return responses


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_registration_by_two_users_gives_one_owner_and_one_409():
    for _ in range(5):
        users = [UserFactory(), UserFactory()]
        device_id = str(uuid.uuid4())
        responses = _register_concurrently([make_client(u) for u in users], device_id)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201, 409], [r.content for r in responses]
        winner = users[[r.status_code for r in responses].index(201)]
        assert Device.objects.get(pk=device_id).user == winner
        loser = next(r for r in responses if r.status_code == 409)
        assert_error(loser, 409, "device_taken")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_registration_by_the_same_user_is_one_201_and_one_200():
    for _ in range(5):
        user = UserFactory()
        device_id = str(uuid.uuid4())
        responses = _register_concurrently([make_client(user), make_client(user)], device_id)
        assert sorted(r.status_code for r in responses) == [200, 201], [
            r.content for r in responses
        ]
        assert Device.objects.filter(pk=device_id, user=user).count() == 1


def _device_writes(actor, **params: Any) -> tuple[dict, int]:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        page = actor.pull(**params)
    writes = [q for q in queries if 'UPDATE "devices_device"' in q["sql"]]
    return page, len(writes)


def test_an_up_to_date_device_polling_writes_at_most_once_a_minute(alice):
    from sync.engine.seen import SEEN_EVERY

    alice.push(customer("Acme"))
    page, writes = _device_writes(alice)
    assert writes == 1 and page["changes"]  # brought changes: its cursor is kept
    kept = Device.objects.get(pk=alice.device_id)
    assert kept.last_cursor == page["cursor"]
    page, writes = _device_writes(alice, cursor=page["cursor"])
    assert writes == 0 and page["changes"] == []  # nothing new, seen a moment ago
    assert Device.objects.get(pk=alice.device_id).last_seen == kept.last_seen
    Device.objects.filter(pk=alice.device_id).update(last_seen=kept.last_seen - SEEN_EVERY)
    _, writes = _device_writes(alice, cursor=page["cursor"])
    assert writes == 1  # a minute later it is recorded again
    assert Device.objects.get(pk=alice.device_id).last_seen > kept.last_seen - SEEN_EVERY
    alice.push(customer("Other"))
    page, writes = _device_writes(alice, cursor=page["cursor"])
    assert writes == 1 and len(page["changes"]) == 1  # changes: kept at once


def test_a_pull_with_another_filter_keeps_its_cursor_for_pushes_without_one(alice):
    alice.push(customer("Acme"))
    alice.pull(models="fieldwork.customer")
    # Nothing to bring under the new filter, a moment later: still kept, because a
    # push without a cursor hands the stored one back, and this filter must take it.
    page = alice.pull(models="fieldwork.note")
    assert page["changes"] == []
    body = alice.push(customer("Mine"))
    again = alice.pull(models="fieldwork.note", cursor=body["cursor"])
    assert again["changes"] == []
