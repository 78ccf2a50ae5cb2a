"""Every write to a synced table reaches devices, whoever makes it.

The host project writes its models with `.save()`, `QuerySet.update()`,
`bulk_create`, the admin, fixtures, data migrations, raw SQL and other
processes on the same database. Only the database sees all of those, so the
registry generates triggers for each synced table (`install`, run by every
`migrate`) that do for such a write what the sync service does for its own:

- a new `version` (1 for an insert, the old one + 1 for an update),
  `updated_at`, no `last_device_id`;
- a history row (the three-way merge's base for a device that edited the
  version before), with the user and reason the writer named
  (`write_context`), written by the database in the same statement, so
  `QuerySet.update()` and raw SQL have one as well as `.save()`;
- feed rows: an upsert in every channel the object is in, a delete in every
  channel it left (all of them when it is deleted), at the writing
  transaction's id, so `sync.engine.feed`'s frontier holds them back until every
  older transaction has ended, exactly as it does the service's rows;
- a wake-up (a `PushOutbox` row, sent after commit: at once for writes made
  through the ORM in this process, or, on PostgreSQL, by a Celery worker
  that hears it commit (sync.notify.wakeups); by the periodic sweep
  otherwise).

A DELETE of a synced row becomes a soft delete (a tombstone devices pull):
the row stays with `deleted_at` set and a new version, as the sync service
deletes. An UPDATE that changes nothing writes nothing.

The service's own writes are not captured a second time: it versions, records
and feeds them itself (in bulk, faster than a row trigger would), and marks
its transaction while it writes (`sync.writers.service_writes`, which says
where the mark is kept); `sync.writers.purging` lets a real DELETE through (a
user's erasure).

Why hand-written and not django-pgtrigger: the embedded default runs on
SQLite, which pgtrigger does not serve, and these triggers are generated from
the runtime registry (scope, fields, history columns), so `migrate` installs
them from the code as it is, on either database, and `manage.py check` says
when a database's triggers do not match the code (sync.W101).
"""

# ruff: noqa: S608 - every statement here is built from model metadata (tables,
# columns, labels), never from input.
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connections, models, transaction

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from sync.registry import SyncedType

from sync.writers import PURGE, SERVICE, SETTINGS, WOKEN_SETTING

# --- the triggers -----------------------------------------------------------------------


# True while the sync service (or an erasure) writes: the triggers stand aside.
PG_PASSING = (
    f"COALESCE(current_setting('{SETTINGS['writer']}', true), '') IN ('{SERVICE}', '{PURGE}')"
)


def _q(connection: BaseDatabaseWrapper, name: str) -> str:
    return connection.ops.quote_name(name)


def _name(prefix: str, table: str) -> str:
    """A function name within PostgreSQL's 63 characters."""
    name = f"{prefix}__{table}"
    if len(name) <= 63:
        return name
    return f"{prefix}__{hashlib.sha1(table.encode()).hexdigest()[:16]}"  # noqa: S324 - a name


@dataclass(frozen=True)
class Tables:
    """What a model's triggers write into, from the models as they are now."""

    model: str
    history: str
    history_columns: list[tuple[str, str]]  # (history column, expression kind or base column)
    user_type: str
    feed: str
    outbox: str


def _tables(stype: SyncedType, connection: BaseDatabaseWrapper) -> Tables:
    from devices.models import PushOutbox
    from sync.models import Change

    model = stype.model
    history = model.history.model
    base_columns = {f.column for f in model._meta.concrete_fields}
    columns: list[tuple[str, str]] = []
    user_type = "integer"
    for field in history._meta.concrete_fields:
        if field.name == "history_id":
            continue
        if field.name in ("history_date", "history_type", "history_change_reason"):
            columns.append((field.column, field.name))
        elif field.name == "history_user":
            columns.append((field.column, field.name))
            user_type = field.target_field.db_type(connection) or "integer"
        elif field.column in base_columns:
            columns.append((field.column, "=" + field.column))
        else:
            raise ValueError(
                f"{stype.label}: history column {field.column} has no counterpart the "
                "database can fill (sync records history in the database)"
            )
    return Tables(
        model=model._meta.db_table,
        history=history._meta.db_table,
        history_columns=columns,
        user_type=user_type,
        feed=Change._meta.db_table,
        outbox=PushOutbox._meta.db_table,
    )


