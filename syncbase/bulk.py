"""Inserting many new rows at once: PostgreSQL's COPY where it can, Django's
bulk_create elsewhere.

Written by hand because neither Django nor a maintained library offers it for
model instances inside the ORM's connection and transaction: Django's
bulk_create sends every value as a query parameter, and psycopg, binding
client-side, quotes each element of the UNNEST arrays in Python. Measured on a
push of 500 creates, that was most of the time of each INSERT (the mutation
records: 30 ms with bulk_create, 10 ms with COPY). COPY streams the rows in
psycopg's own (C) row format instead. A few rows (fewer than COPY_FROM) go
in with one INSERT … VALUES of the same prepared values: COPY waits for the
server twice, and a push of three creates took 0.35 ms more CPU and 0.45 ms
more time with three COPYs than with three INSERTs (in process, five
alternating rounds of 200).

What each row holds is what bulk_create would write: `pre_save` then
`get_db_prep_save` of every concrete field; an auto-incremented primary key
is left to its sequence. Like bulk_create, it sends no signals, and it marks
the objects as saved. Django's cursor logs the COPY like any query.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
from django.db import connection, connections, models


def _columns(model: type[models.Model], with_pk: bool) -> list[models.Field]:
    return [
        f
        for f in model._meta.concrete_fields
        if with_pk or not (f.primary_key and isinstance(f, models.AutoField | models.BigAutoField))
    ]


def insert(
    model: type[models.Model], objs: Sequence[models.Model], *, with_pk: bool = False
) -> None:
    """Insert `objs` (new rows of `model`) in one statement; `with_pk`: their
    auto-incremented primary keys are set already (taken from the sequence)."""
    if not objs:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(objs)
        return
    fields = _columns(model, with_pk)
    _write_rows(model, fields, ([f.pre_save(obj, True) for f in fields] for obj in objs))
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


def insert_values(
    model: type[models.Model], rows: Sequence[Mapping[str, Any]], *, with_pk: bool = False
) -> None:
    """Insert rows given as attname → value mappings (a missing field takes
    its default), without building model instances (tens of microseconds
    each): for rows nobody reads back, such as history. Fields' `pre_save`
    is not applied: not for models with auto_now fields."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create([model(**row) for row in rows])
        return
    fields = _columns(model, with_pk)
    _write_rows(
        model,
        fields,
        ([row[f.attname] if f.attname in row else f.get_default() for f in fields] for row in rows),
    )


def insert_selected(
    target: type[models.Model],
    source: type[models.Model],
    ids: Sequence[Any],
    *,
    fixed: Mapping[str, Any],
    each: Mapping[str, Sequence[Any]],
) -> None:
    """Insert one `target` row per id, in the order of `ids`, copying the
    `source` row of that primary key as this transaction sees it now: every
    target field takes the source field of the same attname, else its value
    in `fixed` (the same for all rows) or `each` (one per id). Used for
    history: the rows a batch has just written are copied by PostgreSQL in
    one statement and never pass through Python. PostgreSQL only."""
    if not ids:
        return
    conn = connections[connection.alias]
    quote = conn.ops.quote_name
    pk = source._meta.pk
    if pk is None:
        raise TypeError(f"{source._meta.label} has no primary key")
    source_columns = {f.attname: str(f.column) for f in source._meta.concrete_fields}
    columns, exprs, params = [], [], []
    arrays = [f"%s::{pk.db_type(conn)}[]"]
    array_params: list[Any] = [list(ids)]
    aliases = ["pk"]
    for k, f in enumerate(_columns(target, with_pk=False)):
        columns.append(quote(str(f.column)))
        if f.attname in fixed:
            exprs.append(f"%s::{f.db_type(conn)}")
            params.append(_prepare(f, conn)(fixed[f.attname]))
        elif f.attname in each:
            aliases.append(f"c{k}")
            exprs.append(f"w.c{k}")
            arrays.append(f"%s::{f.db_type(conn)}[]")
            prep = _prepare(f, conn)
            array_params.append([prep(v) for v in each[f.attname]])
        else:
            exprs.append(f"s.{quote(source_columns[f.attname])}")
    aliases.append("n")
    # Names from the models' metadata, values as parameters.
    sql = (
        f"INSERT INTO {quote(target._meta.db_table)} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(exprs)} "
        f"FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS w({', '.join(aliases)}) "
        f"JOIN {quote(source._meta.db_table)} s ON s.{quote(str(pk.column))} = w.pk "
        "ORDER BY w.n"
    )
    with conn.cursor() as cursor:
        cursor.execute(sql, [*params, *array_params])
        if cursor.rowcount != len(ids):
            # A missing source row would silently lose a row of history.
            raise RuntimeError(f"{target._meta.label}: copied {cursor.rowcount} rows of {len(ids)}")


