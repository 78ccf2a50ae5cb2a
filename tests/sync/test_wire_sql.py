"""On PostgreSQL pull has the database write each object's `data` as JSON
(`SyncedType.wire_sql`, from `FieldCodec.json_sql`); what a client parses must
be exactly what the Python encoding (`FieldCodec.encode`, rendered by orjson)
gives, value for value."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import orjson
import pytest
from django.db import connection, models
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fieldwork.models import WorkOrder
from sync import registry
from sync.codecs import codec_for
from syncbase.renderers import render
from tests.factories import customer, update, work_order
from tests.helpers import plan_nodes

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

ORDER = "fieldwork.workorder"


def field(django_field: models.Field) -> Any:
    django_field.set_attributes_from_name("v")
    return codec_for(django_field, read_only=False)


# Each wire type, the field that has it and the SQL type of its column.
COLUMNS = {
    "datetime": (models.DateTimeField(null=True), "timestamptz"),
    "date": (models.DateField(null=True), "date"),
    "decimal": (models.DecimalField(max_digits=30, decimal_places=10, null=True), "numeric"),
    "float": (models.FloatField(null=True), "float8"),
    "integer": (models.BigIntegerField(null=True), "bigint"),
    "boolean": (models.BooleanField(null=True), "boolean"),
    "text": (models.TextField(null=True), "text"),
    "uuid": (models.UUIDField(null=True), "uuid"),
    "json": (models.JSONField(null=True), "jsonb"),
}


def through_sql(kind: str, value: Any) -> Any:
    django_field, sql_type = COLUMNS[kind]
    codec = field(django_field)
    expression = codec.json_sql('"t"."v"')
    assert expression is not None
    stored = django_field.get_db_prep_value(value, connection, prepared=False)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT '{{\"v\":' || COALESCE({expression}, 'null') || '}}' "  # noqa: S608
            f"FROM (SELECT %s::{sql_type} AS v) AS t",
            [stored],
        )
        return orjson.loads(cursor.fetchone()[0])["v"]


def through_python(kind: str, value: Any) -> Any:
    codec = field(COLUMNS[kind][0])
    return orjson.loads(render({"v": codec.encode(value)}))["v"]


# hypothesis takes naive bounds and attaches the timezone itself.
datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 1),  # noqa: DTZ001
    max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
) | st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.replace(microsecond=0))
# Lone surrogates cannot be stored (push refuses them: syncbase.parsers), nor can NUL.
texts = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=40)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | texts
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
VALUES = {
    "datetime": datetimes,
    "date": st.dates(),
    "decimal": st.decimals(
        min_value=Decimal("-1e19"), max_value=Decimal("1e19"), places=10, allow_nan=False
    ),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    # -2**63 is left out: the test binds it as a literal, which PostgreSQL reads
    # as -(2**63) and finds out of range before the minus.
    "integer": st.integers(-(2**63) + 1, 2**63 - 1),
    "boolean": st.booleans(),
    "text": texts,
    "uuid": st.uuids(),
    "json": json_values,
}


@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_the_database_writes_every_wire_type_as_python_does(kind):
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(VALUES[kind] | st.none())
    def same(value: Any) -> None:
        assert same_value(through_sql(kind, value), through_python(kind, value))

    same()


def same_value(a: Any, b: Any) -> bool:
    """Equal as parsed JSON. A number may be written in another form (1e+16 and
    1e16; jsonb keeps 2.296917179347123e+16 as 22969171793471230) but must be
    the same double, which is what a JSON client reads."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and not isinstance(a, bool)
            and not isinstance(b, bool)
            and float(a) == float(b)
        )
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b)


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2026, 11, 26, 16, 36, 44, tzinfo=dt.UTC),  # no microseconds: none written
        dt.datetime(2026, 11, 26, 16, 36, 44, 5, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 26, 16, 36, 44, 640000, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=-7))),
    ],
)
def test_datetimes_are_written_character_for_character(moment):
    # Not only equal once parsed: a client comparing strings must see one form.
    codec = field(models.DateTimeField())
    expression = codec.json_sql('"t"."v"')
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT '{{\"v\":' || {expression} || '}}' "  # noqa: S608
            "FROM (SELECT %s::timestamptz AS v) AS t",
            [moment],
        )
        text = cursor.fetchone()[0]
    # Datetimes come from the database in UTC, which is how Python renders them.
    assert text == render({"v": moment.astimezone(dt.UTC)}).decode()


