"""Files on synced objects (docs/protocol.md, "Files"), through the API, on
both stores: the file system and a real S3 API server (moto, over HTTP).

A work order's `photo` is a `sync.BlobField`: the reference travels in the
feed, the bytes through uploads and short-lived links.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest
from django.core import signing
from django.utils import timezone

from config.celery import app as celery_app
from fieldwork.models import WorkOrder
from sync.engine import blobs, blobstore
from sync.models import Blob, BlobUpload, Conflict
from tests.factories import customer, team_of, update, work_order
from tests.sync.blob_helpers import (
    BUCKET,
    PART,
    get,
    png,
    put,
    reference,
    send_parts,
    sha,
    start,
    stored_keys,
    upload,
    use_local_storage,
    use_storage,
)

pytestmark = pytest.mark.django_db

ORDER = "fieldwork.workorder"


@pytest.fixture(params=["local", "s3"])
def store(request, settings, tmp_path) -> dict[str, Any]:
    """The blob store the test runs on; {"kind", "keys": () -> list[str]}."""
    if request.param == "local":
        root = use_local_storage(settings, tmp_path / "blobs")
        yield {"kind": "local", "keys": lambda: stored_keys("local", root, None, "")}
    else:
        server = request.getfixturevalue("s3_server")
        bucket = f"{BUCKET}-{os.urandom(4).hex()}"
        use_storage(settings, server.storage(bucket))
        yield {"kind": "s3", "keys": lambda: stored_keys("s3", None, server, bucket)}
    blobstore._store.cache_clear()


@pytest.fixture
def eager():
    """Tasks run at once, in this thread."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def order_with_photo(actor: Any, data: bytes | None, **extra: Any) -> dict:
    c = customer("Photo customer", **extra)
    wo = work_order(
        c["id"], "Fix the boiler", photo=reference(data) if data is not None else None, **extra
    )
    body = actor.push(c, wo)
    assert [r["status"] for r in body["results"]] == ["applied", "applied"], body
    return wo


def big(n: int) -> bytes:
    return os.urandom(n)


# --- the round trip ------------------------------------------------------------------------


def test_a_file_goes_up_in_parts_and_another_device_fetches_it(store, make_actor, eager):
    phone = make_actor()
    tablet = make_actor(user=phone.user)
    data = big(2 * PART + 1234)  # three parts
    wo = order_with_photo(phone, data)  # the reference first: data sync is not held up
    version = WorkOrder.objects.get(pk=wo["id"]).version

    body = start(phone, data).json()
    assert body["state"] == "pending" and len(body["parts"]) == 3
    assert [p["size"] for p in body["parts"]] == [PART, PART, 1234]
    send_parts(phone, body, data)
    done = phone.client.post(f"/api/v1/blobs/uploads/{body['upload_id']}/complete/")
    assert done.status_code == 200, done.content
    assert done.json()["state"] == "complete"

    # The object was bumped, so other devices pull it again and learn the bytes are there.
    assert WorkOrder.objects.get(pk=wo["id"]).version == version + 1
    blob = Blob.objects.get(pk=sha(data))
    assert blob.state == "complete" and blob.size == len(data)
    assert not BlobUpload.objects.exists()
    assert blob.key in store["keys"]()
    assert not any(k.startswith("uploads/") for k in store["keys"]())  # nothing left behind

    info = tablet.client.get(f"/api/v1/blobs/{sha(data)}/", {"name": "boiler.jpg"})
    assert info.status_code == 200, info.content
    status, content, headers = get(tablet.client, info.json()["url"])
    assert status == 200 and content == data
    assert "boiler.jpg" in headers.get("Content-Disposition", "")


def test_a_file_the_server_has_is_not_sent_again(store, make_actor):
    alice, bob = make_actor(), make_actor()
    data = big(1000)
    upload(alice, data)
    again = start(bob, data)
    assert again.status_code == 200
    assert again.json() == {
        "sha256": sha(data),
        "size": 1000,
        "content_type": "image/png",
        "state": "complete",
    }
    assert not BlobUpload.objects.exists()