def update_each(
    model: type[models.Model],
    rows: Mapping[Any, Mapping[str, Any]],
    *,
    only_if: Mapping[str, Any],
) -> int:
    """Give each row (by primary key) its own values of the same fields, where
    it still matches `only_if` (attname → value); the number of rows changed.
    One `UPDATE … FROM unnest(…)` on PostgreSQL, however many rows (Django's
    bulk_update builds a CASE per field and row, and cannot add a condition);
    one UPDATE per row elsewhere."""
    if not rows:
        return 0
    if connection.vendor != "postgresql":
        manager = model._default_manager
        return sum(manager.filter(pk=pk, **only_if).update(**values) for pk, values in rows.items())
    conn = connections[connection.alias]
    quote = conn.ops.quote_name
    meta = model._meta
    pk = meta.pk
    if pk is None:
        raise TypeError(f"{meta.label} has no primary key")
    by_name = {f.name: f for f in meta.concrete_fields}
    fields = [by_name[name] for name in next(iter(rows.values()))]
    ids = list(rows)
    arrays = [f"%s::{pk.db_type(conn)}[]"]
    params: list[Any] = [[pk.get_db_prep_value(i, conn) for i in ids]]
    sets = []
    for k, f in enumerate(fields):
        prep = _prepare(f, conn)
        arrays.append(f"%s::{f.db_type(conn)}[]")
        params.append([prep(rows[i][f.name]) for i in ids])
        sets.append(f"{quote(str(f.column))} = v.c{k}")
    conditions = [f"t.{quote(str(pk.column))} = v.pk"]
    for attname, value in only_if.items():
        f = next(f for f in meta.concrete_fields if f.attname == attname)
        conditions.append(f"t.{quote(str(f.column))} = %s")
        params.append(_prepare(f, conn)(value))
    aliases = ", ".join(["pk", *(f"c{k}" for k in range(len(fields)))])
    # Names from the model's metadata, values as parameters.
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {', '.join(sets)} "  # noqa: S608
        f"FROM unnest({', '.join(arrays)}) AS v({aliases}) WHERE {' AND '.join(conditions)}"
    )
    with conn.wrap_database_errors, conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# Fewer rows than this go in with INSERT … VALUES: COPY waits for the server
# twice (for its statement, then for the rows), an INSERT once, and a push of
# a few mutations writes three tables this way. Each row count is its own
# statement text, so a table has at most COPY_FROM - 1 of them for psycopg to
# prepare.
COPY_FROM = 16


def _write_rows(
    model: type[models.Model], fields: list[models.Field], rows: Iterable[list[Any]]
) -> None:
    """`rows` (values of `fields`, in order) into `model`'s table: INSERT for
    fewer than COPY_FROM rows, COPY for more."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(str(f.column)) for f in fields)
    # The connection itself, not the `connection` proxy: its lookups were a
    # third of the time of preparing the values.
    conn = connections[connection.alias]
    prepare = [_prepare(f, conn) for f in fields]
    prepared = [[prep(v) for prep, v in zip(prepare, values, strict=True)] for values in rows]
    # Raised as Django's errors (IntegrityError, ...), as the ORM's statements are.
    with conn.wrap_database_errors, conn.cursor() as cursor:
        if len(prepared) < COPY_FROM:
            row = f"({', '.join(['%s'] * len(fields))})"
            # Names from the model's metadata; every value is a parameter.
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(prepared))}",  # noqa: S608
                [value for values in prepared for value in values],
            )
            return
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for values in prepared:
                copy.write_row(values)


# Fields whose values Django sends to PostgreSQL as they are, when they have
# these exact types (checked on the exact field class: a subclass may convert).
_AS_IS: dict[type[models.Field], tuple[type, ...]] = {
    models.CharField: (str,),
    models.TextField: (str,),
    models.EmailField: (str,),
    models.URLField: (str,),
    models.SlugField: (str,),
    models.IntegerField: (int,),
    models.BigIntegerField: (int,),
    models.SmallIntegerField: (int,),
    models.PositiveIntegerField: (int,),
    models.PositiveBigIntegerField: (int,),
    models.PositiveSmallIntegerField: (int,),
    models.AutoField: (int,),
    models.BigAutoField: (int,),
    models.BooleanField: (bool,),
    models.UUIDField: (uuid.UUID,),
    models.DateField: (dt.date,),
}


def _prepare(f: models.Field, conn: Any) -> Callable[[Any], Any]:
    """How a field's value goes into a COPY row: as bulk_create would send it.
    Values Django would pass on unchanged skip its conversions (a few
    microseconds per value, most of the time of a COPY of narrow rows); JSON
    (with Django's default encoder) is written with orjson, where Django uses
    the standard library."""
    target = f.target_field if isinstance(f, models.ForeignKey) else f
    simple = _AS_IS.get(type(target))
    if simple is not None:

        def as_is(value: Any) -> Any:
            if value is None or type(value) in simple:
                return value
            return f.get_db_prep_save(value, conn)

        return as_is
    if type(f) is models.DateTimeField:

        def moment(value: Any) -> Any:
            if value is None or (type(value) is dt.datetime and value.tzinfo is not None):
                return value
            return f.get_db_prep_save(value, conn)

        return moment
    if isinstance(f, models.JSONField) and f.encoder is None:

        def as_json(value: Any) -> Any:
            if value is None:
                return f.get_db_prep_save(value, conn)
            try:
                return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
            except TypeError:  # beyond what orjson writes: the standard way
                return f.get_db_prep_save(value, conn)

        return as_json
    return lambda value: f.get_db_prep_save(value, conn)
