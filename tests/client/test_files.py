"""Files through the reference client (client/files.py): attach, upload in
parts after the data, resume after a dropped connection and a restart, fetch
on demand, on the file-system store (in process) and on S3 (moto's server)."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from client import FileNotReady
from fieldwork.models import WorkOrder
from sync.engine import blobstore
from sync.models import Blob
from tests.client_harness import FaultyNetwork
from tests.sync.blob_helpers import PART, sha, use_local_storage, use_storage

pytestmark = pytest.mark.django_db

ORDER = "fieldwork.workorder"
CUSTOMER = "fieldwork.customer"


@pytest.fixture(params=["local", "s3"])
def store(request, settings, tmp_path) -> Any:
    if request.param == "local":
        use_local_storage(settings, tmp_path / "blobs")
    else:
        server = request.getfixturevalue("s3_server")
        use_storage(settings, server.storage(f"client-{os.urandom(4).hex()}"))
    yield request.param
    blobstore._store.cache_clear()


def new_order(device: Any, photo: dict | None = None) -> str:
    c = device.client.create(CUSTOMER, {"name": "Harbour Bakery"})
    data = {"customer": c, "title": "Oven door", "photo": photo}
    return device.client.create(ORDER, data)


def test_a_photo_taken_on_one_device_is_shown_on_another(store, make_device):
    phone = make_device()
    tablet = make_device(user=phone.user)
    photo = os.urandom(PART + 4321)
    ref = phone.client.files.attach(photo, content_type="image/jpeg", name="oven.jpg")
    assert ref == {
        "sha256": sha(photo),
        "size": len(photo),
        "content_type": "image/jpeg",
        "name": "oven.jpg",
    }
    order = new_order(phone, ref)
    report = phone.client.sync()
    assert report.uploaded == [sha(photo)]
    assert Blob.objects.get(pk=sha(photo)).state == "complete"
    assert WorkOrder.objects.get(pk=order).photo == ref

    tablet.client.sync()
    shown = tablet.client.get(ORDER, order)
    assert shown is not None and shown["photo"] == ref
    path = tablet.client.files.fetch(shown["photo"])
    assert path.read_bytes() == photo
    # Kept: the second look costs no request.
    before = len(tablet.network.requests)
    assert tablet.client.files.fetch(ref) == path
    assert len(tablet.network.requests) == before


def part(request: Any) -> int | None:
    """The part number a request sends: the server's part URL, or S3's UploadPart."""
    if request.method != "PUT":
        return None
    if "/parts/" in request.url.path:
        return int(request.url.path.rstrip("/").rsplit("/", 1)[1])
    number = request.url.params.get("partNumber")
    return int(number) if number else None


def test_an_upload_survives_a_dropped_connection_and_a_restart(store, make_device):
    # Parts go to the server's part URL (file system) or straight to S3: both
    # through a network the test can cut.
    links = FaultyNetwork(httpx.HTTPTransport())
    phone = make_device(link_transport=links)
    photo = os.urandom(2 * PART + 99)  # three parts
    order = new_order(phone, phone.client.files.attach(photo, content_type="image/jpeg"))
    network = phone.network if store == "local" else links

    # The connection drops while the second part is on its way.
    network.drop = lambda request: part(request) == 2
    with pytest.raises(Exception) as failed:  # noqa: PT011 - NetworkError, after its retries
        phone.client.sync()
    assert type(failed.value).__name__ == "NetworkError"
    # The data went first: the work order is on the server, its photo still missing.
    assert WorkOrder.objects.get(pk=order).photo["sha256"] == sha(photo)
    assert Blob.objects.get(pk=sha(photo)).state == "pending"

    # The app is killed and started again; the network is back.
    network.drop = None
    phone.restart()
    sent_before = [part(r) for r in network.requests if part(r)]
    assert sent_before[0] == 1 and set(sent_before[1:]) == {2}  # part 2 tried, with retries
    report = phone.client.sync()
    assert report.uploaded == [sha(photo)]
    sent_after = [part(r) for r in network.requests if part(r)][len(sent_before) :]
    assert sent_after == [2, 3]  # part 1 was not sent again
    assert Blob.objects.get(pk=sha(photo)).state == "complete"
    assert not phone.client.store.pending_uploads()


def test_a_file_not_uploaded_yet_is_said_so(make_device, local_blobs):
    phone = make_device()
    tablet = make_device(user=phone.user)
    ref = phone.client.files.attach(b"not yet", content_type="text/plain", name="n.txt")
    order = new_order(phone, ref)
    phone.client.push()  # the data only; the bytes wait for the next full sync
    tablet.client.sync()
    with pytest.raises(FileNotReady) as waiting:
        tablet.client.files.fetch(tablet.client.get(ORDER, order)["photo"])
    assert waiting.value.state == "missing"
    phone.client.sync()
    assert tablet.client.files.fetch(ref).read_bytes() == b"not yet"


def test_a_file_not_sent_keeps_the_account_signed_in_and_another_user_never_sends_it(
    make_device, local_blobs
):
    from client import UnsentChanges
    from tests.factories import UserFactory

    phone = make_device()
    ref = phone.client.files.attach(b"unsent", content_type="text/plain", name="u.txt")
    new_order(phone, ref)
    phone.client.push()  # the edit went; the file did not
    phone.network.drop = lambda request: "/blobs/" in request.url.path
    with pytest.raises(UnsentChanges, match="1 file"):
        phone.client.logout()
    assert phone.client.store.pending_uploads()  # kept for the next try

    # Another user signs in on this device: the first one's files are gone.
    other = UserFactory()
    phone.network.drop = None
    from sync.accounts.services import token_issue

    phone.client.use_token(other.username, token_issue(user=other, name="other")[1])
    assert not phone.client.store.pending_uploads()
    assert not phone.client.files.has(ref["sha256"])


def test_an_image_s_thumbnail_can_be_fetched_for_a_list(make_device, local_blobs):
    from tests.sync.blob_helpers import png

    phone = make_device()
    tablet = make_device(user=phone.user)
    image = png(9, side=900)
    ref = phone.client.files.attach(image, content_type="image/png", name="big.png")
    new_order(phone, ref)
    phone.client.sync()
    with pytest.raises(FileNotReady) as none_yet:  # no worker has made it yet
        tablet.client.files.fetch(ref, thumbnail=True)
    assert none_yet.value.state == "no_thumbnail"
    from sync.tasks import blob_thumbnail

    blob_thumbnail(ref["sha256"])  # the task, as a worker runs it
    small = tablet.client.files.fetch(ref, thumbnail=True)
    assert 0 < small.stat().st_size < len(image)
    assert not tablet.client.files.has(ref["sha256"])  # the image itself is not fetched


def test_a_lost_answer_to_complete_is_not_an_error(make_device, local_blobs):
    phone = make_device()
    ref = phone.client.files.attach(b"complete me", content_type="text/plain", name="c.txt")
    new_order(phone, ref)
    phone.network.lose_answer = lambda request: request.url.path.endswith("/complete/")
    report = phone.client.sync()  # the retried complete finds the upload gone, asks: complete
    assert report.uploaded == [ref["sha256"]]
    assert Blob.objects.get(pk=ref["sha256"]).state == "complete"
    assert not phone.client.store.pending_uploads()