def test_a_pull_page_is_the_same_written_by_the_database_or_by_python(alice, monkeypatch):
    made = customer("Zoë 🚲", address='line "one"\nline\ttwo\\')
    alice.push(made)
    order = work_order(made["id"], "Fix boiler", estimated_hours=1.25, scheduled_for="2026-12-01")
    alice.push(order)
    WorkOrder.objects.filter(pk=order["id"]).update(
        due_at=timezone.now().replace(microsecond=0), description="ünïcödé \u2028 <b>"
    )
    alice.push(update(ORDER, order["id"], 1, status="done", estimated_hours=1e-7))
    with CaptureQueriesContext(connection) as rendered_in_sql:
        by_database = alice.pull(limit=1000)["changes"]
    for stype in registry.all_types():  # the Python encoding, for this test
        monkeypatch.setattr(stype, "change_sql", None)
    with CaptureQueriesContext(connection) as rendered_in_python:
        by_python = alice.pull(limit=1000)["changes"]
    upsert = '"op":"upsert"'
    assert any(upsert in q["sql"] for q in rendered_in_sql.captured_queries)
    assert not any(upsert in q["sql"] for q in rendered_in_python.captured_queries)
    assert by_database == by_python
    assert [c["model"] for c in by_database] == ["fieldwork.customer", ORDER]
    assert by_database[1]["data"]["estimated_hours"] == 1e-7


def test_every_registered_model_is_written_by_the_database():
    for stype in registry.all_types():
        assert stype.change_sql is not None, stype.label


def test_a_json_field_with_its_own_decoder_is_left_to_python():
    class Decoder(json.JSONDecoder):
        pass

    assert field(models.JSONField(decoder=Decoder)).json_sql('"v"') is None
    assert field(models.JSONField()).json_sql('"v"') == 'to_json("v")::text'


def test_uuid_values_keep_their_form():
    value = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")
    assert through_sql("uuid", value) == through_python("uuid", value) == str(value)


def test_the_database_decides_visibility_as_the_python_rule_does(alice, bob, monkeypatch):
    """Deleted objects, objects moved out of a shared team and a revoked team's
    objects: the same deletes and upserts whichever side decides."""
    from fieldwork.services import team_member_remove
    from tests.factories import delete, team_of

    team, other = team_of(alice.user, bob.user), team_of(bob.user)
    shared = [customer(f"shared {i}", team=str(team.pk)) for i in range(4)]
    bob.push(*shared, customer("bob's own"))
    _, cursor = alice.pull_all()
    bob.push(
        delete("fieldwork.customer", shared[0]["id"], 1),
        update("fieldwork.customer", shared[1]["id"], 1, team=str(other.pk)),
    )
    before_revoke = cursor
    team_member_remove(team=team, user=alice.user)

    def pulls() -> list[Any]:
        return [
            alice.pull(limit=1000)["changes"],
            alice.pull(cursor=before_revoke, limit=1000)["changes"],
        ]

    by_database = pulls()
    for stype in registry.all_types():
        monkeypatch.setattr(stype, "change_sql", None)
    assert pulls() == by_database
    initial, after_revoke = by_database
    assert initial == []  # nothing of Bob's is Alice's any more
    assert sorted(c["op"] for c in after_revoke) == ["delete"] * 4