def test_an_upload_resumes_after_a_dropped_connection(store, make_actor):
    phone = make_actor()
    data = big(2 * PART + 10)
    body = start(phone, data).json()
    send_parts(phone, body, data, only={1})
    # The connection drops in the middle of part 2: a short part never lands.
    part2 = body["parts"][1]
    short = put(phone.client, part2["url"], data[PART : PART + 100])
    assert short.status_code >= 400 or store["kind"] == "s3"
    # Later (another process, the app restarted): what is there, what is missing?
    resumed = phone.client.get(f"/api/v1/blobs/uploads/{body['upload_id']}/")
    assert resumed.status_code == 200
    parts = resumed.json()["parts"]
    assert parts[0]["done"] is True and "url" not in parts[0]
    assert [p["number"] for p in parts if not p["done"]] == [2, 3]
    # Asking again from the start finds the same upload.
    assert start(phone, data).json()["upload_id"] == body["upload_id"]
    send_parts(phone, resumed.json(), data)
    done = phone.client.post(f"/api/v1/blobs/uploads/{body['upload_id']}/complete/")
    assert done.status_code == 200, done.content
    assert Blob.objects.get(pk=sha(data)).state == "complete"


def test_bytes_that_do_not_match_their_sha256_never_become_the_blob(store, make_actor):
    phone = make_actor()
    data = big(3000)
    body = start(phone, data).json()
    send_parts(phone, body, bytes(reversed(data)))  # the same size, other bytes
    done = phone.client.post(f"/api/v1/blobs/uploads/{body['upload_id']}/complete/")
    assert done.status_code == 422 and done.json()["code"] == "blob_mismatch", done.content
    assert Blob.objects.get(pk=sha(data)).state == "pending"
    assert store["keys"]() == []  # nothing kept, the parts gone too
    assert not BlobUpload.objects.exists()
    assert upload(phone, data)["state"] == "complete"  # a new upload of the right bytes


def test_completing_with_parts_missing_says_which(store, make_actor):
    phone = make_actor()
    data = big(PART + 5)
    body = start(phone, data).json()
    send_parts(phone, body, data, only={2})
    done = phone.client.post(f"/api/v1/blobs/uploads/{body['upload_id']}/complete/")
    assert done.status_code == 409
    assert done.json()["code"] == "upload_incomplete" and done.json()["missing"] == [1]


# --- pushing references -----------------------------------------------------------------------


def test_a_push_may_name_a_file_not_uploaded_yet_and_its_reference_is_checked(
    local_blobs, make_actor
):
    phone = make_actor()
    wo = order_with_photo(phone, b"later")
    assert WorkOrder.objects.get(pk=wo["id"]).photo == reference(b"later")
    info = phone.client.get(f"/api/v1/blobs/{sha(b'later')}/")
    assert info.status_code == 200 and info.json()["state"] == "missing"
    assert "url" not in info.json()
    bad = phone.push(update(ORDER, wo["id"], 1, photo={"sha256": "abc", "size": 1}))
    result = bad["results"][0]
    assert result["status"] == "rejected"
    assert "sha256" in " ".join(result["errors"]["photo"])
    refused = phone.push(
        update(ORDER, wo["id"], 1, photo=reference(b"x", content_type="application/x-msdownload"))
    )
    assert refused["results"][0]["status"] == "rejected"
    assert "not taken here" in " ".join(refused["results"][0]["errors"]["photo"])


def test_discovery_says_what_a_file_field_takes(local_blobs, make_actor):
    models = make_actor().client.get("/api/v1/sync/models/").json()
    [orders] = [m for m in models if m["model"] == ORDER]
    photo = orders["fields"]["photo"]
    assert photo["type"] == "blob" and photo["nullable"] is True
    assert photo["max_size"] == 50 * 1024 * 1024
    assert "image/*" in photo["content_types"]