def _scope_columns(stype: SyncedType) -> list[tuple[str, str, bool]]:
    """(channel prefix, column, holds a UUID) per scope field."""
    out = []
    for prefix, name in stype.scope.items():
        field = stype.model._meta.get_field(name)
        assert isinstance(field, models.Field)  # noqa: S101 - the registry checked it
        target = field.target_field if isinstance(field, models.ForeignKey) else field
        out.append((prefix, field.column or name, isinstance(target, models.UUIDField)))
    return out


def postgres_sql(stype: SyncedType, connection: BaseDatabaseWrapper) -> list[str]:
    """The statements that install `stype`'s capture on PostgreSQL."""
    t = _tables(stype, connection)
    q = lambda name: _q(connection, name)  # noqa: E731
    table = q(t.model)
    before_fn, after_fn = (
        _name("sync_capture_before", t.model),
        _name("sync_capture_after", t.model),
    )

    def channels(row: str) -> str:
        parts = [
            f"CASE WHEN {row}.{q(col)} IS NULL THEN NULL "
            f"ELSE '{prefix}:' || {row}.{q(col)}::text END"
            for prefix, col, _ in _scope_columns(stype)
        ]
        return f"array_remove(ARRAY[{', '.join(parts)}]::text[], NULL)"

    values = []
    for _, kind in t.history_columns:
        if kind == "history_date":
            values.append("statement_timestamp()")
        elif kind == "history_type":
            values.append("kind")
        elif kind == "history_user":
            values.append(f"NULLIF(current_setting('{SETTINGS['user']}', true), '')::{t.user_type}")
        elif kind == "history_change_reason":
            values.append(f"NULLIF(current_setting('{SETTINGS['reason']}', true), '')")
        else:
            values.append(f"NEW.{q(kind[1:])}")
    history_insert = (
        f"INSERT INTO {q(t.history)} ({', '.join(q(c) for c, _ in t.history_columns)}) "
        f"VALUES ({', '.join(values)});"
    )
    feed_insert = (
        f"INSERT INTO {q(t.feed)} (tx, channel, model, object_id, version, op, created_at) "
        f"SELECT tx, c, '{stype.label}', NEW.id, NEW.version, %s, statement_timestamp() "
    )
    before = f"""
CREATE OR REPLACE FUNCTION {q(before_fn)}() RETURNS trigger LANGUAGE plpgsql AS $sync$
BEGIN
  IF TG_OP = 'DELETE' THEN
    -- A tombstone devices pull, as the sync service deletes: the UPDATE is
    -- captured like any other, and the row stays.
    IF OLD.deleted_at IS NULL THEN
      UPDATE {table} SET deleted_at = statement_timestamp() WHERE id = OLD.id;
    END IF;
    RETURN NULL;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    IF OLD.version > 0 AND NEW IS NOT DISTINCT FROM OLD THEN
      RETURN NEW;  -- nothing changed: no new version
    END IF;
    NEW.version := OLD.version + 1;
  ELSE
    NEW.version := 1;
    NEW.created_at := COALESCE(NEW.created_at, statement_timestamp());
  END IF;
  NEW.updated_at := statement_timestamp();
  NEW.last_device_id := NULL;
  RETURN NEW;
END
$sync$"""
    after = f"""
CREATE OR REPLACE FUNCTION {q(after_fn)}() RETURNS trigger LANGUAGE plpgsql AS $sync$
DECLARE
  tx bigint;
  old_channels text[] := '{{}}';
  new_channels text[];
  kind char(1);
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NEW.version = OLD.version THEN
      RETURN NULL;  -- unchanged (see the BEFORE trigger)
    END IF;
    IF OLD.version > 0 AND OLD.deleted_at IS NULL THEN
      old_channels := {channels("OLD")};
    END IF;
  END IF;
  new_channels := {channels("NEW")};
  IF TG_OP = 'INSERT' OR OLD.version = 0 THEN
    kind := '+';
  ELSIF NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL THEN
    kind := '-';
  ELSE
    kind := '~';
  END IF;
  {history_insert}
  tx := pg_current_xact_id()::text::bigint;
  IF NEW.deleted_at IS NOT NULL THEN
    {feed_insert % 2}FROM (SELECT DISTINCT unnest(old_channels || new_channels) AS c) AS gone
      ORDER BY c;
  ELSE
    {feed_insert % 1}FROM unnest(new_channels) AS c ORDER BY c;
    {feed_insert % 2}FROM (SELECT unnest(old_channels) EXCEPT SELECT unnest(new_channels))
      AS gone(c) ORDER BY c;
  END IF;
  RETURN NULL;
END
$sync$"""
    # The writer is tested in each trigger's WHEN, which PostgreSQL evaluates
    # without calling the function, and for AFTER triggers without queueing
    # an event: the service's rows cost an expression each.
    when = f"WHEN (NOT {PG_PASSING})"
    triggers = [
        f"DROP TRIGGER IF EXISTS sync_capture_before ON {table}",
        f"CREATE TRIGGER sync_capture_before BEFORE INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW {when} EXECUTE FUNCTION {q(before_fn)}()",
        f"DROP TRIGGER IF EXISTS sync_capture_after ON {table}",
        f"CREATE TRIGGER sync_capture_after AFTER INSERT OR UPDATE ON {table} "
        f"FOR EACH ROW {when} EXECUTE FUNCTION {q(after_fn)}()",
        f"DROP TRIGGER IF EXISTS sync_capture_wakeup ON {table}",
        f"CREATE TRIGGER sync_capture_wakeup AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH STATEMENT {when} EXECUTE FUNCTION sync_capture_wakeup()",
    ]
    return [_wakeup_function(t, connection), before, after, *triggers]


