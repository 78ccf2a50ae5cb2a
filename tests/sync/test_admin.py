"""The staff side: admin pages render, and grants made there go through the services."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from fieldwork.models import Customer, Team, TeamMembership
from sync.models import Change, ChannelGrant, GrantEvent
from tests.factories import TeamFactory, customer, update

pytestmark = pytest.mark.django_db

CUSTOMER = "fieldwork.customer"


@pytest.fixture
def staff() -> Client:
    admin = get_user_model().objects.create_superuser("staff", password="staff-pass-1234")
    client = Client(HTTP_X_FORWARDED_PROTO="https")
    client.force_login(admin)
    return client


def test_conflict_queue_and_synced_history_render(staff, alice):
    c = customer("Acme", phone="1")
    alice.push(c)
    alice.push_one(update(CUSTOMER, c["id"], 1, phone="2"))
    conflict = alice.push_one(update(CUSTOMER, c["id"], 1, phone="3"))
    assert conflict["status"] == "conflict"
    page = staff.get("/admin/sync/conflict/")
    assert page.status_code == 200 and c["id"] in page.content.decode()
    detail = staff.get(f"/admin/sync/conflict/{conflict['conflict_id']}/change/")
    assert detail.status_code == 200
    history = staff.get(f"/admin/fieldwork/customer/{c['id']}/history/")
    assert history.status_code == 200
    assert staff.get("/admin/fieldwork/customer/").status_code == 200
    assert staff.get("/admin/sync/change/").status_code == 200


def test_synced_models_are_edited_through_the_service(staff, alice):
    c = customer("Acme")
    alice.push(c)
    url = f"/admin/fieldwork/customer/{c['id']}/change/"
    assert staff.get("/admin/fieldwork/customer/add/").status_code == 200
    # A blind write, without the version the form was opened at, is refused ...
    response = staff.post(url, {"name": "Hacked", "owner": alice.user.pk})
    assert response.status_code == 200
    assert Customer.objects.get(pk=c["id"]).name == "Acme"
    # ... an edit at that version is a new version written by the service.
    response = staff.post(url, {"name": "Acme Ltd", "owner": alice.user.pk, "base_version": 1})
    assert response.status_code == 302
    obj = Customer.objects.get(pk=c["id"])
    assert (obj.name, obj.version) == ("Acme Ltd", 2)
    latest = obj.history.latest("history_id")
    assert (latest.history_user.username, latest.history_change_reason) == (
        "staff",
        "admin edit by staff",
    )
    assert Change.objects.filter(object_id=c["id"]).count() == 2


def test_grant_and_revoke_in_the_admin_go_through_the_service(staff, alice):
    response = staff.post(
        "/admin/sync/channelgrant/add/", {"user": alice.user.pk, "channel": "team:demo"}
    )
    assert response.status_code == 302, response.content
    grant = ChannelGrant.objects.get(user=alice.user, channel="team:demo")
    assert list(GrantEvent.objects.values_list("channel", "granted")) == [("team:demo", True)]
    response = staff.post(f"/admin/sync/channelgrant/{grant.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ChannelGrant.objects.exists()
    assert list(GrantEvent.objects.order_by("id").values_list("granted", flat=True)) == [
        True,
        False,
    ]


def test_team_membership_inline_grants_the_team_channel(staff, alice):
    team = TeamFactory(name="North")
    form = {
        "name": "North",
        "teammembership_set-TOTAL_FORMS": "1",
        "teammembership_set-INITIAL_FORMS": "0",
        "teammembership_set-MIN_NUM_FORMS": "0",
        "teammembership_set-MAX_NUM_FORMS": "1000",
        "teammembership_set-0-user": str(alice.user.pk),
        "teammembership_set-0-team": str(team.pk),
    }
    response = staff.post(f"/admin/fieldwork/team/{team.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert TeamMembership.objects.filter(team=team, user=alice.user).exists()
    assert ChannelGrant.objects.filter(user=alice.user, channel=f"team:{team.pk}").exists()
    assert Team.objects.count() == 1


def test_team_membership_inline_removal_revokes_the_team_channel(staff, alice):
    from fieldwork.services import team_member_add

    team = TeamFactory(name="South")
    team_member_add(team=team, user=alice.user)
    membership = TeamMembership.objects.get(team=team, user=alice.user)
    form = {
        "name": "South",
        "teammembership_set-TOTAL_FORMS": "1",
        "teammembership_set-INITIAL_FORMS": "1",
        "teammembership_set-MIN_NUM_FORMS": "0",
        "teammembership_set-MAX_NUM_FORMS": "1000",
        "teammembership_set-0-id": str(membership.pk),
        "teammembership_set-0-user": str(alice.user.pk),
        "teammembership_set-0-team": str(team.pk),
        "teammembership_set-0-DELETE": "on",
    }
    response = staff.post(f"/admin/fieldwork/team/{team.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not TeamMembership.objects.filter(team=team).exists()
    assert not ChannelGrant.objects.filter(user=alice.user).exists()
    assert GrantEvent.objects.filter(user=alice.user, granted=False).count() == 1


def test_every_model_the_admin_lists_is_named_in_plain_words(staff):
    """Not "Push outboxs": Django's plural is a trailing s unless the model says."""
    page = staff.get("/admin/", secure=True).content.decode()
    assert "Wake-ups waiting to be sent" in page
    assert "outboxs" not in page.lower()


def test_staff_announce_a_targeted_resync_in_the_admin(staff, alice):
    from sync.models import Resync

    alice.push(customer("Acme"))
    _, cursor = alice.pull_all()
    page = staff.get("/admin/sync/resync/add/")
    assert page.status_code == 200 and "fieldwork.equipment" in page.content.decode()
    done = staff.post(
        "/admin/sync/resync/add/", {"model": "fieldwork.customer", "reason": "restored"}
    )
    assert done.status_code == 302, done.content
    assert list(Resync.objects.values_list("model", "reason")) == [
        ("fieldwork.customer", "restored")
    ]
    refused = alice.client.get("/api/v1/sync/pull/", {"cursor": cursor})
    assert (refused.status_code, refused.json()["models"]) == (410, ["fieldwork.customer"])
    assert (
        staff.post("/admin/sync/resync/add/", {"model": "fieldwork.team", "reason": ""}).status_code
        == 200
    )  # not a synced model: the form says so
    assert Resync.objects.count() == 1
    assert staff.get("/admin/sync/resync/").status_code == 200
