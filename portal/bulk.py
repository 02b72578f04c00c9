"""Inserting many rows at once: PostgreSQL's COPY where we have it, `bulk_create` elsewhere.

A 1,000-job submission writes 1,000 jobs and 1,000 ledger rows. `bulk_create` spends most of
its time in Python building one huge parameterised INSERT (~0.2 s per 1,000 jobs here);
COPY streams the same rows in a few milliseconds. Both run inside the caller's transaction,
so a submission is still all or nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import AutoField, BigAutoField, DateTimeField, Field, JSONField, Model
from django.utils import timezone

M = TypeVar("M", bound=Model)

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
    now = timezone.now()
    for row in rows:
        row.update(dict.fromkeys(stamped, now))
    # (name, value, make): a missing field takes `make()` if its default is a callable, else `value`.
    fill = [
        (f.attname, None, f.default) if f.has_default() and callable(f.default) else (f.attname, f.get_default(), None)
        for f in fields
    ]
    values = (
        [row[name] if name in row else (value if make is None else make()) for name, value, make in fill]
        for row in rows
    )
    _copy(conn, model, fields, values)


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