def test_two_devices_attaching_different_photos_to_one_field_make_a_conflict(
    local_blobs, make_actor
):
    phone = make_actor()
    tablet = make_actor(user=phone.user)
    wo = order_with_photo(phone, None)
    first, second = png(1), png(2)
    a = phone.push(update(ORDER, wo["id"], 1, photo=reference(first, name="before.png")))
    b = tablet.push(update(ORDER, wo["id"], 1, photo=reference(second, name="after.png")))
    assert a["results"][0]["status"] == "applied"
    assert b["results"][0]["status"] == "conflict"  # a reference merges as a whole value
    conflict = Conflict.objects.get(object_id=wo["id"])
    assert conflict.fields == ["photo"]
    assert conflict.server_data["photo"]["sha256"] == sha(first)
    assert conflict.client_data["photo"]["sha256"] == sha(second)


# --- limits ----------------------------------------------------------------------------------


def test_limits_and_quota_are_told_and_enforced(local_blobs, make_actor, settings):
    phone = make_actor()
    settings.SYNC_BLOB_QUOTA_BYTES = 5000
    settings.SYNC_BLOB_MAX_BYTES = 4000
    assert phone.client.get("/api/v1/blobs/").json() == {
        "max_size": 4000,
        "quota": 5000,
        "used": 0,
        "part_size": PART,
        "content_types": ["image/*", "application/pdf", "text/plain", "audio/*", "video/*"],
        "link_seconds": 300,
    }
    too_big = start(phone, big(4001))
    assert too_big.status_code == 413 and too_big.json()["code"] == "blob_too_large"
    upload(phone, big(3000))
    assert phone.client.get("/api/v1/blobs/").json()["used"] == 3000
    over = start(phone, big(2500))
    assert over.status_code == 413
    assert over.json()["code"] == "quota_exceeded" and over.json()["used"] == 3000
    refused = start(phone, b"MZ...", content_type="application/x-msdownload")
    assert refused.status_code == 415 and refused.json()["code"] == "blob_type_refused"
    bad = phone.client.post(
        "/api/v1/blobs/uploads/",
        {"sha256": "nope", "size": 3, "content_type": "image/png"},
        format="json",
    )
    assert bad.status_code == 400 and bad.json()["code"] == "bad_blob"


# --- who may fetch -----------------------------------------------------------------------------


def test_only_users_who_see_a_referring_object_get_a_link(local_blobs, make_actor):
    alice, bob, carol = make_actor(), make_actor(), make_actor()
    team = team_of(alice.user, bob.user)
    secret = png(7)
    order_with_photo(alice, secret, team=str(team.pk))
    upload(alice, secret)
    assert bob.client.get(f"/api/v1/blobs/{sha(secret)}/").status_code == 200  # on the team
    # Carol knows the sha256 but sees no object that refers to it.
    refused = carol.client.get(f"/api/v1/blobs/{sha(secret)}/")
    assert refused.status_code == 404 and refused.json()["code"] == "not_found"
    unknown = carol.client.get(f"/api/v1/blobs/{'0' * 64}/")
    assert unknown.status_code == 404  # the same answer: nothing learnt
    # A link for one file does not open another.
    other = png(8)
    upload(carol, other)
    link = carol.client.get(f"/api/v1/blobs/{sha(other)}/").json()["url"]
    token = link.split("signature=")[1]
    status, _, _ = get(
        carol.client, f"https://testserver/api/v1/blobs/{sha(secret)}/content/?signature={token}"
    )
    assert status == 403
    # Nor does a forged or expired one.
    assert get(carol.client, link.replace("signature=", "signature=x"))[0] == 403


