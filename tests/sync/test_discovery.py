"""Discovery (models, OpenAPI schema, docs), the conflicts list, and a brand-new
user syncing their own objects with no grant."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from fieldwork.models import Customer
from fieldwork.services import team_member_add
from tests.conftest import make_client
from tests.factories import TeamFactory, UserFactory, customer, mutation, update, work_order
from tests.helpers import assert_error, https_client

pytestmark = pytest.mark.django_db

MODELS = "/api/v1/sync/models/"
SCHEMA = "/api/v1/schema/"
DOCS = "/api/v1/docs/"
CONFLICTS = "/api/v1/sync/conflicts/"
CUSTOMER = "fieldwork.customer"
ORDER = "fieldwork.workorder"
NOTE = "fieldwork.note"

WIRE_TYPES = {
    "string",
    "text",
    "integer",
    "number",
    "boolean",
    "date",
    "datetime",
    "uuid",
    "json",
    "reference",
    "blob",
}
POLICIES = {"merge", "manual", "server_wins", "client_wins", "custom"}


@pytest.fixture
def described(alice) -> dict[str, dict[str, Any]]:
    response = alice.client.get(MODELS)
    assert response.status_code == 200, response.content
    body = response.json()
    assert isinstance(body, list)
    by_label = {entry["model"]: entry for entry in body}
    assert len(by_label) == len(body), "a model is listed twice"
    return by_label


def test_models_lists_the_registered_models(described):
    assert {CUSTOMER, ORDER, NOTE} <= set(described)
    for entry in described.values():
        assert set(entry) == {
            "model",
            "version",
            "fields",
            "conflict_policy",
            "conflict_resolution",
            "history",
        }


def test_every_field_description_has_the_contract_shape(described):
    for label, entry in described.items():
        assert entry["conflict_policy"] in POLICIES, label
        assert entry["fields"], label
        for name, desc in entry["fields"].items():
            where = f"{label}.{name}"
            assert desc["type"] in WIRE_TYPES, where
            for flag in ("required", "read_only", "nullable"):
                assert isinstance(desc[flag], bool), where
            assert set(desc) <= {
                "type",
                "required",
                "read_only",
                "nullable",
                "choices",
                "model",
                "max_length",
                "max_bytes",
                "format",
                "default",
                "max_size",
                "content_types",
            }
            assert ("model" in desc) == (desc["type"] == "reference"), where
            assert ("max_size" in desc) == (desc["type"] == "blob"), where
            assert ("content_types" in desc) == (desc["type"] == "blob"), where
            if "choices" in desc:
                assert isinstance(desc["choices"], list) and desc["choices"], where
            # A field the server writes is never something the client must send.
            assert not (desc["read_only"] and desc["required"]), where


def test_conflict_policies(described):
    assert described[CUSTOMER]["conflict_policy"] == "merge"
    assert described[ORDER]["conflict_policy"] == "custom"
    assert described[NOTE]["conflict_policy"] == "client_wins"


def test_customer_fields(described):
    fields = described[CUSTOMER]["fields"]
    assert fields["name"] == {
        "type": "string",
        "required": True,
        "read_only": False,
        "nullable": False,
        "max_length": 200,
    }
    assert fields["email"] == {
        "type": "string",
        "required": False,
        "read_only": False,
        "nullable": False,
        "max_length": 254,
        "format": "email",
        "default": "",
    }
    assert fields["phone"]["type"] == "string" and fields["phone"]["required"] is False
    assert fields["address"]["type"] == "text" and fields["address"]["required"] is False
    assert fields["team"]["type"] == "reference"
    assert fields["team"]["nullable"] is True and fields["team"]["required"] is False
    assert fields["team"]["default"] is None
    assert fields["owner"]["type"] == "reference" and fields["owner"]["read_only"] is True
    assert "default" not in fields["owner"] and fields["address"]["max_length"] == 1000
    for system in ("created_at", "updated_at"):
        assert fields[system]["type"] == "datetime"
        assert fields[system]["read_only"] is True and fields[system]["required"] is False


def test_work_order_fields(described):
    fields = described[ORDER]["fields"]
    assert fields["customer"] == {
        "type": "reference",
        "required": True,
        "read_only": False,
        "nullable": False,
        "model": CUSTOMER,
    }
    assert fields["title"]["type"] == "string" and fields["title"]["required"] is True
    assert fields["description"]["type"] == "text"
    status = fields["status"]
    assert status["type"] == "string"
    assert status["choices"] == ["open", "scheduled", "in_progress", "done", "cancelled"]
    assert status["required"] is False and status["default"] == "open"
    assert status["max_length"] == 12
    assert "choices" not in fields["title"]
    assert set(fields["priority"]["choices"]) == {"low", "normal", "high", "urgent"}
    assert fields["scheduled_for"]["type"] == "date" and fields["scheduled_for"]["nullable"]
    assert fields["due_at"]["type"] == "datetime" and fields["due_at"]["nullable"]
    assert fields["estimated_hours"]["type"] == "number"
    assert fields["estimated_hours"]["nullable"] is True


def test_note_fields(described):
    fields = described[NOTE]["fields"]
    assert fields["work_order"]["type"] == "reference"
    assert fields["work_order"]["model"] == ORDER
    assert fields["work_order"]["required"] is True
    assert fields["body"] == {
        "type": "text",
        "required": True,
        "read_only": False,
        "nullable": False,
        "max_length": 5000,
    }
    assert fields["pinned"]["type"] == "boolean" and fields["pinned"]["required"] is False
    assert fields["pinned"]["default"] is False


def test_references_point_at_listed_models_when_writable(described):
    """A client can only fill a writable reference with ids it can discover."""
    for label, entry in described.items():
        for name, desc in entry["fields"].items():
            if desc["type"] == "reference" and desc["required"]:
                assert desc["model"] in described, f"{label}.{name} -> {desc['model']}"


def test_described_required_fields_are_enough_to_create(alice, described):
    """The description is usable: a create with exactly the required fields applies."""
    cust = customer("Only required")
    assert set(cust["data"]) == {
        n for n, d in described[CUSTOMER]["fields"].items() if d["required"]
    }
    order = work_order(cust["id"], "Only required")
    required = {n for n, d in described[ORDER]["fields"].items() if d["required"]}
    assert set(order["data"]) == required
    results = alice.push(cust, order)["results"]
    assert [r["status"] for r in results] == ["applied", "applied"], results
    # And a read-only field is refused, as described.
    bad = mutation(CUSTOMER, data={"name": "X", "created_at": "2026-01-01T00:00:00Z"})
    result = alice.push_one(bad)
    assert result["status"] == "rejected" and "created_at" in result["errors"]


def test_models_needs_authentication():
    assert_error(https_client().get(MODELS), 401, "not_authenticated")


# --- Schema and docs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "accept"),
    [("?format=json", None), ("", "application/vnd.oai.openapi+json")],
)
def test_openapi_schema_lists_the_protocol_paths(alice, query, accept):
    extra = {"HTTP_ACCEPT": accept} if accept else {}
    response = alice.client.get(SCHEMA + query, **extra)
    assert response.status_code == 200, response.content
    assert "json" in response["Content-Type"]
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path in (
        "/api/v1/sync/pull/",
        "/api/v1/sync/push/",
        "/api/v1/devices/",
        "/api/v1/auth/token/",
        "/api/v1/sync/conflicts/",
        "/api/v1/sync/conflicts/{conflict_id}/",
        "/api/v1/sync/conflicts/{conflict_id}/resolve/",
    ):
        assert path in paths, sorted(paths)
    resolve = paths["/api/v1/sync/conflicts/{conflict_id}/resolve/"]["post"]
    assert {"200", "404", "409", "412"} <= set(resolve["responses"])
    assert "get" in paths["/api/v1/sync/pull/"]
    assert "post" in paths["/api/v1/sync/push/"]
    assert "post" in paths["/api/v1/auth/token/"]
    assert {"get", "post"} <= set(paths["/api/v1/devices/"])


def test_openapi_schema_documents_the_device_header(alice):
    doc = alice.client.get(SCHEMA + "?format=json").json()
    for path, method in (("/api/v1/sync/pull/", "get"), ("/api/v1/sync/push/", "post")):
        params = doc["paths"][path][method].get("parameters", [])
        headers = {p["name"]: p for p in params if p["in"] == "header"}
        assert "X-Device-Id" in headers, (path, params)
        assert headers["X-Device-Id"]["required"] is True
    pull_params = {p["name"] for p in doc["paths"]["/api/v1/sync/pull/"]["get"]["parameters"]}
    assert {"cursor", "limit", "models"} <= pull_params


def test_openapi_schema_is_public_for_client_teams():
    response = https_client().get(SCHEMA + "?format=json")
    assert response.status_code == 200, response.content
    assert "/api/v1/sync/pull/" in response.json()["paths"]


def test_docs_render_html_pointing_at_the_schema(alice):
    response = alice.client.get(DOCS)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "swagger" in html.lower()
    assert SCHEMA in html


# --- GET /api/v1/sync/conflicts/ ----------------------------------------------------


def make_conflict(actor: Any, name: str = "Acme") -> tuple[str, str]:
    """Two overlapping updates from the same base version: a `merge` conflict."""
    c = customer(name, phone="1")
    assert actor.push_one(c)["status"] == "applied"
    assert actor.push_one(update(CUSTOMER, c["id"], 1, phone="2"))["status"] == "applied"
    result = actor.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    assert result["status"] == "conflict", result
    return result["conflict_id"], c["id"]


def test_conflicts_lists_only_the_callers_own(alice, bob):
    alice_conflict, alice_object = make_conflict(alice, "Alice's")
    bob_conflict, _ = make_conflict(bob, "Bob's")

    response = alice.client.get(CONFLICTS)
    assert response.status_code == 200, response.content
    body = response.json()
    assert [c["id"] for c in body] == [alice_conflict]
    entry = body[0]
    assert entry["model"] == CUSTOMER
    assert entry["object_id"] == alice_object
    assert entry["status"] == "open"
    assert entry["fields"] == ["phone"]
    assert entry["resolution"] is None and entry["resolved_version"] is None

    assert [c["id"] for c in bob.client.get(CONFLICTS).json()] == [bob_conflict]


def test_conflicts_do_not_need_a_device_header(alice):
    conflict_id, _ = make_conflict(alice)
    response = make_client(alice.user).get(CONFLICTS)
    assert response.status_code == 200, response.content
    assert [c["id"] for c in response.json()] == [conflict_id]


def test_conflicts_filter_by_status(alice):
    first, _ = make_conflict(alice, "One")
    second, _ = make_conflict(alice, "Two")

    opened = alice.client.get(CONFLICTS, {"status": "open"})
    assert opened.status_code == 200, opened.content
    assert sorted(c["id"] for c in opened.json()) == sorted([first, second])
    assert {c["status"] for c in opened.json()} == {"open"}

    resolved = alice.client.get(CONFLICTS, {"status": "resolved"})
    assert resolved.status_code == 200, resolved.content
    assert resolved.json() == []


def test_user_without_conflicts_sees_an_empty_list(alice, bob):
    make_conflict(alice)
    assert bob.client.get(CONFLICTS).json() == []
    assert bob.client.get(CONFLICTS, {"status": "open"}).json() == []


@pytest.mark.parametrize("status", ["bogus", "OPEN", "open,resolved"])
def test_conflicts_with_an_unknown_status_is_400_json(alice, status):
    body = assert_error(alice.client.get(CONFLICTS, {"status": status}), 400, "bad_status")
    assert "status" in body["errors"]


def test_conflicts_need_authentication():
    assert_error(https_client().get(CONFLICTS), 401, "not_authenticated")


# --- A brand-new user ---------------------------------------------------------------


def test_brand_new_user_can_create_and_pull_their_own_objects(make_actor):
    newcomer = make_actor(user=UserFactory())
    c = customer("First customer")
    o = work_order(c["id"], "First job", status="scheduled")
    n = mutation(NOTE, data={"work_order": o["id"], "body": "Bring a ladder"})
    results = newcomer.push(c, o, n)["results"]
    assert [r["status"] for r in results] == ["applied"] * 3, results

    changes, cursor = newcomer.pull_all()
    by_id = {ch["id"]: ch for ch in changes}
    assert set(by_id) == {c["id"], o["id"], n["id"]}
    assert all(ch["op"] == "upsert" and ch["version"] == 1 for ch in changes)
    assert by_id[c["id"]]["model"] == CUSTOMER
    assert by_id[c["id"]]["data"]["name"] == "First customer"
    assert by_id[c["id"]]["data"]["owner"] == newcomer.user.pk
    assert by_id[o["id"]]["data"]["customer"] == c["id"]
    assert by_id[o["id"]]["data"]["status"] == "scheduled"
    assert by_id[n["id"]]["data"]["body"] == "Bring a ladder"

    # Their later change arrives after the cursor; another new user sees none of it.
    assert newcomer.push_one(update(CUSTOMER, c["id"], 1, phone="555"))["status"] == "applied"
    later, _ = newcomer.pull_all(cursor)
    assert [(ch["id"], ch["version"], ch["data"]["phone"]) for ch in later] == [(c["id"], 2, "555")]
    stranger = make_actor(user=UserFactory())
    assert stranger.pull_all()[0] == []


def test_brand_new_users_second_device_gets_the_same_objects(make_actor):
    user = UserFactory()
    phone = make_actor(user=user)
    tablet = make_actor(user=user, platform="ios")
    c = customer("Shared between my devices")
    assert phone.push_one(c)["status"] == "applied"
    changes, _ = tablet.pull_all()
    assert [(ch["id"], ch["op"]) for ch in changes] == [(c["id"], "upsert")]


def test_brand_new_user_can_pull_with_a_models_filter(make_actor):
    newcomer = make_actor()
    c = customer("Acme")
    o = work_order(c["id"])
    newcomer.push(c, o)
    changes, _ = newcomer.pull_all(models=ORDER)
    assert [(ch["model"], ch["id"]) for ch in changes] == [(ORDER, o["id"])]
    assert_error(
        newcomer.client.get("/api/v1/sync/pull/", {"models": "fieldwork.nope"}),
        400,
        "unknown_model",
    )


def test_new_user_token_from_login_works_for_sync():
    user = UserFactory()
    user.set_password("a long enough password")
    user.save(update_fields=["password"])
    login = https_client().post(
        "/api/v1/auth/token/",
        {"username": user.username, "password": "a long enough password"},
        format="json",
    )
    assert login.status_code == 200, login.content
    client = https_client(HTTP_AUTHORIZATION=f"Token {login.json()['token']}")
    device_id = str(uuid.uuid4())
    assert (
        client.post(
            "/api/v1/devices/", {"id": device_id, "platform": "android"}, format="json"
        ).status_code
        == 201
    )
    c = customer("Via login")
    pushed = client.post(
        "/api/v1/sync/push/", {"mutations": [c]}, format="json", HTTP_X_DEVICE_ID=device_id
    )
    assert pushed.status_code == 200, pushed.content
    assert pushed.json()["results"][0]["status"] == "applied"
    pulled = client.get("/api/v1/sync/pull/", HTTP_X_DEVICE_ID=device_id)
    assert [ch["id"] for ch in pulled.json()["changes"]] == [c["id"]]


def test_new_user_cannot_place_objects_in_a_team_they_are_not_in(make_actor):
    member = make_actor()
    team = TeamFactory()
    team_member_add(team=team, user=member.user)  # setup: the member joins (admin action)
    _, member_cursor = member.pull_all()

    newcomer = make_actor()
    c = customer("Injected into a foreign team", team=str(team.pk))
    result = newcomer.push_one(c)

    later, _ = member.pull_all(member_cursor)
    assert c["id"] not in {ch["id"] for ch in later}, "the team member received it"
    assert result["status"] == "rejected", result
    assert "team" in result["errors"]
    assert not Customer.objects.filter(pk=c["id"]).exists()


def test_openapi_schema_generates_without_warnings():
    """Every view and serializer is described (no guessed types, no clashing enums)."""
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", os.devnull)
