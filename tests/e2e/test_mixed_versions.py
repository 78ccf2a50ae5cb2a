"""Property: old and new apps, side by side, converge across schema changes.

A hypothesis state machine drives four devices of one technician against
gunicorn on PostgreSQL through the reference client: one app speaks the
current schema, one was built against `fieldwork.equipment` version 1
(`serial`, `location`), one against version 3 (`building` and `room`, no
`kind`), and one starts at version 1 and is upgraded to the current
version mid-run (its next pull fetches equipment again). They create, edit
and delete equipment in random interleavings, each in its own app's shape;
meanwhile the server rewrites a column outside the feed and announces a
targeted re-sync (`sync.resync`), as a data migration does.

Checked after every sync of a device: it holds exactly the server's
equipment of its user, versions and data, in the shape of its app's version,
computed here from the database rows, not by the translation code under
test. At the end every device syncs twice and is checked again.

`MIXED_EXAMPLES` (default 8) and `MIXED_STEPS` (default 40) size the run.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import transaction
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

import sync
from fieldwork.models import Customer, Equipment
from sync.writers import service_writes
from tests.client_harness import Device, FaultyNetwork
from tests.factories import UserFactory
from tests.oracle import wire_value

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("MIXED_EXAMPLES", "8"))
STEPS = int(os.environ.get("MIXED_STEPS", "40"))

EQUIPMENT = "fieldwork.equipment"
OTHERS = {"fieldwork.customer": 1, "fieldwork.workorder": 1, "fieldwork.note": 1}
# Each device's app: the equipment version it speaks (None: the current one).
APPS = {"new": None, "v1": 1, "v3": 3, "upgraded": 1}
CURRENT = 4
NAMES = ["Boiler, wall-hung", "Heat pump", "Water heater 80 l", "Pressure vessel"]

# The wire fields of equipment at each version, written out here from the
# demo's history (fieldwork/sync_registration.py), independently of the
# translation code (sync.schema).
SYSTEM = ["owner", "created_at", "updated_at"]
FIELDS_V4 = ["customer", "name", "serial_number", "building", "room", "kind", "installed_on"]


def shape(row: Equipment, version: int) -> dict[str, Any]:
    """An equipment row as an app at `version` sees it."""
    data = {
        "customer": str(row.customer_id),
        "name": row.name,
        "installed_on": wire_value(row.installed_on),
        "team": None if row.team_id is None else str(row.team_id),
        "owner": row.owner_id,
        **{name: wire_value(getattr(row, name)) for name in SYSTEM[1:]},
    }
    if version >= 4:
        data["kind"] = row.kind
    if version >= 3:
        data["building"], data["room"] = row.building, row.room
    else:
        data["location"] = ", ".join(p for p in (row.building, row.room) if p)
    data["serial_number" if version >= 2 else "serial"] = row.serial_number
    return data


# What each app may edit, in its own shape.
EDITABLE = {
    1: {"name": NAMES, "serial": None, "location": None},
    3: {"name": NAMES, "serial_number": None, "building": None, "room": None},
    4: {"name": NAMES, "serial_number": None, "room": None, "kind": ["boiler", "other"]},
}


class MixedVersions(RuleBasedStateMachine):
    base_url = ""
    workdir = Path()
    examples = itertools.count()
    tally: Counter[str] = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.example = next(self.examples)
        self.tokens = itertools.count()
        self.user = UserFactory()
        self.devices: dict[str, Device] = {}
        for name, version in APPS.items():
            options: dict[str, Any] = {"page_size": 5}
            if version is not None:
                options["schema"] = {**OTHERS, EQUIPMENT: version}
            self.devices[name] = Device(
                self.workdir / f"example{self.example}-{name}",
                self.user,
                FaultyNetwork(httpx.HTTPTransport()),
                self.base_url,
                **options,
            )
        self.customer = self.devices["new"].client.create("fieldwork.customer", {"name": "Acme"})
        self.devices["new"].client.sync()
        # Something to edit from the start: a piece each, in each app's shape.
        for name in self.devices:
            self.create(name, NAMES[0])
        for _ in range(2):
            for device in self.devices.values():
                device.client.sync()

    def _token(self, prefix: str) -> str:
        return f"{prefix}{self.example}.{next(self.tokens)}"

    def _version(self, name: str) -> int:
        schema = self.devices[name].options.get("schema")
        return CURRENT if schema is None else schema[EQUIPMENT]

    def _editable(self, name: str) -> dict[str, Any]:
        version = self._version(name)
        return EDITABLE[1 if version < 3 else version]

    def _local_ids(self, name: str) -> list[str]:
        return sorted(oid for (model, oid) in self.devices[name].client.all(EQUIPMENT))

    # --- rules ---------------------------------------------------------------

    @rule(name=st.sampled_from(sorted(APPS)), title=st.sampled_from(NAMES))
    def create(self, name: str, title: str) -> None:
        version = self._version(name)
        data: dict[str, Any] = {"customer": self.customer, "name": title}
        if version < 3:
            data.update(serial=self._token("s"), location=f"{self._token('b')}, Cellar")
        else:
            data.update(serial_number=self._token("s"), building=self._token("b"), room="Cellar")
        if version >= 4:
            data["kind"] = "boiler"
        self.devices[name].client.create(EQUIPMENT, data)
        self.tally[f"create at version {version}"] += 1

    @rule(name=st.sampled_from(sorted(APPS)), pick=st.integers(0, 20), what=st.integers(0, 20))
    def edit(self, name: str, pick: int, what: int) -> None:
        ids = self._local_ids(name)
        if not ids:
            return
        fields = self._editable(name)
        field = sorted(fields)[what % len(fields)]
        choices = fields[field]
        if choices is not None:
            value = choices[pick % len(choices)]
        elif field == "location":
            value = f"{self._token('b')}, {self._token('r')}"
        else:
            value = self._token(field[0])
        self.devices[name].client.update(EQUIPMENT, ids[pick % len(ids)], {field: value})
        self.tally[f"edit {field}"] += 1

    @rule(name=st.sampled_from(sorted(APPS)), pick=st.integers(0, 20))
    def delete(self, name: str, pick: int) -> None:
        ids = self._local_ids(name)
        if ids:
            self.devices[name].client.delete(EQUIPMENT, ids[pick % len(ids)])
            self.tally["delete"] += 1

    @rule(name=st.sampled_from(sorted(APPS)))
    def sync(self, name: str) -> None:
        report = self.devices[name].client.sync()
        self.tally["sync"] += 1
        for status, count in report.pushed.items():
            self.tally[f"pushed {status}"] += count
        self.tally["fetched equipment again"] += EQUIPMENT in report.refetched
        self._check(name)

    @rule()
    def upgrade_app(self) -> None:
        """The `upgraded` device's app is updated to the current version: same
        store, outbox and cursor; its next pull fetches equipment again."""
        device = self.devices["upgraded"]
        if device.options["schema"][EQUIPMENT] == CURRENT:
            return
        device.options["schema"] = {**OTHERS, EQUIPMENT: CURRENT}
        device.restart()
        self.tally["app upgraded"] += 1

    @rule()
    def backfill(self) -> None:
        """A data migration rewrites rooms outside the feed, then announces it."""
        room = self._token("plant")
        with transaction.atomic(), service_writes():
            changed = Equipment.objects.filter(owner=self.user, deleted_at__isnull=True).update(
                room=room
            )
        if changed:
            sync.resync(Equipment, reason="rooms backfilled")
            self.tally["re-sync announced"] += 1

    def teardown(self) -> None:
        try:
            for _ in range(2):
                for device in self.devices.values():
                    device.client.sync()
            for name in self.devices:
                self._check(name)
                assert not self.devices[name].client.store.pending(), name
        finally:
            for device in self.devices.values():
                device.client.close()

    # --- the check ------------------------------------------------------------

    def _check(self, name: str) -> None:
        device = self.devices[name]
        version = self._version(name)
        expected = {
            str(row.pk): (row.version, shape(row, version))
            for row in Equipment.objects.filter(owner=self.user, deleted_at__isnull=True)
        }
        held = {
            object_id: (copy.version, copy.data)
            for (model, object_id), copy in device.client.store.server_copies(EQUIPMENT).items()
            if copy.data is not None
        }
        differ = {
            k: (held.get(k), expected.get(k))
            for k in held.keys() | expected.keys()
            if held.get(k) != expected.get(k)
        }
        assert not differ, f"{name} (equipment version {version}) differs: {differ}"
        assert Customer.objects.filter(pk=self.customer).exists()


def test_old_and_new_apps_converge_across_schema_changes(live_gunicorn, tmp_path):
    MixedVersions.base_url = live_gunicorn
    MixedVersions.workdir = tmp_path
    run_state_machine_as_test(
        MixedVersions,
        settings=hypothesis_settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            print_blob=True,
        ),
    )
    tally = ", ".join(f"{k}: {v}" for k, v in sorted(MixedVersions.tally.items()))
    print(f"\n{len(APPS)} devices; {tally}")
    assert MixedVersions.tally["app upgraded"] and MixedVersions.tally["re-sync announced"]
