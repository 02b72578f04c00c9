"""Inserting many rows at once: PostgreSQL's COPY where we have it, `bulk_create` elsewhere.

A 1,000-job submission writes 1,000 jobs and 1,000 ledger rows. `bulk_create` spends most of
its time in Python building one huge parameterised INSERT (~0.2 s per 1,000 jobs here);
COPY streams the same rows in a few milliseconds. Both run inside the caller's transaction,
so a submission is still all or nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import AutoField, BigAutoField, DateTimeField, Field, JSONField, Model
from django.utils import timezone

M = TypeVar("M", bound=Model)
T = TypeVar("T")

_TYPMOD = re.compile(r"\(.*\)$")

#: Below this, one INSERT is as fast as COPY and keeps the database-generated ids on the objects.
COPY_FROM = 20


def insert_all(model: type[M], objs: Sequence[M]) -> Sequence[M]:
    """Insert `objs` (new instances of `model`) and return them.

    With COPY, database-generated primary keys (AutoField) are not read back: callers that
    need them must use `bulk_create`. Client-side keys (UUIDs) are set as usual.
    """
    conn = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: the `connection` proxy looks it up on every use
    if conn.vendor != "postgresql" or len(objs) < COPY_FROM:
        return model.objects.bulk_create(objs)  # type: ignore[attr-defined, no-any-return]  # the default manager
    fields = _copied_fields(model)
    # pre_save fills auto_now(_add) times and defaults as Model.save() would.
    _copy(conn, model, fields, ([f.pre_save(obj, True) for f in fields] for obj in objs))
    for obj in objs:
        obj._state.adding = False
        obj._state.db = conn.alias
    return objs


def insert_rows(model: type[Model], rows: Sequence[dict[str, Any]]) -> None:
    """Insert plain rows ({attname: value}; a missing field takes its default) without models.

    For the largest writes (a submission's jobs and charges): building a model instance costs
    ~15 µs a row, more than COPY itself. `auto_now(_add)` times are set as the ORM sets them,
    and written back into `rows` (one `now` for all with COPY: they are one statement), so
    that a caller can answer from `rows`. Keys must be given (UUIDs) or made by the database.
    """
    fields = _copied_fields(model)
    stamped = [f.attname for f in fields if isinstance(f, DateTimeField) and (f.auto_now or f.auto_now_add)]
    conn = connections[DEFAULT_DB_ALIAS]
    if conn.vendor != "postgresql" or len(rows) < COPY_FROM:
        objs = model.objects.bulk_create([model(**row) for row in rows])  # type: ignore[attr-defined]
        for row, obj in zip(rows, objs, strict=True):
            row.update({name: getattr(obj, name) for name in stamped})
        return
    _copy(conn, model, fields, _row_values(fields, rows))


def insert_rows_while(work: Callable[[], T], inserts: Sequence[tuple[type[Model], Sequence[dict[str, Any]]]]) -> T:
    """Run `work()` (pure Python, e.g. validation) while PostgreSQL writes `inserts`; return its result.

    The rows are written in the caller's transaction as `insert_rows` writes them, and their
    deferred foreign keys checked, by statements sent in pipeline mode before `work` starts:
    the server inserts and checks on its core while this process computes on its own. If
    `work` raises, the caller's transaction must roll back (as an `atomic` block does), so
    nothing written here survives. Elsewhere (SQLite, few rows) `work` runs first, then the
    inserts, one after the other.
    """
    conn = connections[DEFAULT_DB_ALIAS]
    if not writes_while_working(sum(len(rows) for _, rows in inserts)):
        result = work()
        for model, rows in inserts:
            insert_rows(model, rows)
        return result
    statements = [_recordset_insert(conn, model, rows) for model, rows in inserts if rows]
    conn.ensure_connection()
    raw = conn.connection
    with conn.wrap_database_errors, raw.pipeline(), raw.cursor() as cursor:
        # IMMEDIATE: the foreign keys of these rows are checked now, on the server, not at commit.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for sql, params in statements:
            cursor.execute(sql, params)
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # Django's foreign keys are all INITIALLY DEFERRED
        return work()


def writes_while_working(row_count: int) -> bool:
    """Whether `insert_rows_while` overlaps its work with the writes of `row_count` rows."""
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql" and row_count >= COPY_FROM


def _recordset_insert(
    conn: BaseDatabaseWrapper, model: type[Model], rows: Sequence[dict[str, Any]]
) -> tuple[str, list[Any]]:
    """One INSERT … SELECT FROM json_to_recordset(…) of `rows` (COPY cannot be pipelined).

    A column whose value is the same in every row is sent once, as a parameter; the others go
    as one JSON document, which the C encoder writes and PostgreSQL parses far faster than
    psycopg adapts 1,000-element arrays (6 ms for a submission's jobs, in Python).
    """
    fields = _copied_fields(model)
    picks: list[str] = []
    scalars: list[Any] = []
    record: list[str] = []  # "name type" of the document's columns
    names: list[str] = []
    varying: list[tuple[Any, ...]] = []
    for field, column in zip(fields, zip(*_row_values(fields, rows), strict=True), strict=True):
        # The type without its modifier: a cast to varchar(12) would cut a longer text short
        # where the column's own assignment refuses it, as COPY does.
        db_type = _TYPMOD.sub("", str(field.db_type(conn)))
        if column.count(column[0]) == len(column):  # the same in every row
            picks.append(f"%s::{db_type}")
            scalars.append(field.get_db_prep_save(column[0], conn) if isinstance(field, JSONField) else column[0])
            continue
        name = f"c{len(names)}"
        names.append(name)
        picks.append(f"t.{name}")  # JSON null is SQL NULL there, in a jsonb column too, as the ORM writes None
        record.append(f"{name} {db_type}")
        varying.append(column)
    columns = ", ".join(conn.ops.quote_name(str(f.column)) for f in fields)
    insert = f"INSERT INTO {conn.ops.quote_name(model._meta.db_table)} ({columns}) SELECT {', '.join(picks)}"
    if not varying:  # every row the same (no key of ours among the columns)
        return f"{insert} FROM generate_series(1, %s)", [*scalars, len(rows)]
    document = json.dumps(
        [dict(zip(names, values, strict=True)) for values in zip(*varying, strict=True)],
        default=_json_default,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return f"{insert} FROM json_to_recordset(%s::json) AS t({', '.join(record)})", [*scalars, document]


def _json_default(value: Any) -> str:
    """UUIDs and times in the JSON document, as PostgreSQL reads them back."""
    if isinstance(value, UUID):
        return value.hex  # PostgreSQL reads the 32 digits too, and Python writes them faster
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _row_values(fields: list[Field[Any, Any]], rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """Each row's value of each field, in order: a missing field takes its default, and the
    `auto_now(_add)` times one `now` for all (one statement), written back into `rows`."""
    now = timezone.now()
    for field in fields:
        if isinstance(field, DateTimeField) and (field.auto_now or field.auto_now_add):
            for row in rows:
                row[field.attname] = now
    # (name, value, make): a missing field takes `make()` if its default is a callable, else `value`.
    fill = [
        (f.attname, None, f.default) if f.has_default() and callable(f.default) else (f.attname, f.get_default(), None)
        for f in fields
    ]
    return [
        [row[name] if name in row else (value if make is None else make()) for name, value, make in fill]
        for row in rows
    ]


def _copied_fields(model: type[Model]) -> list[Field[Any, Any]]:
    return [f for f in model._meta.concrete_fields if not isinstance(f, (AutoField, BigAutoField))]


def _copy(
    conn: BaseDatabaseWrapper, model: type[Model], fields: list[Field[Any, Any]], rows: Iterable[list[Any]]
) -> None:
    """COPY `rows` (one value per field, in order) into the model's table.

    COPY sends text that PostgreSQL parses per column, so plain Python values (UUIDs, aware
    datetimes, ints, strings) go as they are; only JSON needs Django's preparation (~5× faster
    than preparing all).
    """
    columns = ", ".join(conn.ops.quote_name(str(f.column)) for f in fields)
    table = conn.ops.quote_name(model._meta.db_table)
    json_at = [(i, f.get_db_prep_save) for i, f in enumerate(fields) if isinstance(f, JSONField)]
    sql = f"COPY {table} ({columns}) FROM STDIN"
    # wrap_database_errors: a violated constraint raises Django's IntegrityError, as bulk_create's.
    with conn.wrap_database_errors, conn.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            for i, prepare in json_at:
                row[i] = prepare(row[i], conn)
            copy.write_row(row)
