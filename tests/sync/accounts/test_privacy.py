"""A user's data export and erasure (sync/engine/privacy.py), from the service, the
command and the admin.

The scene: Alice (to be erased) and Bob share a team. Alice has private
objects and team objects; Bob has a work order on one of Alice's team
customers; Alice edited one of Bob's customers; each raised a conflict on the
other's object.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from devices.models import Device, PushOutbox
from fieldwork.models import Customer, Note, TeamMembership, WorkOrder
from sync.engine.privacy import user_data_erase, user_data_export
from sync.models import Change, ChannelGrant, Conflict, GrantEvent, MutationRecord, Token
from tests.conftest import Actor
from tests.factories import customer, mutation, team_of, update, work_order
from tests.helpers import https_client

pytestmark = pytest.mark.django_db

CUSTOMER, ORDER, NOTE = "fieldwork.customer", "fieldwork.workorder", "fieldwork.note"
ALICE_PASSWORD = "alice-pass-98765"


@dataclass
class Scene:
    alice: Actor
    bob: Actor
    bob_cursor: str
    private: dict[str, str]  # label → id of an object only Alice sees
    shared: dict[str, str]  # Alice's team objects (Bob sees them)
    kept_customer: str  # Alice's team customer that Bob's work order references
    bobs_order: str
    bobs_customer: str
    secrets: list[str]  # Alice's token secrets


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["status"] in ("applied", "merged"), result
    return result


@pytest.fixture
def scene(make_actor) -> Scene:
    alice, bob = make_actor(), make_actor()
    alice.user.email, alice.user.first_name = "alice@example.test", "Alice"
    alice.user.set_password(ALICE_PASSWORD)
    alice.user.save()
    team = str(team_of(alice.user, bob.user).pk)
    # A real login: a token, and django-axes' record of the login; one failure too.
    login = https_client().post(
        "/api/v1/auth/token/",
        {"username": alice.user.username, "password": ALICE_PASSWORD},
        format="json",
    )
    https_client().post(
        "/api/v1/auth/token/", {"username": alice.user.username, "password": "wrong"}, format="json"
    )
    secret = login.json()["token"]

    private_c = customer("Alice private", email="p@alice.test")
    private_o = work_order(private_c["id"], "Private job")
    private_n = mutation(NOTE, data={"work_order": private_o["id"], "body": "gate code 1234"})
    shared_c = customer("Alice shared", phone="555-0001", team=team)
    kept_c = customer("Alice referenced", address="1 Alice Road", team=team)
    for m in (private_c, private_o, private_n, shared_c, kept_c):
        ok(alice.push_one(m))
    # A deleted object of hers: its row and history hold her data too.
    gone = customer("Alice deleted earlier")
    ok(alice.push_one(gone))
    ok(alice.push_one({**update(CUSTOMER, gone["id"], 1), "op": "delete", "data": None}))

    bobs_c = customer("Bob's customer", phone="1", team=team)
    ok(bob.push_one(bobs_c))
    bobs_o = work_order(kept_c["id"], "Bob's job on Alice's customer", team=team)
    ok(bob.push_one(bobs_o))
    # Alice edits Bob's customer: a history row by her on his object.
    ok(alice.push_one(update(CUSTOMER, bobs_c["id"], 1, phone="2")))
    ok(bob.push_one(update(CUSTOMER, bobs_c["id"], 2, phone="3")))
    # A conflict she raises on his object, one he raises on hers, one of his on his own.
    raised = alice.push_one(update(CUSTOMER, bobs_c["id"], 2, phone="4"))
    assert raised["status"] == "conflict"
    ok(alice.push_one(update(CUSTOMER, shared_c["id"], 1, phone="555-0002")))
    assert bob.push_one(update(CUSTOMER, shared_c["id"], 1, phone="555-9"))["status"] == "conflict"
    assert bob.push_one(update(CUSTOMER, bobs_c["id"], 1, phone="5"))["status"] == "conflict"
    _, bob_cursor = bob.pull_all()
    return Scene(
        alice=alice,
        bob=bob,
        bob_cursor=bob_cursor,
        private={CUSTOMER: private_c["id"], ORDER: private_o["id"], NOTE: private_n["id"]},
        shared={CUSTOMER: shared_c["id"]},
        kept_customer=kept_c["id"],
        bobs_order=bobs_o["id"],
        bobs_customer=bobs_c["id"],
        secrets=[secret],
    )


def state_of(model: Any, object_id: str) -> tuple[int, dict[str, Any]]:
    obj = model.objects.get(pk=object_id)
    return obj.version, {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}


# --- export -------------------------------------------------------------------------------


def test_export_has_all_of_their_data_and_no_secrets(scene):
    alice = scene.alice
    data = user_data_export(user=alice.user)
    text = json.dumps(data, default=str)
    assert data["account"]["username"] == alice.user.username
    assert data["account"]["email"] == "alice@example.test"
    objects = {label: {o["id"] for o in rows} for label, rows in data["objects"].items()}
    assert {uuid.UUID(scene.private[NOTE])} == objects[NOTE]
    assert uuid.UUID(scene.kept_customer) in objects[CUSTOMER]
    assert uuid.UUID(scene.bobs_customer) not in objects[CUSTOMER]  # Bob's
    assert len(objects[CUSTOMER]) == 4  # private, shared, referenced, deleted earlier
    note = next(o for o in data["objects"][NOTE])
    assert note["data"]["body"] == "gate code 1234"
    # History: every version of her objects, and her edit of Bob's customer.
    customers = data["history"][CUSTOMER]
    assert any(h["object_id"] == uuid.UUID(scene.bobs_customer) and h["by_them"] for h in customers)
    assert sum(h["object_id"] == uuid.UUID(scene.shared[CUSTOMER]) for h in customers) == 2
    assert [d["id"] for d in data["devices"]] == [alice.device_id]
    assert data["channels"] == [f"team:{TeamMembership.objects.get(user=alice.user).team_id}"]
    [conflict] = data["conflicts"]  # the one she raised, on Bob's customer
    assert conflict["object_id"] == uuid.UUID(scene.bobs_customer)
    assert conflict["client_data"]["phone"] == "4"
    assert len(data["api_tokens"]) == Token.objects.filter(user=alice.user).count() >= 2
    assert {r["kind"] for r in data["login_records"]} >= {"accesslog", "accessattempt"}
    # Metadata only: neither a secret, nor its digest, nor its lookup prefix.
    for token in Token.objects.filter(user=alice.user):
        assert token.digest not in text and token.token_key not in text
    for secret in scene.secrets:
        assert secret not in text
    assert "digest" not in text and "token_key" not in text


def test_the_export_command_writes_json(scene, tmp_path):
    out = tmp_path / "alice.json"
    call_command("user_data", "export", scene.alice.user.username, out=str(out), stderr=StringIO())
    data = json.loads(out.read_text())
    assert data["account"]["id"] == scene.alice.user.pk
    assert len(data["objects"][CUSTOMER]) == 4


# --- erasure ------------------------------------------------------------------------------


def assert_nothing_of_alice_remains(scene: Scene, alice_id: int, device_id: uuid.UUID) -> None:
    """Per table: nothing that is hers, except the customer Bob's work order
    protects (on_delete=PROTECT), which stays live: shared business data, owned
    by the anonymised account."""
    everything = {**scene.private, **scene.shared}
    assert list(Customer.objects.filter(owner_id=alice_id).values_list("pk", flat=True)) == [
        uuid.UUID(scene.kept_customer)
    ]
    kept = Customer.objects.get(pk=scene.kept_customer)
    assert kept.deleted_at is None
    assert not WorkOrder.objects.filter(owner_id=alice_id).exists()
    assert not Note.objects.filter(owner_id=alice_id).exists()
    # The history of every object of hers that went, every version of it.
    for model in (Customer, WorkOrder, Note):
        history = model.history.model.objects
        assert not history.filter(id__in=everything.values()).exists(), model
    # Conflicts she raised, and Bob's on her object.
    assert not Conflict.objects.filter(user_id=alice_id).exists()
    assert not Conflict.objects.filter(object_id__in=everything.values()).exists()
    assert not Device.objects.filter(user_id=alice_id).exists()
    assert not Token.objects.filter(user_id=alice_id).exists()
    assert not ChannelGrant.objects.filter(user_id=alice_id).exists()
    assert not GrantEvent.objects.filter(user_id=alice_id).exists()
    assert not MutationRecord.objects.filter(user_id=alice_id).exists()
    assert not TeamMembership.objects.filter(user_id=alice_id).exists()
    assert not PushOutbox.objects.filter(channels=[f"user:{alice_id}"]).exists()
    assert not PushOutbox.objects.filter(origin_device_id=device_id).exists()
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    for model in (AccessLog, AccessFailureLog, AccessAttempt):
        assert not model.objects.filter(username=scene.alice.user.username).exists()
    user = get_user_model().objects.get(pk=alice_id)
    assert user.username == f"erased-{alice_id}"
    assert (user.email, user.first_name, user.last_name) == ("", "", "")
    assert not user.is_active and not user.has_usable_password()


def test_erasure_leaves_nothing_of_theirs_and_teammates_pull_the_deletes(scene, admin_user):
    alice, bob = scene.alice, scene.bob
    username, alice_id = alice.user.username, alice.user.pk
    bobs = {
        model: state_of(model, pk)
        for model, pk in ((Customer, scene.bobs_customer), (WorkOrder, scene.bobs_order))
    }
    assert Conflict.objects.filter(user=bob.user).count() == 2  # on his customer and on hers
    bobs_own_conflict = Conflict.objects.get(user=bob.user, object_id=scene.bobs_customer)
    bobs_history = Customer.history.model.objects.filter(id=scene.bobs_customer).count()

    report = user_data_erase(user=alice.user, by=admin_user)

    assert report.deleted == {CUSTOMER: 2, ORDER: 1, NOTE: 1}  # the live ones
    assert report.kept == {CUSTOMER: 1} and report.emptied == {}
    alice.user.username = username  # for the axes check, which goes by the old name
    assert_nothing_of_alice_remains(scene, alice_id, alice.device_id)
    # Bob's objects are untouched, and so is their history (hers on them included).
    for model, before in bobs.items():
        pk = scene.bobs_customer if model is Customer else scene.bobs_order
        assert state_of(model, pk) == before
    assert Customer.history.model.objects.filter(id=scene.bobs_customer).count() == bobs_history
    # His conflict on his own customer stays; his conflict on hers went with it.
    assert list(Conflict.objects.filter(user=bob.user)) == [bobs_own_conflict]
    # Bob's device learns of the deletes of what he saw, and nothing else.
    changes, _ = bob.pull_all(cursor=scene.bob_cursor)
    assert {(c["id"], c["op"]) for c in changes} == {(scene.shared[CUSTOMER], "delete")}
    # Her tokens no longer open anything.
    assert alice.client.get("/api/v1/sync/pull/").status_code == 401


def test_erasing_again_finishes_and_changes_nothing_more(scene):
    alice_id = scene.alice.user.pk
    user_data_erase(user=scene.alice.user)
    again = user_data_erase(user=get_user_model().objects.get(pk=alice_id))
    assert dict(again.deleted) == {} and dict(again.kept) == {CUSTOMER: 1}
    assert get_user_model().objects.get(pk=alice_id).username == f"erased-{alice_id}"


def test_erasure_of_a_user_without_teammates_deletes_every_row(make_actor):
    carol = make_actor()
    c = customer("Carol's")
    ok(carol.push_one(c))
    ok(carol.push_one(work_order(c["id"])))
    report = user_data_erase(user=carol.user)
    assert report.emptied == {}
    assert not Customer.objects.filter(owner=carol.user).exists()
    # The feed keeps the deletes (ids and versions, no values) for anyone mirroring everything.
    assert Change.objects.filter(object_id=c["id"], op=Change.Op.DELETE).exists()


def test_the_erase_command_needs_yes(scene):
    username = scene.alice.user.username
    with pytest.raises(CommandError, match="--yes"):
        call_command("user_data", "erase", username)
    assert get_user_model().objects.get(pk=scene.alice.user.pk).is_active
    out = StringIO()
    call_command("user_data", "erase", username, yes=True, stdout=out)
    assert f"erased-{scene.alice.user.pk}" in out.getvalue()
    assert "fieldwork.customer: 2" in out.getvalue()
    with pytest.raises(CommandError, match="No user"):
        call_command("user_data", "erase", username, yes=True)


# --- the admin ----------------------------------------------------------------------------


@pytest.fixture
def staff_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


CHANGELIST = "/admin/auth/user/"


def test_admin_exports_one_users_data_as_a_download(scene, staff_client):
    response = staff_client.post(
        CHANGELIST,
        {"action": "export_data", "_selected_action": [scene.alice.user.pk]},
        secure=True,
    )
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        f'attachment; filename="user-{scene.alice.user.pk}-data.json"'
    )
    data = json.loads(response.content)
    assert data["account"]["username"] == scene.alice.user.username


def test_admin_erases_after_a_confirmation_page(scene, staff_client, admin_user):
    alice_id = scene.alice.user.pk
    form = {"action": "erase_data", "_selected_action": [alice_id]}
    page = staff_client.post(CHANGELIST, form, secure=True)
    assert page.status_code == 200
    assert b"Yes, erase their data" in page.content
    assert get_user_model().objects.get(pk=alice_id).is_active  # nothing yet
    done = staff_client.post(CHANGELIST, {**form, "post": "yes"}, secure=True)
    assert done.status_code == 302
    assert get_user_model().objects.get(pk=alice_id).username == f"erased-{alice_id}"
    # Only the customer Bob's work order protects is left live.
    assert list(
        Customer.objects.filter(owner_id=alice_id, deleted_at__isnull=True).values_list(
            "pk", flat=True
        )
    ) == [uuid.UUID(scene.kept_customer)]


def test_admin_refuses_to_erase_the_staff_member_doing_it(staff_client, admin_user):
    response = staff_client.post(
        CHANGELIST,
        {"action": "erase_data", "_selected_action": [admin_user.pk], "post": "yes"},
        secure=True,
        follow=True,
    )
    assert b"cannot erase your own data" in response.content
    assert get_user_model().objects.get(pk=admin_user.pk).is_active


def test_admin_actions_need_the_permissions(scene):
    viewer = get_user_model().objects.create_user("viewer", password="pw-123456789", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_user"))
    client = Client()
    client.force_login(viewer)
    page = client.get(CHANGELIST, secure=True)
    assert page.status_code == 200
    assert b"export_data" not in page.content and b"erase_data" not in page.content
    client.post(
        CHANGELIST,
        {"action": "erase_data", "_selected_action": [scene.alice.user.pk], "post": "yes"},
        secure=True,
    )
    assert get_user_model().objects.get(pk=scene.alice.user.pk).is_active
