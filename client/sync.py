"""`SyncClient`: one device, its store, and the sync loop.

    client = SyncClient("~/.fieldwork/phone", base_url="https://sync.example.com")
    client.login("alice", "…")            # once; the token is kept in the store
    client.register_device(platform="android", name="Pixel 8")
    order = client.create("fieldwork.workorder", {"customer": cid, "title": "Fix boiler"})
    client.update("fieldwork.workorder", order, {"status": "done"})   # offline is fine
    report = client.sync(progress=print)  # push the outbox, then pull
    client.follow(stop)                   # while on screen: live pulls until stop.set()

The loop and how each answer is handled are explained step by step in
`client/README.md`.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from client.errors import (
    ApiError,
    ConflictSettled,
    NetworkError,
    NotFound,
    NotLoggedIn,
    StaleResolution,
    UnsentChanges,
    UpgradeRequired,
    ValidationError,
)
from client.files import Files
from client.http import (
    SCHEMA_VERSION,
    Api,
    Deprecation,
    Response,
    RetryPolicy,
    TransferStats,
    schema_header,
)
from client.schema import Errors, ModelSpec
from client.store import Data, LocalConflict, Mutation, Rejection, Store

PUSH_BATCH = 500  # the server's maximum per push (docs/protocol.md, "Push")
DEFAULT_URL = "http://127.0.0.1:8000"
PULL_PATH = "/api/v1/sync/pull/"
LIVE_PATH = "/api/v1/sync/live/"
# A live pull is answered when its wait ends at the latest; this much more
# covers the network and the server's own reading before it counts as lost.
LIVE_TIMEOUT_MARGIN = 15.0
# Polls (a sync every `poll_every`) after a 429, or while the live server
# cannot be reached, before a live pull is tried again.
POLLS_BEFORE_LIVE = 3
# follow() decides what each failure of a live pull means (fall back to
# polling, back off, resync): none is retried in place.
LIVE_RETRY = RetryPolicy(attempts=1)
# Targeted re-fetches (410 naming models) one sync goes through: each is
# answered with a cursor that has taken it in, so a second in a row only comes
# from a re-sync made meanwhile. Past these, a further one is taken as a full
# start-over (an initial sync of everything), which always ends.
MAX_REFETCHES = 3


@dataclass(frozen=True)
class Progress:
    """Handed to the progress callback after each pulled page."""

    pulled: int  # changes received so far in this sync
    remaining: int  # the server's estimate of what is still to come (approximate)
    initial: bool  # an initial sync: the one worth a progress bar

    @property
    def total(self) -> int:
        return self.pulled + self.remaining


@dataclass
class SyncReport:
    pushed: Counter[str] = field(default_factory=Counter)  # results by status
    pulled: int = 0  # changes received
    initial: bool = False  # this sync (re)built the store from scratch
    resynced: bool = False  # because the cursor was refused (410 / bad_cursor)
    refetched: list[str] = field(default_factory=list)  # models fetched again (410 naming them)
    conflicts: list[str] = field(default_factory=list)  # conflict ids opened
    rejected: list[str] = field(default_factory=list)  # mutation ids rejected
    uploaded: list[str] = field(default_factory=list)  # sha256 of files sent (client/files.py)


@dataclass(frozen=True)
class Status:
    server: str
    username: str | None
    device_id: str | None
    last_sync: str | None
    initial_sync_done: bool
    objects: int
    pending: list[Mutation]
    open_conflicts: list[LocalConflict]
    rejections: list[Rejection]
    deprecation: Deprecation | None = None


ResultHook = Callable[[Mutation, Mapping[str, Any]], None]


class SyncClient:
    """A device: its local store (under `state_dir`) and its conversation with
    the server. Safe to drop at any moment and reopen from the same directory.

    `app_version` is the app's version (`X-App-Version`), checked by the
    server against the platform's minimum. `schema` is the version of each
    model the app was built against (discovery's `version` then), sent as
    `X-Schema-Version`: the server translates to and from it, and leaves out
    the models it does not name. None: the app speaks the current schema.
    Both belong to the build of the app, so they are given each time the
    client is opened, not kept in the store.
    """

    def __init__(
        self,
        state_dir: str | Path,
        *,
        base_url: str | None = None,
        live_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = 500,
        on_result: ResultHook | None = None,
        app_version: str | None = None,
        schema: Mapping[str, int] | None = None,
        link_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).expanduser()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.state_dir / "store.sqlite3")
        if base_url and base_url.rstrip("/") != self.store.get("base_url"):
            self.store.set("base_url", base_url.rstrip("/"))
            # Live pulls served elsewhere belong to that server, not this one.
            self.store.set("live_url", None)
        if live_url:
            self.store.set("live_url", live_url.rstrip("/"))
        self.page_size = page_size
        self.on_result = on_result
        self.app_version = app_version
        self.schema = {label.lower(): int(v) for label, v in schema.items()} if schema else None
        if schema is not None and not schema:
            raise ValueError("schema names no model: the app would sync nothing")
        # What the outbox entries made now are tagged with (Store.queue).
        self._schema_header = schema_header(self.schema) if self.schema is not None else None
        self.api = Api(
            self.server,
            token=self.store.get("token"),
            device_id=self.store.get("device_id"),
            transport=transport,
            retry=retry,
            sleep=sleep,
            app_version=app_version,
            schema=self.schema,
            outbox=self.store.outbox_state,
            link_transport=link_transport,
        )
        self._specs: dict[str, ModelSpec] | None = None
        self.files = Files(self)
        # One sync, push or pull at a time (a push timer, a push notification
        # and follow() may each start one, on threads of their own); local
        # edits need no lock of their own (store.py).
        self._syncing = threading.Lock()

    def close(self) -> None:
        self.api.close()
        self.store.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def server(self) -> str:
        return self.store.get("base_url") or DEFAULT_URL

    @property
    def live_server(self) -> str:
        """Where live pulls go: the server, unless they are served elsewhere."""
        return self.store.get("live_url") or self.server

    @property
    def username(self) -> str | None:
        return self.store.get("username")

    @property
    def device_id(self) -> str | None:
        return self.store.get("device_id")

    @property
    def stats(self) -> TransferStats:
        return self.api.stats

    @property
    def deprecation(self) -> Deprecation | None:
        """What the last pull or push said of this app version's deprecation
        (`Deprecation` / `Sunset` / `Link` headers), for a "please update by
        …" notice; None when it was not deprecated. Kept in the store."""
        kept = self.store.get("deprecation")
        return Deprecation.from_wire(json.loads(kept)) if kept else None

    # --- account and device ----------------------------------------------

    def login(self, username: str, password: str) -> None:
        """Get a token and keep it (a phone keeps it in the Keystore/Keychain).

        Raises `ApiError` with code `invalid_credentials` (400) or `throttled`
        (429, with `retry_after`) for the app to show.
        """
        response = self.api.request(
            "POST", "/api/v1/auth/token/", json_body={"username": username, "password": password}
        )
        self.use_token(username, response.body["token"])

    def use_token(self, username: str, token: str) -> None:
        """Sign in with a token obtained elsewhere (a test, a provisioning tool)."""
        if self.username not in (None, username):
            # A cursor and the local data belong to one account
            # (docs/protocol.md, "Cursors"): another user starts afresh, on a
            # device id of their own.
            self.store.forget_account()
            self.files.forget()
            self.api.device_id = None
        self.store.set("username", username)
        self.store.set("token", token)
        self.api.token = token

    def logout(self, *, everywhere: bool = False, discard_unsent: bool = False) -> int:
        """Sign out (docs/protocol.md, "Logging out"): push the outbox first,
        so that nothing edited offline is lost because its author signed out;
        unregister this device (no more wake-ups for it); revoke the token (or
        every token of the user, `everywhere`); forget the account's local
        data. Returns how many tokens were revoked.

        Raises `UnsentChanges` when edits could not be pushed (offline, or
        refused for a reason a retry would not fix) unless `discard_unsent`.
        """
        if (self.store.pending() or self.store.pending_uploads()) and not discard_unsent:
            try:
                self.sync()
            except (NetworkError, ApiError):
                pass  # what could not be sent is counted just below
            left = len(self.store.pending())
            files = len(self.store.pending_uploads())
            if left or files:
                raise UnsentChanges(
                    f"{left} edit(s) and {files} file(s) could not be sent; sync again, or "
                    "log out with discard_unsent=True to drop them."
                )
        revoked = 0
        try:
            if self.device_id:
                self._call("DELETE", f"/api/v1/devices/{self.device_id}/", expect=(204, 404))
            body = {"everywhere": everywhere}
            revoked = self._call("POST", "/api/v1/auth/logout/", json_body=body).body["revoked"]
        except NotLoggedIn:
            pass  # the token was revoked or expired already: signed out anyway
        self.store.forget_account()
        self.files.forget()
        self.api.token = None
        self.api.device_id = None
        return int(revoked)

    def register_device(self, *, platform: str = "android", name: str | None = None) -> str:
        """Register this installation; idempotent. Returns the device id.

        The id is generated once and kept; `409 device_taken` (someone else
        registered it) makes a new one (docs/protocol.md, "Writing a client").
        """
        body: dict[str, Any] = {"platform": platform}
        if name:
            body["name"] = name
        if self.app_version:
            body["app_version"] = self.app_version
        for _ in range(3):
            device_id = self.device_id or str(uuid.uuid4())
            try:
                self._call(
                    "POST",
                    "/api/v1/devices/",
                    json_body={"id": device_id, **body},
                    expect=(200, 201),  # updated, created
                )
            except ApiError as exc:
                if exc.code != "device_taken":
                    raise
                self.store.set("device_id", None)
                continue
            self.store.set("device_id", device_id)
            self.store.set("platform", platform)
            self.api.device_id = device_id
            return device_id
        raise RuntimeError("could not find a free device id")  # three UUID4 collisions

    # --- discovery and validation -----------------------------------------

    def refresh_models(self) -> dict[str, ModelSpec]:
        """Fetch discovery's field metadata and keep it for offline validation."""
        self.store.save_models(self._call("GET", "/api/v1/sync/models/").body)
        self._specs = None
        return self.specs()

    def specs(self) -> dict[str, ModelSpec]:
        """The models this app knows: every one discovery describes, or, with
        a pinned `schema`, those it names (the others it was built without:
        the server leaves them out of its pulls, and they cannot be edited)."""
        if self._specs is None:
            self._specs = {
                d["model"]: ModelSpec.from_wire(d)
                for d in self.store.models()
                if self.schema is None or d["model"] in self.schema
            }
        return self._specs

    def validates(self, spec: ModelSpec) -> bool:
        """Whether edits of this model are checked offline. Discovery
        describes each model's current shape; an app pinned to an older
        version of it edits another shape (`serial` where discovery has
        `serial_number`), so its edits are queued unchecked and the server,
        which translates them, is the only judge (`rejected` results)."""
        return self.schema is None or self.schema.get(spec.label) == spec.version

    def spec(self, model: str) -> ModelSpec:
        specs = self.specs() or self.refresh_models()
        label = self.label(model, specs)
        return specs[label]

    def label(self, name: str, specs: Mapping[str, ModelSpec] | None = None) -> str:
        """`fieldwork.workorder`, or just `workorder` when that is unambiguous."""
        specs = specs if specs is not None else (self.specs() or self.refresh_models())
        name = name.lower()
        if name in specs:
            return name
        matches = [label for label in specs if label.split(".", 1)[1] == name]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(sorted(specs))
        where = "this app knows" if self.schema is not None else "the server has"
        raise NotFound(f"No synced model {name!r}; {where} {known}.")

    def _check(self, spec: ModelSpec, data: Mapping[str, Any], *, creating: bool) -> None:
        errors: Errors = spec.validate(data, creating=creating)
        for name, value in data.items():
            field_spec = spec.fields.get(name)
            if (
                field_spec is not None
                and field_spec.type == "reference"
                and field_spec.model in self.specs()
                and isinstance(value, str)
                and name not in errors
                and self.store.local(field_spec.model, value) is None
            ):
                # The server takes a reference only to a live object in our
                # scope, which we would hold; one we do not is refused there.
                errors[name] = [f"No {field_spec.model} with this id in your scope."]
        if errors:
            raise ValidationError(errors)

    # --- local data (works offline) ----------------------------------------

    def get(self, model: str, object_id: str) -> Data | None:
        return self.store.local(self.label(model), _uuid(object_id))

    def all(self, model: str | None = None) -> dict[tuple[str, str], Data]:
        return self.store.local_all(self.label(model) if model else None)

    def create(self, model: str, data: Mapping[str, Any], *, object_id: str | None = None) -> str:
        """Create an object offline; returns its id (chosen here, a UUID)."""
        spec = self.spec(model)
        checked = self.validates(spec)
        if checked:
            self._check(spec, data, creating=True)
        object_id = _uuid(object_id) if object_id else str(uuid.uuid4())
        with self.store.transaction():
            if (
                self.store.local(spec.label, object_id) is not None
                or self.store.server_copy(spec.label, object_id) is not None
            ):
                raise ValidationError({"id": ["An object with this id already exists."]})
            # The defaults discovery announces, so the local view shows what the
            # server will store; sending them is harmless. (Not for a model the
            # app speaks in another shape than discovery's: they may not fit it.)
            defaults = spec.defaults() if checked else {}
            self.store.queue(
                spec.label, object_id, "create", {**defaults, **data}, schema=self._schema_header
            )
        return object_id

    def update(self, model: str, object_id: str, changes: Mapping[str, Any]) -> str | None:
        """Change fields offline; returns the mutation id carrying the edit
        (None when nothing actually changed)."""
        spec = self.spec(model)
        object_id = _uuid(object_id)
        if self.validates(spec):
            self._check(spec, changes, creating=False)
        with self.store.transaction():
            current = self.store.local(spec.label, object_id)
            if current is None:
                raise NotFound(f"No {spec.label} {object_id} here.")
            # Only the fields that differ from what the user sees (an update
            # carries the fields the client changed); an edit that changes
            # nothing queues nothing.
            changed = {k: v for k, v in changes.items() if current.get(k, _MISSING) != v}
            if not changed:
                return None
            return self.store.queue(
                spec.label, object_id, "update", changed, schema=self._schema_header
            )

    def delete(self, model: str, object_id: str) -> str | None:
        spec = self.spec(model)
        object_id = _uuid(object_id)
        with self.store.transaction():
            if self.store.local(spec.label, object_id) is None:
                raise NotFound(f"No {spec.label} {object_id} here.")
            return self.store.queue(
                spec.label, object_id, "delete", None, schema=self._schema_header
            )

    # --- the sync loop -----------------------------------------------------

    def sync(self, *, progress: Callable[[Progress], None] | None = None) -> SyncReport:
        """Push the outbox, then pull until up to date. Safe to interrupt at any
        point and to call again: nothing is lost or applied twice.

        Raises `UpgradeRequired` when this app version may no longer pull:
        the outbox was pushed first (the exception's `report` says how)."""
        with self._syncing:
            return self._sync(progress)

    def _sync(self, progress: Callable[[Progress], None] | None) -> SyncReport:
        if self.api.token is None:
            raise NotLoggedIn("Log in first.")
        if self.device_id is None:
            self.register_device(platform=self.store.get("platform") or "android")
        if not self.store.models():
            self.refresh_models()
        report = SyncReport()
        self._push(report)
        try:
            self._pull(report, progress)
        except UpgradeRequired as exc:
            # Its pushes were taken (just above); its pulls will not be until
            # the app is upgraded. The local data stays as it is.
            exc.report = report
            raise
        if self.store.conflicts("open"):
            self.refresh_conflicts()
        # The bytes of files attached here, after the data: an edit never
        # waits for its photo (client/files.py).
        if self.store.pending_uploads():
            report.uploaded = self.files.upload_pending()
        self.store.prune_tombstones()
        self.store.set("last_sync", _now())
        return report

    def push(self, report: SyncReport | None = None) -> SyncReport:
        """Send the outbox oldest first, in batches, and settle every result.
        Call it right after a local edit to send it at once (also while
        `follow()` runs on another thread)."""
        with self._syncing:
            return self._push(report or SyncReport())

    def _push(self, report: SyncReport) -> SyncReport:
        # Frozen as it is read, before the request leaves: if we crash or the
        # answer is lost, the next push resends exactly these mutations.
        while batch := self.store.take_batch(PUSH_BATCH):
            sent_cursor = self.store.cursor
            body: dict[str, Any] = {"mutations": [m.wire() for m in batch]}
            if sent_cursor is not None:
                body["cursor"] = sent_cursor
            # Entries made before the app was upgraded go out in the schema
            # they were made in (a batch holds entries of one schema).
            made_in = batch[0].schema
            headers = {SCHEMA_VERSION: made_in} if made_in != self._schema_header else None
            response = self._call(
                "POST",
                "/api/v1/sync/push/",
                json_body=body,
                device=True,
                headers=headers,
                versioned=True,
            )
            results = response.body["results"]
            with self.store.transaction():
                for entry, result in zip(batch, results, strict=True):
                    self.store.settle(entry, result)
                self.store.adopt_push_cursor(sent_cursor, response.body["cursor"])
            for entry, result in zip(batch, results, strict=True):
                report.pushed[result["status"]] += 1
                if result["status"] == "conflict":
                    report.conflicts.append(result["conflict_id"])
                elif result["status"] == "rejected":
                    report.rejected.append(entry.mutation_id)
                if self.on_result is not None:
                    self.on_result(entry, result)
        return report

    def pull(
        self,
        report: SyncReport | None = None,
        *,
        progress: Callable[[Progress], None] | None = None,
    ) -> SyncReport:
        """Pull pages until `has_more` is false, each stored with its cursor."""
        with self._syncing:
            return self._pull(report or SyncReport(), progress)

    def _pull(
        self, report: SyncReport, progress: Callable[[Progress], None] | None = None
    ) -> SyncReport:
        started_over = False
        refetches = 0
        while True:
            if self.store.refetch() is not None:
                self._refetch(report, progress)  # one kept by an interrupted sync, or just now
            cursor = self.store.cursor
            try:
                page = self._call(
                    "GET", PULL_PATH, params=self._page_params(cursor), device=True, versioned=True
                ).body
            except ApiError as exc:
                # 410 naming models: fetch those again, then go on from the
                # cursor it gives (README, "Fetching some models again").
                # Kept before anything else is done, so an interruption
                # resumes it.
                if _targeted(exc) and cursor and refetches < MAX_REFETCHES:
                    refetches += 1
                    self.store.begin_refetch(exc.body["models"], exc.body["cursor"])
                    continue
                # 410: the cursor is older than the tombstones kept; 400
                # bad_cursor: it cannot be read (another account, a rotated
                # server secret). Both: start over with an initial sync. The
                # local rows stay until it has brought their replacements, and
                # the outbox is untouched (it was pushed just before).
                if _cursor_refused(exc) and cursor and not started_over:
                    self.store.start_over()
                    started_over = report.resynced = True
                    continue
                raise
            self._apply_page(cursor, page, report, progress)
            if not page["has_more"]:
                return report

    def _refetch(
        self, report: SyncReport, progress: Callable[[Progress], None] | None = None
    ) -> None:
        """Fetch the models a `410` named again, as an initial sync of just
        them, then set the cursor to the one it gave: the outbox first (its
        edits were made on the data about to be replaced), then `?models=…`
        without a cursor until `has_more` is false. Every page is kept with its
        cursor, so an interrupted re-fetch goes on where it stopped."""
        self._push(report)
        restarted = False
        while (state := self.store.refetch()) is not None:
            params: dict[str, Any] = {"limit": self.page_size, "models": ",".join(state["models"])}
            if state["page"] is not None:
                params["cursor"] = state["page"]
            try:
                page = self._call("GET", PULL_PATH, params=params, device=True, versioned=True).body
            except ApiError as exc:
                # Its own cursor refused (kept too long, or a re-sync of these
                # models meanwhile): start it again, its generation kept.
                if _cursor_refused(exc) and state["page"] is not None and not restarted:
                    restarted = True
                    self.store.restart_refetch()
                    continue
                raise
            self.store.apply_refetch_page(
                page["changes"], page["cursor"], has_more=page["has_more"]
            )
            report.pulled += len(page["changes"])
            if progress is not None:
                progress(Progress(report.pulled, page["remaining"], True))
            if not page["has_more"]:
                report.refetched = sorted({*report.refetched, *state["models"]})

    def _apply_page(
        self,
        cursor: str | None,
        page: Mapping[str, Any],
        report: SyncReport,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        """Store a page pulled from `cursor` (a pull's or a live pull's): its
        changes and its cursor in one local transaction."""
        initial = cursor is None or self.store.get("initial_sync") is not None
        report.initial = report.initial or initial
        self.store.apply_page(page["changes"], page["cursor"], has_more=page["has_more"])
        report.pulled += len(page["changes"])
        if progress is not None:
            progress(Progress(report.pulled, page["remaining"], initial))

    def _page_params(self, cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": self.page_size}
        if cursor is not None:
            params["cursor"] = cursor
        return params

    def fetch_all(self) -> dict[tuple[str, str], tuple[int, Data]]:
        """What an initial sync would bring right now, `(model, id) → (version,
        data)`, without touching the store: to check that a device converged."""
        found: dict[tuple[str, str], tuple[int, Data]] = {}
        cursor = None
        while True:
            page = self._call("GET", PULL_PATH, params=self._page_params(cursor), device=True).body
            for change in page["changes"]:
                key = (change["model"], change["id"])
                if change["op"] == "upsert":
                    found[key] = (change["version"], change["data"])
                else:
                    found.pop(key, None)
            cursor = page["cursor"]
            if not page["has_more"]:
                return found

    # --- in the foreground: live pulls ---------------------------------------

    def follow(
        self,
        until: threading.Event,
        *,
        wait: int = 30,
        poll_every: float = 60.0,
        on_sync: Callable[[SyncReport], None] | None = None,
    ) -> None:
        """Keep the store up to date while the app is on screen, until `until`
        is set (client/README.md, "Live pulls").

        Syncs once, then keeps a live pull open (one that the server answers
        as soon as something changes in the user's scope, or after `wait`
        seconds), pushing pending edits before each. `on_sync` gets a report
        whenever something was pushed or pulled. Without live pulls on the
        server (404), or while none can be had (429, the live server down), it
        polls: a `sync()` every `poll_every` seconds; while the server cannot
        be reached, it backs off. Returns soon after `until` is set: at once
        while polling or backing off, else when the live pull then waiting is
        answered, `wait` seconds at worst.

        `push()` and `sync()` may be called from other threads meanwhile (right
        after a local edit, to send it at once): the live pull waits without
        holding the sync lock. `NotLoggedIn`, and any error `sync()` raises
        other than the server being unreachable or failing (5xx), end it.
        """
        if wait < 1:
            raise ValueError("wait must be at least a second: 0 would be pulls in a busy loop")
        rng = random.Random()  # noqa: S311 - jitter, not security
        troubles = 0  # tries in a row that did not reach a working server
        dropped = 0  # live pulls in a row that got no answer
        polls = 0.0  # polls to make before the next live pull (inf: not this time)
        must_sync = True
        while not until.is_set():
            try:
                if self.store.refetch() is not None:
                    must_sync = True  # a re-fetch an interrupted sync left: finish it
                if must_sync:
                    report = self.sync()
                    must_sync = False
                elif polls:
                    if until.wait(poll_every):
                        return
                    polls -= 1
                    report = self.sync()
                else:
                    if self.store.pending():
                        _tell(on_sync, self.push())
                    cursor = self.store.cursor
                    try:
                        page = self._live_page(cursor, wait)
                    except (NetworkError, ApiError) as exc:
                        if isinstance(exc, UpgradeRequired):
                            raise  # pulls are over for this app version; the outbox was pushed
                        if isinstance(exc, ApiError) and _targeted(exc):
                            # Kept at once (unless another thread's sync moved
                            # the cursor meanwhile); sync() pushes, re-fetches
                            # those models and goes on from the 410's cursor.
                            with self._syncing:
                                if self.store.cursor == cursor:
                                    self.store.begin_refetch(exc.body["models"], exc.body["cursor"])
                            must_sync = True
                            continue
                        if _cursor_refused(exc):
                            must_sync = True  # sync() starts over, the outbox kept
                            continue
                        if isinstance(exc, ApiError) and exc.status in (404, 429):
                            # 404: an older server, without live pulls. 429
                            # (too_many_live_pulls): the user's other devices
                            # and tabs hold all of them; try again later.
                            polls = math.inf if exc.status == 404 else POLLS_BEFORE_LIVE
                            continue
                        # No answer (or a proxy's 5xx). Once is ordinary on a
                        # phone (wifi hands over to mobile data): back off, sync,
                        # go on. Twice in a row with a sync working in between:
                        # the live server is down (a deploy) or absent; poll.
                        dropped += 1
                        if dropped > 1:
                            polls = POLLS_BEFORE_LIVE
                        raise
                    dropped = 0
                    report = self._apply_live_page(cursor, page)
                troubles = 0
                _tell(on_sync, report)
            except (NetworkError, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status < 500:
                    raise
                # Unreachable, or failing even after the retries in place: wait
                # (longer each time, with jitter), then sync and go on.
                troubles += 1
                if until.wait(self.api.retry.backoff(troubles, rng)):
                    return
                must_sync = True

    def _live_page(self, cursor: str | None, wait: int) -> dict[str, Any]:
        params = {**self._page_params(cursor), "wait": wait}
        return self._call(
            "GET",
            self.live_server + LIVE_PATH,  # absolute: the live server may be another
            params=params,
            device=True,
            timeout=wait + LIVE_TIMEOUT_MARGIN,
            retry=LIVE_RETRY,
            versioned=True,
        ).body

    def _apply_live_page(self, cursor: str | None, page: Mapping[str, Any]) -> SyncReport:
        """Apply a page live-pulled from `cursor` as a pulled one, and pull on
        while it has more."""
        report = SyncReport()
        with self._syncing:
            # The live pull waited without the lock, so a push or a sync on
            # another thread may have moved the cursor meanwhile. Applying the
            # page would set it back: harmless by itself (what lies between is
            # pulled again, and a version not newer than the one held changes
            # nothing), but not during an initial sync that the other thread
            # began (410) and did not finish: this page, with no more to come,
            # would end it and drop the rows it has not brought yet. So the page
            # is dropped; nothing is lost, the next live pull starts from the
            # cursor stored, and everything before it is applied. (A push's
            # cursor, the other way round, is only taken if ours did not move:
            # `Store.adopt_push_cursor`.)
            if self.store.cursor != cursor:
                return report
            self._apply_page(cursor, page, report)
            if page["has_more"]:
                self._pull(report)
        return report

    # --- conflicts and rejections -------------------------------------------

    def conflicts(self, status: str | None = "open") -> list[LocalConflict]:
        return self.store.conflicts(status)

    def refresh_conflicts(self) -> list[LocalConflict]:
        """Bring the local conflict list up to date with the server: conflicts
        raised on this user's other devices, and those settled elsewhere (by
        staff in the admin, or superseded by a later edit)."""
        open_now = self._call("GET", "/api/v1/sync/conflicts/", params={"status": "open"}).body
        for described in open_now:
            self.store.record_conflict(described)
        still_open = {c["id"] for c in open_now}
        for local in self.store.conflicts("open"):
            if local.conflict_id not in still_open:
                try:
                    described = self._call(
                        "GET", f"/api/v1/sync/conflicts/{local.conflict_id}/"
                    ).body
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    self.store.conflict_closed(local.conflict_id, "gone")
                else:
                    self.store.record_conflict(described)
        return self.store.conflicts("open")

    def conflict_details(self, conflict_id: str) -> dict[str, Any]:
        """The server's account of a conflict: fields at stake, base / server /
        client values (what a resolve screen shows)."""
        return self._call("GET", f"/api/v1/sync/conflicts/{_uuid(conflict_id)}/").body

    def resolve(
        self,
        conflict_id: str,
        choice: str,
        values: Mapping[str, Any] | None = None,
        *,
        note: str = "",
    ) -> dict[str, Any]:
        """Settle one of this user's conflicts from the app.

        `choice` is `server` (keep the server's values), `client` (take the
        values the user pushed) or `fields` (`values` gives each field at
        stake). The resolution is checked against the version we hold; the
        resulting object is stored at once (every other device pulls it).
        Raises `StaleResolution` (412: the object moved on; its new state is
        stored) and `ConflictSettled` (409).
        """
        conflict_id = _uuid(conflict_id)
        local = self.store.conflict(conflict_id)
        if local is None:
            self.store.record_conflict(self.conflict_details(conflict_id))
            local = self.store.conflict(conflict_id)
            assert local is not None  # noqa: S101 - just stored
        held = self.store.server_copy(local.model, local.object_id)
        expected = held.version if held is not None else local.server_version
        body: dict[str, Any] = {"choice": choice, "expected_version": expected}
        if values is not None:
            body["values"] = dict(values)
        if note:
            body["note"] = note
        path = f"/api/v1/sync/conflicts/{conflict_id}/resolve/"
        try:
            answer = self._call("POST", path, json_body=body, device=True).body
        except ApiError as exc:
            if exc.status == 412:
                current = exc.body.get("object")
                if current:
                    self._adopt(current)
                raise StaleResolution(current) from exc
            if exc.status == 409:
                status = str(exc.body.get("status") or "resolved")
                self.store.conflict_closed(conflict_id, status)
                raise ConflictSettled(status) from exc
            if exc.status == 404:
                self.store.conflict_closed(conflict_id, "gone")
            raise
        self._adopt(answer["object"])
        self.store.conflict_closed(
            conflict_id, "resolved", answer["conflict"].get("resolved_version")
        )
        return answer

    def _adopt(self, obj: Mapping[str, Any]) -> None:
        self.store.adopt_result(obj["model"], obj["id"], obj["version"], obj["data"])

    def rejections(self) -> list[Rejection]:
        return self.store.rejections()

    def dismiss_rejection(self, mutation_id: str) -> None:
        self.store.dismiss_rejection(mutation_id)

    # --- status -------------------------------------------------------------

    def status(self) -> Status:
        return Status(
            server=self.server,
            username=self.username,
            device_id=self.device_id,
            last_sync=self.store.get("last_sync"),
            initial_sync_done=self.store.cursor is not None
            and self.store.get("initial_sync") is None,
            objects=len(self.store.server_copies()),
            pending=self.store.pending(),
            open_conflicts=self.store.conflicts("open"),
            rejections=self.store.rejections(),
            deprecation=self.deprecation,
        )

    # --- plumbing -----------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        device: bool = False,
        expect: int | Collection[int] = 200,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str | None] | None = None,
        versioned: bool = False,
    ) -> Response:
        """One API call; a refused token becomes `NotLoggedIn`, and a device the
        server no longer knows (deleted in the admin) is registered again.
        `versioned`: a pull or a push, whose answer says whether this app
        version is deprecated (kept for `deprecation`)."""
        for attempt in range(2):
            try:
                response = self.api.request(
                    method,
                    path,
                    json_body=json_body,
                    params=params,
                    device=device,
                    expect=expect,
                    timeout=timeout,
                    retry=retry,
                    headers=headers,
                )
            except ApiError as exc:
                if versioned and isinstance(exc, UpgradeRequired):
                    self._heard(exc.headers, refused=True)
                if exc.status == 401:
                    raise NotLoggedIn(exc.detail) from exc
                if exc.code == "device_forbidden" and attempt == 0:
                    self.register_device(platform=self.store.get("platform") or "android")
                    continue
                raise
            if versioned:
                self._heard(response.headers)
            return response
        raise AssertionError("unreachable")

    def _heard(self, headers: Mapping[str, str], *, refused: bool = False) -> None:
        """Keep what a pull's or a push's answer says of this app version's
        deprecation: the headers' absence means it is not (or no longer)
        deprecated, except on a `426`, which need not repeat them."""
        found = Deprecation.from_headers(headers)
        if found is None and refused:
            return
        kept = json.dumps(found.wire()) if found is not None else None
        if self.store.get("deprecation") != kept:
            self.store.set("deprecation", kept)


def _cursor_refused(exc: Exception) -> bool:
    """410 `resync_required` or 400 `bad_cursor`: start over (README, "When the
    cursor is refused")."""
    return isinstance(exc, ApiError) and exc.code in ("resync_required", "bad_cursor")


def _targeted(exc: Exception) -> bool:
    """410 `resync_required` naming `models` and a `cursor`: fetch those
    models again, then go on from that cursor (README, "Fetching some models
    again"). Without them it is a full start-over (`_cursor_refused`)."""
    if not (isinstance(exc, ApiError) and exc.code == "resync_required"):
        return False
    models, cursor = exc.body.get("models"), exc.body.get("cursor")
    return bool(models) and isinstance(models, list) and isinstance(cursor, str) and bool(cursor)


def _tell(on_sync: Callable[[SyncReport], None] | None, report: SyncReport) -> None:
    if on_sync is not None and (
        report.pushed or report.pulled or report.resynced or report.refetched
    ):
        on_sync(report)


class _Missing:
    pass


_MISSING = _Missing()


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as exc:
        raise NotFound(f"{value!r} is not an object id (a UUID).") from exc


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