def test_a_download_link_expires(local_blobs, make_actor, settings):
    alice = make_actor()
    data = png(3)
    order_with_photo(alice, data)
    upload(alice, data)
    link = alice.client.get(f"/api/v1/blobs/{sha(data)}/").json()["url"]
    assert get(alice.client, link)[0] == 200
    settings.SYNC_BLOB_LINK_SECONDS = -1
    status, body, _ = get(alice.client, link)
    assert status == 403 and b"link_expired" in body


def test_a_file_is_served_as_a_download_never_as_a_page(local_blobs, make_actor):
    alice = make_actor()
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    c = customer("X")
    alice.push(c, work_order(c["id"], "Y", photo=reference(svg, "image/svg+xml", "x.svg")))
    upload(alice, svg, "image/svg+xml")
    link = alice.client.get(f"/api/v1/blobs/{sha(svg)}/").json()["url"]
    status, _, headers = get(alice.client, link)
    assert status == 200
    assert headers["Content-Disposition"].startswith("attachment")
    assert "sandbox" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


# --- thumbnails ----------------------------------------------------------------------------


def test_an_image_gets_a_thumbnail_that_follows_its_scope(
    store, make_actor, eager, django_capture_on_commit_callbacks
):
    alice, carol = make_actor(), make_actor()
    image = png(5, side=1200)
    order_with_photo(alice, image)
    with django_capture_on_commit_callbacks(execute=True):  # the task is queued at commit
        upload(alice, image)
    info = alice.client.get(f"/api/v1/blobs/{sha(image)}/").json()
    thumb = info["thumbnail"]
    assert thumb is not None and thumb["content_type"] == "image/jpeg"
    status, content, _ = get(alice.client, thumb["url"])
    assert status == 200 and sha(content) == thumb["sha256"]
    import io

    from PIL import Image

    assert max(Image.open(io.BytesIO(content)).size) == 320
    assert carol.client.get(f"/api/v1/blobs/{thumb['sha256']}/").status_code == 404
    assert alice.client.get(f"/api/v1/blobs/{thumb['sha256']}/").status_code == 200


# --- collection --------------------------------------------------------------------------


def test_the_collector_deletes_only_what_nothing_refers_to(store, make_actor, settings):
    alice = make_actor()
    live, replaced, in_conflict, orphan = png(10), png(11), png(12), png(13)
    wo = order_with_photo(alice, replaced)
    for data in (live, replaced, in_conflict, orphan):
        upload(alice, data)
    alice.push(update(ORDER, wo["id"], 1, photo=reference(live)))  # `replaced` is history now
    tablet = make_actor(user=alice.user)
    clash = tablet.push(update(ORDER, wo["id"], 1, photo=reference(in_conflict)))
    assert clash["results"][0]["status"] == "conflict"
    stale = start(alice, big(100)).json()  # an upload started and forgotten

    later = timezone.now() + dt.timedelta(hours=25)
    out = blobs.blobs_collect(now=later)
    assert out.blobs == 1 + 1 and out.uploads == 1  # the orphan, and the forgotten upload's
    # The images still referred to got the thumbnails no task made (no worker here).
    assert out.thumbnails == 3
    remaining = set(Blob.objects.values_list("pk", flat=True))
    assert {sha(live), sha(replaced), sha(in_conflict)} <= remaining
    assert sha(orphan) not in remaining
    assert not BlobUpload.objects.filter(pk=stale["upload_id"]).exists()
    assert f"blobs/{sha(orphan)[:2]}/{sha(orphan)}" not in store["keys"]()
    assert f"blobs/{sha(live)[:2]}/{sha(live)}" in store["keys"]()

    # Past the retention window the replaced photo's history no longer holds it;
    # once the conflict is settled, neither does the conflict.
    settings.SYNC_RETENTION = dt.timedelta(seconds=0)
    Conflict.objects.update(status="dismissed")
    blobs.blobs_collect(now=later + dt.timedelta(seconds=1))
    remaining = set(Blob.objects.values_list("pk", flat=True))
    thumbnail = Blob.objects.get(pk=sha(live)).thumbnail_id
    assert thumbnail is not None
    assert remaining == {sha(live), thumbnail}  # the others' thumbnails went with them