def _wakeup_function(t: Tables, connection: BaseDatabaseWrapper) -> str:
    """One wake-up per statement, for the feed rows it wrote: a bulk update
    of thousands of rows is one fan-out, not thousands."""
    q = lambda name: _q(connection, name)  # noqa: E731
    return f"""
CREATE OR REPLACE FUNCTION sync_capture_wakeup() RETURNS trigger LANGUAGE plpgsql AS $sync$
DECLARE
  covered bigint;
  newest bigint;
  found jsonb;
BEGIN
  IF pg_current_xact_id_if_assigned() IS NULL THEN
    RETURN NULL;
  END IF;
  covered := COALESCE(NULLIF(current_setting('{WOKEN_SETTING}', true), '')::bigint, 0);
  -- seq > 0: the condition of the feed's index in position order.
  SELECT jsonb_agg(DISTINCT channel), max(seq) INTO found, newest
    FROM {q(t.feed)}
   WHERE tx = pg_current_xact_id()::text::bigint AND seq > covered AND seq > 0;
  IF newest IS NULL THEN
    RETURN NULL;
  END IF;
  PERFORM set_config('{WOKEN_SETTING}', newest::text, true);
  INSERT INTO {q(t.outbox)} (channels, seq, created_at, attempts, captured)
  VALUES (found, newest, statement_timestamp(), 0, true);
  RETURN NULL;
END
$sync$"""


# Django's own spelling of a datetime on SQLite (microseconds).
_SQLITE_NOW = "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"
_NESTED = "capturing"  # SQLite: the insert trigger's own UPDATE


