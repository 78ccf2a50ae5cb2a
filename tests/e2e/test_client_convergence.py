"""Property: devices running the reference client over HTTP always converge.

A hypothesis state machine drives several devices (two of one user, one each
of two others; the users share teams) against gunicorn on PostgreSQL, through
the reference client (client/). In random interleavings they create, edit
and delete objects offline, sync, lose the answer to a push the server did
process (the client retries with the same mutation ids), crash with
mutations in flight and restart from disk, edit while a pull is on its way,
resolve their conflicts, join and leave teams, and have the change feed
compacted past the retention window (their cursors then get `410`).

Checked all along:
- after each completed sync, the device holds exactly the server's view of
  its user's scope (versions and data), computed by an independent oracle
  (tests/oracle.py), not by the server's scope code;
- no pulled page ever carries an object outside the user's scope;
- a local edit made while a pull is in flight is still there after it.
And at the end, once every device has synced twice:
- every device equals the server's view of its user;
- every write acknowledged `applied` or `merged` is in the object's history
  at that version, with that data (nothing acknowledged was lost);
- every result a device acted on is the server's stored first result for that
  mutation id, and every value an edit introduced was written at most once
  (nothing applied twice, however often it was resent).

`E2E_EXAMPLES` (default 30) and `E2E_STEPS` (default 50) size the run; see the
README for a long run.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from client import ApiError, ConflictSettled, NetworkError, StaleResolution
from fieldwork.services import team_member_add, team_member_remove
from sync.engine.compaction import feed_compact
from sync.models import MutationRecord
from tests.client_harness import FAST_RETRY, Device, FaultyNetwork
from tests.factories import TeamFactory, UserFactory
from tests.oracle import CUSTOMER, MODELS, NOTE, ORDER, server_state, wire_data

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("E2E_EXAMPLES", "30"))
STEPS = int(os.environ.get("E2E_STEPS", "50"))

DEVICE_USERS = (0, 0, 1, 2)  # the first user has two devices
TEAMS = 2
START_MEMBERS = ((0, 0), (1, 0), (1, 1), (2, 1))  # (user, team): everyone shares a team

# Free-text fields get a value never used before, so that a value written
# twice in an object's history means a mutation was applied twice.
TOKEN_FIELDS = {CUSTOMER: ("name", "phone"), ORDER: ("title", "description"), NOTE: ("body",)}
CHOICES = {
    CUSTOMER: ("email", [f"{n}@example.com" for n in ("a", "b", "c")]),
    ORDER: ("status", ["open", "scheduled", "in_progress", "done", "cancelled"]),
    NOTE: ("pinned", [True, False]),
}

device_index = st.integers(0, len(DEVICE_USERS) - 1)
picks = st.integers(0, 10**6)
edits = st.sampled_from(["token", "token2", "choice", "team"])
# An index into [no team, the user's teams...]; now and then (-1) a team the
# user is not in, which the server rejects.
team_choice = st.integers(-1, 6)


class ClientsOverHttp(RuleBasedStateMachine):
    base_url = ""  # set by the test
    workdir = Path()
    examples = itertools.count()
    tally: Counter[str] = Counter()  # what the run exercised, printed at the end

    def __init__(self) -> None:
        super().__init__()
        self.example = example = next(self.examples)
        self.tokens = itertools.count()
        self.users = [UserFactory() for _ in range(max(DEVICE_USERS) + 1)]
        self.teams = [TeamFactory() for _ in range(TEAMS)]
        self.member: dict[tuple[Any, Any], bool] = {
            (u.pk, t.pk): False for u in self.users for t in self.teams
        }
        for u, t in START_MEMBERS:
            self._join(self.users[u], self.teams[t])
        self.acknowledged: list[tuple[str, str, int, dict | None]] = []
        self.seen_results: dict[tuple[int, str], dict] = {}  # (user, mutation id) → result
        self.devices = [
            Device(
                self.workdir / f"example{example}-device{i}",
                self.users[u],
                FaultyNetwork(httpx.HTTPTransport()),
                self.base_url,
                page_size=7,  # several pages per sync, and resumed initial syncs
                on_result=self._result_recorder(self.users[u]),
            )
            for i, u in enumerate(DEVICE_USERS)
        ]
        # Something to share from the start: the user in both teams files a
        # customer, a work order and a note in each.
        seeder = self.devices[DEVICE_USERS.index(1)]
        self.shared: set[tuple[str, str]] = set()
        for team in self.teams:
            customer = seeder.client.create(
                CUSTOMER, {"name": self._token("n"), "team": str(team.pk)}
            )
            order = seeder.client.create(
                ORDER, {"customer": customer, "title": self._token("t"), "team": str(team.pk)}
            )
            note = seeder.client.create(
                NOTE, {"work_order": order, "body": self._token("b"), "team": str(team.pk)}
            )
            self.shared |= {(CUSTOMER, customer), (ORDER, order), (NOTE, note)}
        for device in self.devices:
            device.network.on_pull_page = self._page_checker(device)
            device.client.sync()

    # --- bookkeeping -----------------------------------------------------

    def _token(self, prefix: str) -> str:
        return f"{prefix}{self.example}.{next(self.tokens)}"

    def _join(self, user: Any, team: Any) -> None:
        team_member_add(team=team, user=user)
        self.member[(user.pk, team.pk)] = True

    def _result_recorder(self, user: Any):  # noqa: ANN202
        def record(entry: Any, result: dict) -> None:
            self.tally[f"result {result['status']}"] += 1
            for field, messages in (result.get("errors") or {}).items():
                self.tally[f"  rejected: {field}: {messages[0][:60]}"] += 1
            self.seen_results[(user.pk, entry.mutation_id)] = result
            if result["status"] in ("applied", "merged"):
                self.acknowledged.append(
                    (entry.model, result["id"], result["version"], result["data"])
                )

        return record

    def _page_checker(self, device: Device):  # noqa: ANN202
        def check(page: dict) -> None:
            visible = server_state(device.user, self.member)
            leaked = [
                (c["model"], c["id"])
                for c in page["changes"]
                if c["op"] == "upsert" and (c["model"], c["id"]) not in visible
            ]
            assert not leaked, f"pulled objects outside {device.user}'s scope: {leaked}"

        return check

    def _sync(self, device: Device) -> None:
        _standby_caught_up()
        report = device.client.sync()
        self.tally["initial sync again after a 410"] += report.resynced

    def _assert_converged(self, device: Device) -> None:
        assert device.state() == server_state(device.user, self.member)

    def _team_id(self, device: Device, team: int) -> str | None:
        if team < 0:
            strangers = [t for t in self.teams if not self.member[(device.user.pk, t.pk)]]
            return str(strangers[0].pk) if strangers else None
        mine = [t for t in self.teams if self.member[(device.user.pk, t.pk)]]
        options = [None, *(str(t.pk) for t in mine)]
        return options[team % len(options)]

    def _pick(self, device: Device, pick: int, model: str | None = None) -> tuple[str, str] | None:
        keys = sorted(device.client.all(model))
        # Half the time one of the objects shared from the start, so that
        # devices often edit the same objects: merges and conflicts.
        shared = [key for key in keys if key in self.shared]
        if shared and pick % 2:
            keys = shared
        return keys[pick // 2 % len(keys)] if keys else None

    def _changes(
        self, device: Device, model: str, edit: str, team: int, pick: int
    ) -> dict[str, Any]:
        if edit == "team":
            return {"team": self._team_id(device, team)}
        if edit == "choice":
            name, values = CHOICES[model]
            return {name: values[pick % len(values)]}
        fields = TOKEN_FIELDS[model]
        name = fields[0] if edit == "token" else fields[-1]
        return {name: self._token(name[0])}

    def _edit(self, device: Device, pick: int, edit: str, team: int) -> tuple | None:
        key = self._pick(device, pick)
        if key is None:
            return None
        changes = self._changes(device, key[0], edit, team, pick)
        if device.client.update(*key, changes) is None:
            return None  # nothing changed
        return key, changes

    @invariant()
    def count_steps(self) -> None:
        self.tally["steps"] += 1

    # --- what users do -----------------------------------------------------

    @rule(
        dev=device_index,
        model=st.sampled_from([CUSTOMER, ORDER, NOTE]),
        team=team_choice,
        pick=picks,
        follow_up=st.booleans(),
    )
    def create(self, dev: int, model: str, team: int, pick: int, follow_up: bool) -> None:
        device = self.devices[dev]
        customer = self._pick(device, pick, CUSTOMER)
        order = self._pick(device, pick, ORDER)
        team_id = self._team_id(device, team)
        if model == ORDER and customer:
            data = {"customer": customer[1], "title": self._token("t"), "team": team_id}
            if follow_up and order:
                data["follow_up_of"] = order[1]
        elif model == NOTE and order:
            data = {"work_order": order[1], "body": self._token("b"), "team": team_id}
        else:
            model, data = CUSTOMER, {"name": self._token("n"), "team": team_id}
        device.client.create(model, data)

    @rule(dev=device_index, pick=picks, edit=edits, team=team_choice)
    def update(self, dev: int, pick: int, edit: str, team: int) -> None:
        self._edit(self.devices[dev], pick, edit, team)

    @rule(dev=device_index, pick=picks)
    def delete(self, dev: int, pick: int) -> None:
        device = self.devices[dev]
        key = self._pick(device, pick)
        if key is not None:
            device.client.delete(*key)

    @rule(dev=device_index)
    def sync(self, dev: int) -> None:
        device = self.devices[dev]
        self._sync(device)
        assert device.client.store.pending() == []
        self._assert_converged(device)

    @rule(dev=device_index)
    def sync_losing_a_push_answer(self, dev: int) -> None:
        device = self.devices[dev]
        device.network.lose_push_answers = 1  # the retry gets the stored results
        self._sync(device)
        self.tally["push answer lost"] += device.network.lose_push_answers == 0
        device.network.lose_push_answers = 0
        self._assert_converged(device)

    @rule(dev=device_index)
    def crash_with_a_push_in_flight(self, dev: int) -> None:
        device = self.devices[dev]
        if not device.client.store.pending():
            return
        device.network.lose_push_answers = FAST_RETRY.attempts
        with pytest.raises(NetworkError):
            device.client.sync()
        self.tally["crash with a push in flight"] += 1
        device.network.lose_push_answers = 0
        device.restart()
        assert all(m.sent for m in device.client.store.next_batch())

    @rule(dev=device_index)
    def restart(self, dev: int) -> None:
        self.devices[dev].restart()

    @rule(dev=device_index, pick=picks, edit=edits, team=team_choice)
    def edit_while_pulling(self, dev: int, pick: int, edit: str, team: int) -> None:
        device = self.devices[dev]
        made: list[tuple] = []

        def edit_now() -> None:
            outcome = self._edit(device, pick, edit, team)
            if outcome is not None:
                made.append(outcome)

        device.network.after_pull = edit_now
        self._sync(device)
        device.network.after_pull = None
        self._assert_converged(device)  # the server copies: the pull completed
        if made:
            self.tally["edit during a pull"] += 1
            ((key, changes),) = made
            pending = [m for m in device.client.store.pending() if m.key == key]
            assert pending and pending[-1].data is not None
            assert pending[-1].data.items() >= changes.items()
            if device.client.store.server_copy(*key) is not None:
                shown = device.client.get(*key)
                if shown is not None:
                    assert shown.items() >= changes.items(), "the pull overwrote a local edit"

    @rule(dev=device_index, choice=st.sampled_from(["server", "client", "fields"]), pick=picks)
    def resolve(self, dev: int, choice: str, pick: int) -> None:
        # A device with an open conflict, starting from `dev`.
        holding = [d for d in self.devices[dev:] + self.devices[:dev] if d.client.conflicts()]
        if not holding:
            return
        client = holding[0].client
        conflicts = client.conflicts()
        conflict = conflicts[pick % len(conflicts)]
        values = None
        try:
            if choice == "fields":
                details = client.conflict_details(conflict.conflict_id)
                held = client.store.server_copy(conflict.model, conflict.object_id)
                mine = details["client_data"] or {}
                theirs = (held.data if held else None) or {}
                if details["kind"] == "delete_update" or not details["fields"]:
                    choice = "server"
                else:
                    values = {
                        f: theirs[f] if pick % 2 and f in theirs else mine.get(f)
                        for f in details["fields"]
                    }
            client.resolve(conflict.conflict_id, choice, values)
            self.tally[f"resolved ({choice})"] += 1
        except (StaleResolution, ConflictSettled) as exc:
            self.tally[f"resolve refused ({type(exc).__name__})"] += 1
        except ApiError as exc:
            # The user's values no longer fit (a team they left, a deleted
            # reference), or the object left their scope.
            assert exc.code in ("invalid", "not_found"), exc

    @rule(user=st.integers(0, max(DEVICE_USERS)), team=st.integers(0, TEAMS - 1))
    def join_or_leave(self, user: int, team: int) -> None:
        u, t = self.users[user], self.teams[team]
        if self.member[(u.pk, t.pk)]:
            team_member_remove(team=t, user=u)
            self.member[(u.pk, t.pk)] = False
        else:
            self._join(u, t)

    @rule()
    def time_passes_beyond_the_retention_window(self) -> None:
        # Tombstones older than SYNC_RETENTION go: lagging cursors get 410.
        feed_compact(now=timezone.now() + settings.SYNC_RETENTION + timedelta(days=1))

    # --- the end -------------------------------------------------------------

    def teardown(self) -> None:
        try:
            for device in self.devices:
                device.network.lose_push_answers = 0
                device.network.after_pull = None
            for _ in range(2):  # the first round pushes everything, the second pulls it
                for device in self.devices:
                    self._sync(device)
            for device in self.devices:
                assert device.client.store.pending() == []
                self._assert_converged(device)
            self._check_nothing_acknowledged_was_lost()
            self._check_nothing_was_applied_twice()
            self.tally["examples"] += 1
        finally:
            for device in self.devices:
                device.client.close()

    def _check_nothing_acknowledged_was_lost(self) -> None:
        for model, object_id, version, data in self.acknowledged:
            rows = MODELS[model].history.filter(id=object_id, version=version)
            if data is None:
                assert any(r.deleted_at is not None for r in rows), (model, object_id, version)
            else:
                assert any(wire_data(model, r) == data for r in rows), (model, object_id, version)
            assert MODELS[model].objects.get(pk=object_id).version >= version

    def _check_nothing_was_applied_twice(self) -> None:
        for (user_id, mutation_id), result in self.seen_results.items():
            record = MutationRecord.objects.get(user_id=user_id, mutation_id=mutation_id)
            assert record.result == result, "a device acted on another answer than the first"
        for device in self.devices:
            reached = {m for m in device.network.pushed}
            assert reached <= {m for (_, m) in self.seen_results}, "a result never arrived"
        introduced: Counter[str] = Counter()
        owners = [u.pk for u in self.users]
        for model, fields in TOKEN_FIELDS.items():
            rows = MODELS[model].history.filter(owner_id__in=owners).order_by("id", "history_id")
            previous: dict[str, Any] = {}
            for row in rows:
                for name in fields:
                    value, key = getattr(row, name), (str(row.id), name)
                    if value != previous.get(key):
                        if value:
                            introduced[value] += 1
                        previous[key] = value
        twice = [value for value, n in introduced.items() if n > 1]
        assert not twice, f"values written more than once: {twice}"


# Set by tests/scale/test_standby.py, which runs this test once with the
# server reading from a streaming standby: a device checks its state against
# the primary's right after syncing, so it syncs once the standby has
# replayed what others wrote (its own pushes' cursors are read on the
# primary whatever the lag).
STANDBY_URL = os.environ.get("E2E_STANDBY_URL", "")


def _standby_caught_up() -> None:
    if not STANDBY_URL:
        return
    import psycopg
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        (lsn,) = cursor.fetchone()
    with psycopg.connect(STANDBY_URL, autocommit=True) as standby:
        for _ in range(400):
            row = standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the standby did not catch up")


def test_devices_converge_over_http(live_gunicorn, tmp_path, settings):
    # Compaction here only stands for time passing beyond the tombstone window;
    # the stored push results (SYNC_MUTATION_LOG_DAYS) stay, as they do for a
    # device that is offline for less than that window.
    settings.SYNC_MUTATION_LOG_RETENTION = timedelta(days=3650)
    ClientsOverHttp.base_url = live_gunicorn
    ClientsOverHttp.workdir = tmp_path
    run_state_machine_as_test(
        ClientsOverHttp,
        settings=hypothesis_settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            print_blob=True,
        ),
    )
    tally = ", ".join(f"{k}: {v}" for k, v in sorted(ClientsOverHttp.tally.items()))
    print(f"\n{len(DEVICE_USERS)} devices; {tally}")