def test_nothing_referenced_is_ever_collected_whatever_its_age(local_blobs, make_actor):
    alice = make_actor()
    data = png(20)
    wo = order_with_photo(alice, data)
    upload(alice, data)
    blobs.blobs_collect(now=timezone.now() + dt.timedelta(days=3650))
    assert Blob.objects.filter(pk=sha(data)).exists()
    WorkOrder.objects.filter(pk=wo["id"]).update(photo=None)  # by any writer
    blobs.blobs_collect(now=timezone.now() + dt.timedelta(hours=1))  # within the grace: kept
    assert Blob.objects.filter(pk=sha(data)).exists()


def test_part_links_are_signed_per_part(local_blobs, make_actor):
    phone = make_actor()
    data = big(PART + 1)
    body = start(phone, data).json()
    first, second = body["parts"]
    token = first["url"].split("signature=")[1]
    forged = second["url"].split("?")[0] + "?signature=" + token
    answer = put(phone.client, forged, data[PART:])
    assert answer.status_code == 403
    assert put(phone.client, second["url"].split("?")[0], data[PART:]).status_code == 403
    payload = signing.TimestampSigner(salt="other").sign_object({"u": body["upload_id"], "n": 2})
    assert (
        put(
            phone.client, second["url"].split("?")[0] + f"?signature={payload}", data[PART:]
        ).status_code
        == 403
    )


def test_links_have_their_own_rate_per_address(local_blobs, make_actor, settings, monkeypatch):
    """Many parts of one upload are not held to the anonymous rate; the
    links are still limited."""
    from django.core.cache import cache

    from sync.api.throttling import LinkRateThrottle

    cache.clear()
    monkeypatch.setitem(LinkRateThrottle.THROTTLE_RATES, "anon", "1/min")
    monkeypatch.setitem(LinkRateThrottle.THROTTLE_RATES, "link", "3/min")
    settings.SYNC_BLOB_PART_BYTES = 100
    phone = make_actor()
    data = big(450)  # five parts
    body = start(phone, data).json()
    answers = [
        put(phone.client, p["url"], data[(p["number"] - 1) * 100 : p["number"] * 100])
        for p in body["parts"]
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert answers[3].json()["code"] == "throttled" and answers[3]["Retry-After"]


def test_the_web_app_may_reach_the_bucket_its_links_point_to(store, client, settings, tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<head></head>")
    settings.WEBAPP_DIST = str(dist)
    policy = client.get("/app/", secure=True)["Content-Security-Policy"]
    connect = next(p for p in policy.split("; ") if p.startswith("connect-src"))
    if store["kind"] == "s3":
        endpoint = settings.STORAGES["sync_blobs"]["OPTIONS"]["endpoint_url"]
        assert connect == f"connect-src 'self' {endpoint} " + endpoint.replace(
            "//", f"//{settings.STORAGES['sync_blobs']['OPTIONS']['bucket_name']}.", 1
        )
    else:
        assert connect == "connect-src 'self'"
    assert "img-src 'self' data: blob:" in policy  # a photo shown from its bytes


def test_the_admin_lists_files_in_a_fixed_number_of_queries(local_blobs, make_actor, admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    alice = make_actor()

    def listed(count: int) -> int:
        while Blob.objects.count() < count:
            upload(alice, png(30 + Blob.objects.count()))
        with CaptureQueriesContext(connection) as queries:
            page = admin_client.get("/admin/sync/blob/", secure=True)
        assert page.status_code == 200
        assert page.content.decode().count('class="blob"') == count
        return len(queries.captured_queries)

    assert listed(3) == listed(12)  # not one query per file