def sqlite_sql(stype: SyncedType, connection: BaseDatabaseWrapper) -> list[str]:
    """The triggers that capture `stype`'s writes on SQLite (row triggers
    only: there the statements run one at a time, and a row's wake-up joins
    any unsent one)."""
    t = _tables(stype, connection)
    q = lambda name: _q(connection, name)  # noqa: E731
    table = q(t.model)
    writer = "(SELECT writer FROM sync_writecontext WHERE id = 1)"
    captured = f"COALESCE({writer}, '') NOT IN ('{SERVICE}', '{PURGE}', '{_NESTED}')"

    def text(row: str, column: str, is_uuid: bool) -> str:
        value = f"{row}.{q(column)}"
        if not is_uuid:
            return f"CAST({value} AS TEXT)"
        # Django keeps UUIDs on SQLite as 32 hex digits; channels spell them out.
        return (
            f"lower(substr({value}, 1, 8) || '-' || substr({value}, 9, 4) || '-' || "
            f"substr({value}, 13, 4) || '-' || substr({value}, 17, 4) || '-' || "
            f"substr({value}, 21, 12))"
        )

    def channels(row: str) -> str:
        """A SELECT of the row's channels (column c)."""
        parts = [
            f"SELECT '{prefix}:' || {text(row, col, is_uuid)} AS c FROM {table} AS {row} "
            f"WHERE {row}.id = NEW.id AND {row}.{q(col)} IS NOT NULL"
            for prefix, col, is_uuid in _scope_columns(stype)
        ]
        return f"SELECT c FROM ({' UNION '.join(parts)})"

    def old_channels() -> str:
        parts = [
            f"SELECT '{prefix}:' || {text('OLD', col, is_uuid)} AS c "
            f"WHERE OLD.{q(col)} IS NOT NULL AND OLD.version > 0 AND OLD.deleted_at IS NULL"
            for prefix, col, is_uuid in _scope_columns(stype)
        ]
        return f"SELECT c FROM ({' UNION '.join(parts)})"

    def history(kind: str) -> str:
        values = []
        for _, k in t.history_columns:
            if k == "history_date":
                values.append(_SQLITE_NOW)
            elif k == "history_type":
                values.append(kind)
            elif k == "history_user":
                values.append("(SELECT NULLIF(user_id, '') FROM sync_writecontext WHERE id = 1)")
            elif k == "history_change_reason":
                values.append("(SELECT NULLIF(reason, '') FROM sync_writecontext WHERE id = 1)")
            else:
                values.append(f"now_row.{q(k[1:])}")
        return (
            f"INSERT INTO {q(t.history)} ({', '.join(q(c) for c, _ in t.history_columns)}) "
            f"SELECT {', '.join(values)} FROM {table} AS now_row WHERE now_row.id = NEW.id;"
        )

    def feed(op: int, select: str, when: str = "1") -> str:
        return (
            f"INSERT INTO {q(t.feed)} (tx, channel, model, object_id, version, op, created_at) "
            f"SELECT 0, c, '{stype.label}', NEW.id, "
            f"(SELECT version FROM {table} WHERE id = NEW.id), {op}, {_SQLITE_NOW} "
            f"FROM ({select}) WHERE {when} ORDER BY c;"
        )

    # One unsent wake-up collects every captured write until a task takes it.
    wakeup = f"""
  UPDATE {q(t.outbox)} SET
      channels = (SELECT json_group_array(c) FROM (
          SELECT value AS c FROM json_each({q(t.outbox)}.channels)
          UNION SELECT channel FROM {q(t.feed)} WHERE seq > {q(t.outbox)}.seq)),
      seq = (SELECT max(seq) FROM {q(t.feed)})
    WHERE id = (SELECT max(id) FROM {q(t.outbox)} WHERE captured AND claimed_until IS NULL);
  INSERT INTO {q(t.outbox)} (channels, seq, created_at, attempts, captured)
    SELECT (SELECT json_group_array(c) FROM (
              SELECT DISTINCT channel AS c FROM {q(t.feed)}
               WHERE model = '{stype.label}' AND object_id = NEW.id
                 AND version = (SELECT version FROM {table} WHERE id = NEW.id))),
           (SELECT max(seq) FROM {q(t.feed)}), {_SQLITE_NOW}, 0, 1
    WHERE NOT EXISTS (SELECT 1 FROM {q(t.outbox)} WHERE captured AND claimed_until IS NULL);"""

    # updated_at is the server's (and its text may differ from Django's
    # spelling of the same instant): a save that changes nothing else is none.
    columns = [f.column for f in stype.model._meta.concrete_fields if f.name != "updated_at"]
    unchanged = " AND ".join(f"NEW.{q(c)} IS OLD.{q(c)}" for c in columns)
    name = t.model
    live, deleted = "NEW.deleted_at IS NULL", "NEW.deleted_at IS NOT NULL"
    on_insert = "\n".join(
        [
            # The row's own UPDATE is marked, so that the UPDATE trigger does
            # not capture it a second time; the mark is taken off after it (an
            # all-empty context row never exists otherwise: see _apply).
            "  INSERT OR IGNORE INTO sync_writecontext (id, writer, user_id, reason) "
            "VALUES (1, '', '', '');",
            f"  UPDATE sync_writecontext SET writer = '{_NESTED}' WHERE id = 1;",
            f"  UPDATE {table} SET version = 1, updated_at = {_SQLITE_NOW}, "
            f"last_device_id = NULL, created_at = COALESCE(created_at, {_SQLITE_NOW}) "
            "WHERE id = NEW.id;",
            f"  DELETE FROM sync_writecontext WHERE writer = '{_NESTED}' AND user_id = '' "
            "AND reason = '';",
            f"  UPDATE sync_writecontext SET writer = '' WHERE writer = '{_NESTED}';",
            "  " + history("'+'"),
            "  " + feed(1, channels("n")),
            wakeup,
        ]
    )
    on_update = "\n".join(
        [
            f"  UPDATE {table} SET version = OLD.version + 1, updated_at = {_SQLITE_NOW}, "
            "last_device_id = NULL WHERE id = NEW.id;",
            "  " + history(_SQLITE_KIND),
            # Deleted: a delete in every channel it was or is in; else an
            # upsert where it is and a delete where it was.
            "  " + feed(2, f"{channels('n')} UNION {old_channels()}", when=deleted),
            "  " + feed(1, channels("n"), when=live),
            "  " + feed(2, f"{old_channels()} EXCEPT {channels('n')}", when=live),
            wakeup,
        ]
    )
    return [
        f'DROP TRIGGER IF EXISTS "sync_capture_insert__{name}"',
        f'CREATE TRIGGER "sync_capture_insert__{name}" AFTER INSERT ON {table} '
        f"WHEN {captured}\nBEGIN\n{on_insert}\nEND",
        f'DROP TRIGGER IF EXISTS "sync_capture_update__{name}"',
        f'CREATE TRIGGER "sync_capture_update__{name}" AFTER UPDATE ON {table} '
        f"WHEN {captured} AND NOT (OLD.version > 0 AND {unchanged})\nBEGIN\n{on_update}\nEND",
        f'DROP TRIGGER IF EXISTS "sync_capture_delete__{name}"',
        # A tombstone devices pull, as the sync service deletes (see above).
        f'CREATE TRIGGER "sync_capture_delete__{name}" BEFORE DELETE ON {table} '
        f"WHEN {captured}\nBEGIN\n"
        f"  UPDATE {table} SET deleted_at = {_SQLITE_NOW} "
        "WHERE id = OLD.id AND deleted_at IS NULL;\n"
        "  SELECT RAISE(IGNORE);\nEND",
    ]


