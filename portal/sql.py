"""Hand-written SQL for the few queries on hot paths, read back as the ORM would read them.

Django spends ~0.5–1 ms building a query with joins or subqueries; the queries run per API
request, per view or per scheduler pass take less than that in the database. Such a query is
written once as text here and its columns go through the same converters as the ORM's
(aware times and booleans on SQLite, UUIDs from text), so callers see the same values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model


def column(model: type[Model], name: str, alias: str) -> str:
    """`alias."column"` of the model's field `name`."""
    return _qualified(model._meta.get_field(name), alias)


def _qualified(field: Any, alias: str) -> str:
    return f"{alias}.{connection.ops.quote_name(str(field.column))}"


def param(model: type[Model], name: str, value: Any) -> Any:
    """A value for a `%s` compared with field `name` (UUIDs as SQLite stores them, …)."""
    return model._meta.get_field(name).get_db_prep_value(value, connection)  # type: ignore[union-attr]


def columns(model: type[Model], alias: str) -> tuple[str, list[Field[Any, Any]]]:
    """Every concrete column of `model` as `alias."col", …`, and their fields (for `fetch`)."""
    fields = list(model._meta.concrete_fields)
    return ", ".join(_qualified(f, alias) for f in fields), fields


def instance(model: type[Model], fields: Sequence[Field[Any, Any]], values: Sequence[Any]) -> Any:
    """A model instance from converted values of `fields`, as a queryset would build it."""
    return model.from_db(connection.alias, [f.attname for f in fields], values)


def fetch(sql: str, params: Sequence[Any], fields: Sequence[Field[Any, Any] | None]) -> list[list[Any]]:
    """The rows of `sql`, column i converted as the ORM converts `fields[i]` (None: as is)."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the `connection` proxy looks the thread's up
    with _cursor(db) as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    steps = [_converters(db, f) for f in fields]
    if not any(steps):
        return [list(row) for row in found]
    return [[v if step is None else _convert(v, step, db) for v, step in zip(row, steps, strict=True)] for row in found]


def _cursor(db: Any) -> Any:
    """Django's cursor; on PostgreSQL around one that binds parameters on the server, so that
    psycopg prepares a query once it has run it DB_PREPARE_THRESHOLD times on a connection
    (settings.py) and PostgreSQL stops planning it anew: planning took 0.15–0.4 ms of these
    queries, which run in 0.05–1 ms. Django's own cursors bind on the client (their SQL text
    holds the values), which cannot be prepared."""
    if db.vendor != "postgresql" or db.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        return db.cursor()
    import psycopg

    # What db.cursor() does, with psycopg's server-binding cursor class (Django's wrapper
    # still logs the query, runs execute_wrappers and translates errors).
    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors:
        return db._prepare_cursor(psycopg.Cursor(db.connection))


# A field's converters depend on the field and the database engine only: worked out once
# (asking Django for them took longer than reading a batch's row). None: nothing to convert.
_STEPS: dict[tuple[str, Field[Any, Any]], tuple[Any, list[Any]] | None] = {}


def _converters(db: Any, field: Field[Any, Any] | None) -> tuple[Any, list[Any]] | None:
    if field is None:
        return None
    key = (db.vendor, field)
    if key not in _STEPS:
        col = field.get_col(field.model._meta.db_table)
        converters = db.ops.get_db_converters(col) + field.get_db_converters(db)
        _STEPS[key] = (col, converters) if converters else None
    return _STEPS[key]


def _convert(value: Any, step: tuple[Any, list[Any]], db: Any) -> Any:
    col, converters = step
    for convert in converters:
        value = convert(value, col, db)
    return value
