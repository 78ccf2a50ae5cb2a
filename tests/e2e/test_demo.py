"""`make demo` against a live server loaded with `make run`'s demo data."""

from __future__ import annotations

import pytest
from django.conf import global_settings
from django.core.management import call_command

from client import demo
from sync.models import Conflict

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_the_demo_merges_resolves_and_converges(live_gunicorn, tmp_path, settings, capsys):
    # The server checks passwords with the real hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    call_command("seed_demo")
    demo.run(live_gunicorn, tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert any("applied   written as sent" in line for line in lines)
    assert any("merged    the phone's title kept" in line for line in lines)
    assert any("conflict  title changed on both sides" in line for line in lines)
    assert any("/admin/sync/conflict/" in line and "/change/" in line for line in lines)
    assert "converged: 3 devices, 64 objects each" in lines
    # An app at equipment's version 1 and a current one edit the same boiler.
    assert "  demo-phone   applied" in lines and "  old-phone    merged" in lines
    assert any('serial SN-REPLACED, location "Main house, Boiler room"' in line for line in lines)
    assert any('room "Boiler room", kind boiler' in line for line in lines)
    assert "converged: 4 devices, 64 objects each" in lines
    # It leaves one conflict open for the admin's queue, and says where.
    assert "left open for staff" in lines[-2] and "/admin/sync/conflict/" in lines[-1]
    conflict_id = lines[-1].rstrip("/").split("/")[-2]
    assert Conflict.objects.get(pk=conflict_id).status == "open"
