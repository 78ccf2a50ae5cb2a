"""Two photos clash in one field: the staff's resolve page shows both, side
by side, in Chromium; staff take one, and the object gets it.

The README's picture of it (docs/conflict-photos.png) is this test's
screenshot, written over only with UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from fieldwork.models import WorkOrder
from sync.models import Conflict
from tests.browser.test_conflict_admin import log_in, page_url, staff_user
from tests.factories import customer, update, work_order
from tests.sync.blob_helpers import reference, upload

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.browser,
]

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "conflict-photos.png"
ORDER = "fieldwork.workorder"


def photo(label: str, sky: tuple[int, int, int], pipe: tuple[int, int, int]) -> bytes:
    """A made-up photo of a boiler: enough to tell two apart at a glance."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (480, 360), sky)
    draw = ImageDraw.Draw(image)
    draw.rectangle((150, 70, 330, 320), fill=(235, 235, 228), outline=(90, 90, 90), width=4)
    draw.rectangle((185, 110, 295, 170), fill=(40, 40, 48))
    draw.ellipse((215, 210, 265, 260), fill=pipe, outline=(60, 60, 60), width=3)
    draw.rectangle((230, 320, 250, 360), fill=pipe)
    draw.text((20, 20), label, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def test_staff_see_two_clashing_photos_side_by_side_and_keep_one(
    new_page: Any, make_actor: Any, local_blobs: Path
) -> None:
    phone = make_actor()
    tablet = make_actor(user=phone.user)
    c = customer("Elm Street Dental")
    wo = work_order(c["id"], "Boiler service")
    phone.push(c, wo)
    before = photo("phone: valve replaced", (96, 132, 170), (200, 120, 40))
    after = photo("tablet: vessel recharged", (120, 150, 110), (60, 120, 200))
    upload(phone, before, "image/jpeg")
    upload(tablet, after, "image/jpeg")
    mine = phone.push(
        update(ORDER, wo["id"], 1, photo=reference(before, "image/jpeg", "valve.jpg"))
    )
    theirs = tablet.push(
        update(ORDER, wo["id"], 1, photo=reference(after, "image/jpeg", "vessel.jpg"))
    )
    assert mine["results"][0]["status"] == "applied"
    assert theirs["results"][0]["status"] == "conflict"
    conflict = Conflict.objects.get(object_id=wo["id"], status="open")

    staff_user("boss")
    page = new_page()
    log_in(page, "boss")
    page.goto(page_url(str(conflict.pk)))
    row = page.locator("#row-photo")
    server_img = row.locator("td.server figure.blob img")
    client_img = row.locator("td.client figure.blob img")
    server_img.wait_for()
    client_img.wait_for()
    # Both really load (the admin's file view answers with the bytes).
    for img in (server_img, client_img):
        page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0", arg=img.element_handle()
        )
    assert "valve.jpg" in row.locator("td.server figcaption").inner_text()
    assert "vessel.jpg" in row.locator("td.client figcaption").inner_text()
    server_box, client_box = server_img.bounding_box(), client_img.bounding_box()
    assert server_box is not None and client_box is not None
    assert abs(server_box["y"] - client_box["y"]) < 5  # side by side
    assert client_box["x"] > server_box["x"] + server_box["width"]

    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    shot = page.screenshot(full_page=True)
    assert shot.startswith(b"\x89PNG") and len(shot) > 20_000
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.write_bytes(shot)

    row.get_by_label("take client").check()
    page.get_by_role("button", name="Resolve with the choices below").click()
    page.wait_for_url("**/admin/sync/conflict/")
    assert WorkOrder.objects.get(pk=wo["id"]).photo == reference(after, "image/jpeg", "vessel.jpg")
