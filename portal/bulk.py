"""Inserting many rows at once: PostgreSQL's COPY where we have it, `bulk_create` elsewhere.

A large submission writes thousands of jobs and ledger rows: COPY streams them as text instead
of building one huge parameterised INSERT. Both run inside the caller's transaction, so a
submission is still all or nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import AutoField, BigAutoField, DateTimeField, Field, JSONField, Model
from django.utils import timezone

#: Below this, one INSERT does as well as COPY.
COPY_FROM = 20


def insert_rows(model: type[Model], rows: Sequence[dict[str, Any]]) -> None:
    """Insert plain rows ({attname: value}; a missing field takes its default) without models.

    For the largest writes (a submission's jobs and charges, a batch's refunds): no model
    instance per row on the COPY path. `auto_now(_add)` times are set as the ORM sets them,
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
    datetimes, ints, strings) go as they are; only JSON needs Django's preparation.
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