_SQLITE_KIND = (
    "CASE WHEN OLD.version = 0 THEN '+' "
    "WHEN NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL THEN '-' ELSE '~' END"
)


def statements(stype: SyncedType, connection: BaseDatabaseWrapper) -> list[str]:
    if connection.vendor == "postgresql":
        return postgres_sql(stype, connection)
    if connection.vendor == "sqlite":
        return sqlite_sql(stype, connection)
    raise NotImplementedError(
        f"sync captures writes on PostgreSQL and SQLite, not {connection.vendor}"
    )


def fingerprint(stype: SyncedType, connection: BaseDatabaseWrapper) -> str:
    """Names the code's triggers for `stype`: stored with them, compared by checks."""
    text = "\n".join(statements(stype, connection))
    return "sync capture " + hashlib.sha256(text.encode()).hexdigest()[:20]


def installed(stype: SyncedType, connection: BaseDatabaseWrapper) -> str | None:
    """The fingerprint of the capture installed for `stype`, if any."""
    table = stype.model._meta.db_table
    if (
        connection.vendor == "sqlite"
        and "sync_capturestate" not in connection.introspection.table_names()
    ):
        return None  # not migrated yet
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT obj_description(p.oid, 'pg_proc') FROM pg_trigger t "
                "JOIN pg_proc p ON p.oid = t.tgfoid "
                "WHERE t.tgrelid = to_regclass(%s) AND t.tgname = 'sync_capture_after'",
                [connection.ops.quote_name(table)],
            )
        else:
            cursor.execute(
                "SELECT fingerprint FROM sync_capturestate WHERE tablename = %s AND EXISTS "
                "(SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = %s)",
                [table, f"sync_capture_update__{table}"],
            )
        row = cursor.fetchone()
    return row[0] if row else None