def test_the_main_feed_statement_reads_what_its_queryset_reads(alice, bob):
    """`pull_page` reads the main feed with a statement written once rather
    than a queryset per pull: the same rows, in the same order, for every
    scope, models filter, position and limit."""
    from django.db.models import Q

    from sync.engine import feed
    from sync.engine.pull import COLUMNS, _main_feed_sql
    from sync.models import Change
    from tests.factories import team_of

    team = team_of(alice.user, bob.user)
    made = [customer(f"c{i}", team=str(team.pk) if i % 2 else None) for i in range(6)]
    bob.push(*made)
    alice.push(*(work_order(made[i]["id"]) for i in (1, 3)), customer("alice's"))
    positions = list(Change.objects.order_by("tx", "seq").values_list("tx", "seq"))
    horizon = feed.horizon()
    scopes = [None, {f"user:{alice.user.pk}"}, {f"user:{alice.user.pk}", f"team:{team.pk}"}]
    filters = [None, ("fieldwork.customer",), ("fieldwork.customer", ORDER)]
    starts = [feed.ORIGIN, positions[0], positions[len(positions) // 2], positions[-1]]
    compared = 0
    for channels in scopes:
        for labels in filters:
            for start in starts:
                for limit in (1, 3, 100):
                    in_scope = (Q(model__in=labels) if labels else Q()) & (
                        Q(channel__in=channels) if channels is not None else Q()
                    )
                    expected = list(
                        Change.objects.filter(in_scope, horizon.settled(), feed.after(start))
                        .order_by("tx", "seq")
                        .values_list(*COLUMNS)[: limit + 1]
                    )
                    sql, params = _main_feed_sql(channels, labels, horizon, start, limit)
                    with connection.cursor() as cursor:
                        cursor.execute(sql, params)
                        got = cursor.fetchall()
                    assert got == expected, (channels, labels, start, limit)
                    compared += len(got)
    assert compared > 100  # rows, not just empty reads, were compared


def test_a_page_reads_at_most_a_page_of_rows_from_each_channel(alice, bob):
    """A user in teams: each channel is read in index order and only as far
    as the page goes, never the whole channel, wherever the cursor is."""
    from sync.engine import feed
    from sync.engine.pull import _main_feed_sql
    from tests.factories import team_of

    team = team_of(alice.user, bob.user)
    bob.push(*(customer(f"team {i}", team=str(team.pk)) for i in range(30)))
    alice.push(*(customer(f"own {i}") for i in range(12)))
    channels = {f"user:{alice.user.pk}", f"team:{team.pk}"}
    limit = 5
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        sql, params = _main_feed_sql(channels, None, feed.horizon(), feed.ORIGIN, limit)
        nodes = plan_nodes(sql, params, analyze=True)
        cursor.execute(sql, params)
        assert len(cursor.fetchall()) == limit + 1
    reads = [n for n in nodes if n.get("Relation Name") == "sync_change"]
    assert len(reads) == 2, nodes  # one per channel
    assert all(r["Actual Rows"] <= limit + 1 for r in reads), nodes


def test_the_main_feed_of_one_channel_is_read_in_index_order(alice):
    """A user with only their own channel (the common case) reads the feed as a
    range of the (channel, tx, seq) index, already in order: no sort of the
    channel's rows on any page, however large the channel."""
    from sync.engine import feed
    from sync.engine.pull import _main_feed_sql

    alice.push(*(customer(f"c{i}") for i in range(3)))
    sql, params = _main_feed_sql({f"user:{alice.user.pk}"}, None, feed.horizon(), feed.ORIGIN, 100)
    with connection.cursor() as cursor:
        # A test table is small enough to read whole; ask for the index's plan.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        nodes = [n["Node Type"] for n in plan_nodes(sql, params)]
    assert "Index Scan" in nodes or "Index Only Scan" in nodes, nodes
    assert "Sort" not in nodes and "Incremental Sort" not in nodes, nodes


def test_the_whole_feed_is_read_in_index_order(alice, bob):
    """An unrestricted reader (a service account's `?since=`) reads the whole
    feed: as a range of a (tx, seq) index, already in order, stopping after a
    page; without one, every page read and sorted every row after the
    cursor (207 ms a page at 1.1 million rows, and more as the feed grows)."""
    from sync.engine import feed
    from sync.engine.pull import _main_feed_sql

    alice.push(*(customer(f"a{i}") for i in range(3)))
    bob.push(*(customer(f"b{i}") for i in range(3)))
    sql, params = _main_feed_sql(None, None, feed.horizon(), feed.ORIGIN, 2)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        nodes = plan_nodes(sql, params, analyze=True)
    assert "Sort" not in [n["Node Type"] for n in nodes], nodes
    reads = [n for n in nodes if n.get("Relation Name") == "sync_change"]
    assert reads and all(r["Actual Rows"] <= 3 for r in reads), nodes


def _generic_plan(sql: str, params: list) -> list[dict]:
    """The nodes of the plan PostgreSQL caches for `sql` when told to plan it
    generically, as the pull does (syncbase.generic_plan): without its values."""
    numbered = sql.split("%s")
    text = "".join(f"{part}${i}" for i, part in enumerate(numbered[:-1], 1)) + numbered[-1]

    def literal(value: object) -> str:
        if isinstance(value, list):
            value = "{" + ",".join(f'"{v}"' for v in value) + "}"
        return "'" + str(value).replace("'", "''") + "'"

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE page_plan AS {text}")
        try:
            return plan_nodes(f"EXECUTE page_plan({', '.join(literal(p) for p in params)})")
        finally:
            cursor.execute("DEALLOCATE page_plan")


def test_a_users_page_never_reads_the_whole_feed_index(alice, bob):
    """Planned without its values (syncbase.generic_plan), a user's page cannot
    know how much of the feed the user's channel holds, and PostgreSQL may
    then prefer reading the whole feed in (tx, seq) order, keeping the
    channel's rows: for a small user in a large feed, every row after the
    cursor, on every page. So the whole feed's index is partial, on a
    condition only the whole feed's statement states: with the channel's
    index gone, a user's generic plan still cannot use it."""
    from sync.engine import feed
    from sync.engine.pull import _main_feed_sql, _rendered_sql
    from sync.engine.scope import Scope

    alice.push(*(customer(f"a{i}") for i in range(30)))
    bob.push(customer("b"))
    channels = {f"user:{bob.user.pk}"}
    feed_sql = _main_feed_sql(channels, None, feed.horizon(), feed.ORIGIN, 100)
    sql, params = _rendered_sql(feed_sql, Scope(None, frozenset(channels)))
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX sync_change_channel_pos")  # undone with the test's transaction
        cursor.execute("SET LOCAL enable_seqscan = off")
    reads = [n for n in _generic_plan(sql, params) if n.get("Relation Name") == "sync_change"]
    assert reads and all(n.get("Index Name") != "sync_change_pos" for n in reads), reads


def test_a_page_planned_on_empty_tables_still_probes_each_object_by_key(alice):
    """The page's plan is made once per connection and kept, while the tables
    grow, until their statistics change. Made while a model's table is empty,
    PostgreSQL would read that table whole for each feed row (a sequential
    scan is the cheapest way through nothing); the pull's planner settings
    leave it only the plan it should have at any size: the channel's index
    range, then one primary-key probe per row."""
    from sync.engine import feed
    from sync.engine.pull import PAGE_PLANNER, _main_feed_sql, _rendered_sql
    from sync.engine.scope import Scope

    alice.push(customer("the only one"))  # work orders and notes: none yet
    with connection.cursor() as cursor:  # as autovacuum finds them: nearly empty
        cursor.execute("ANALYZE sync_change, fieldwork_customer, fieldwork_note")
    channels = {f"user:{alice.user.pk}"}
    feed_sql = _main_feed_sql(channels, None, feed.horizon(), feed.ORIGIN, 100)
    sql, params = _rendered_sql(feed_sql, Scope(None, frozenset(channels)))
    with connection.cursor() as cursor:
        for name, value in PAGE_PLANNER.items():
            cursor.execute(f"SET LOCAL {name} = {value}")
    nodes = _generic_plan(sql, params)
    scans = {n["Relation Name"]: n["Node Type"] for n in nodes if "Relation Name" in n}
    assert set(scans) >= {"sync_change", "fieldwork_customer", "fieldwork_note"}, scans
    assert set(scans.values()) == {"Index Scan"}, scans
    assert not {"Hash Join", "Merge Join"} & {n["Node Type"] for n in nodes}, nodes
