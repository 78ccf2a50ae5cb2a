"""A photo in the web app, in Chromium: taken (a file chosen) on one browser
offline, shown there at once from its own bytes, synced when the network is
back (the edit, then the bytes), and shown on another browser, fetched from
the server through a short-lived link."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from fieldwork.models import WorkOrder
from sync.models import Blob
from tests.browser.test_webapp import PASSWORD, seed
from tests.browser.test_webapp_tabs_push import (  # noqa: F401  (fixtures)
    built_webapp,
    log_in,
    new_context,
)
from tests.sync.blob_helpers import sha

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.browser,
]


def jpeg() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 480), (90, 130, 170))
    ImageDraw.Draw(image).rectangle((200, 120, 440, 400), fill=(230, 230, 225))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def shown(page: Any) -> bool:
    return bool(
        page.evaluate(
            "(() => { const i = document.querySelector('#photo-img');"
            " return !!i && i.complete && i.naturalWidth > 0; })()"
        )
    )


def test_a_photo_taken_offline_syncs_and_shows_on_another_browser(
    new_context: Callable[[], Any],  # noqa: F811
    local_blobs: Path,
) -> None:
    user = get_user_model().objects.create_user("photog", password=PASSWORD)
    ids = seed(user)
    image = jpeg()

    laptop = new_context().new_page()
    log_in(laptop, "photog", "/app/?poll=off")
    laptop.evaluate(f"location.hash = '#/wo/{ids['boiler']}'")
    laptop.locator("#photo-view", has_text="No photo yet.").wait_for()

    # Offline: the photo is kept in the browser and shown from there.
    laptop.context.set_offline(True)
    laptop.locator("#net.offline").wait_for()
    laptop.set_input_files(
        "#photo-input", files=[{"name": "boiler.jpg", "mimeType": "image/jpeg", "buffer": image}]
    )
    laptop.locator("#status-bar #pending", has_text="1 pending change").wait_for()
    laptop.locator("#photo-img").wait_for()
    assert shown(laptop)
    assert WorkOrder.objects.get(pk=ids["boiler"]).photo is None  # nothing left the browser

    # Back online: the edit, then the bytes.
    laptop.context.set_offline(False)
    laptop.locator("#status-bar #pending", has_text="No pending changes").wait_for()
    order = WorkOrder.objects.get(pk=ids["boiler"])
    assert order.photo == {
        "sha256": sha(image),
        "size": len(image),
        "content_type": "image/jpeg",
        "name": "boiler.jpg",
    }
    deadline = 50
    while not Blob.objects.filter(pk=sha(image), state="complete").exists():
        deadline -= 1
        assert deadline > 0, "the photo's bytes never arrived"
        laptop.wait_for_timeout(100)

    # Another browser of the same technician: fetched from the server when shown.
    tablet = new_context().new_page()
    log_in(tablet, "photog", "/app/?poll=off")
    tablet.evaluate(f"location.hash = '#/wo/{ids['boiler']}'")
    tablet.locator("#photo-img").wait_for()
    tablet.wait_for_timeout(200)
    assert shown(tablet)
    assert tablet.locator("#photo-view").inner_text().strip().endswith("boiler.jpg")