def install(stype: SyncedType, connection: BaseDatabaseWrapper, *, force: bool = False) -> bool:
    """Install (or replace) `stype`'s capture; False when it was up to date."""
    mark = fingerprint(stype, connection)
    if not force and installed(stype, connection) == mark:
        return False
    table = stype.model._meta.db_table
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for statement in statements(stype, connection):
            cursor.execute(statement)
        if connection.vendor == "postgresql":
            cursor.execute(
                f"COMMENT ON FUNCTION {_q(connection, _name('sync_capture_after', table))}() "
                f"IS '{mark}'"
            )
        else:
            cursor.execute(
                "INSERT OR REPLACE INTO sync_capturestate (tablename, fingerprint) VALUES (%s, %s)",
                [table, mark],
            )
    return True


def baseline(stype: SyncedType, connection: BaseDatabaseWrapper) -> int:
    """Give rows that predate the capture (version 0: a model registered with
    data, or rows written before the triggers existed) version 1, a history
    row and feed rows, through the capture itself. Twice changes nothing."""
    table = _q(connection, stype.model._meta.db_table)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET version = 0 WHERE version = 0")  # noqa: S608
        return cursor.rowcount


def install_all(using: str = DEFAULT_DB_ALIAS, *, force: bool = False) -> list[str]:
    """Install every registered model's capture and baseline its old rows;
    returns the labels whose triggers changed."""
    from sync import registry

    connection = connections[using]
    changed = []
    for stype in registry.all_types():
        if install(stype, connection, force=force):
            changed.append(stype.label)
        baseline(stype, connection)
    return changed


def on_migrate(*, using: str = DEFAULT_DB_ALIAS, **_: Any) -> None:
    """post_migrate: the triggers follow the code on every `migrate`."""
    install_all(using)


def missing(using: str = DEFAULT_DB_ALIAS) -> Sequence[str]:
    """Labels of registered models whose installed capture differs from the code's."""
    from sync import registry

    connection = connections[using]
    return [
        stype.label
        for stype in registry.all_types()
        if installed(stype, connection) != fingerprint(stype, connection)
    ]
