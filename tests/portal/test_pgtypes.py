"""portal.pgtypes: timestamptz columns read by psycopg's C loader give what Django's would."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import get_adapters_template
from psycopg import adapters
from psycopg.pq import Format

from portal.models import Project
from portal.pgtypes import UtcTimestamptzLoader
from tests.factories import ProjectFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

TIMESTAMPTZ = adapters.types["timestamptz"].oid


def _read(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def test_every_connection_reads_timestamps_with_the_c_loader():
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(TIMESTAMPTZ, Format.TEXT)
    assert loader is UtcTimestamptzLoader


def test_timestamps_read_in_c_equal_djangos_own_reading_in_value_and_time_zone():
    values = [
        datetime.datetime(2026, 12, 1, 22, 40, 1, 123456, tzinfo=datetime.UTC),
        datetime.datetime(1969, 7, 20, 20, 17, tzinfo=datetime.UTC),
        datetime.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
        datetime.datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=datetime.UTC),
    ]
    sql = "SELECT v FROM unnest(%s::timestamptz[]) AS v"
    ours = [row[0] for row in _read(sql, [values])]
    django_loader = get_adapters_template(True, datetime.UTC).get_loader(TIMESTAMPTZ, Format.TEXT)
    connection.connection.adapters.register_loader("timestamptz", django_loader)
    try:
        djangos = [row[0] for row in _read(sql, [values])]
    finally:
        connection.connection.adapters.register_loader("timestamptz", UtcTimestamptzLoader)
    assert ours == djangos == values
    assert {value.utcoffset() for value in ours} == {datetime.timedelta(0)}
    assert all(value.tzinfo is datetime.UTC for value in ours + djangos)


def test_a_model_read_through_the_orm_has_the_aware_utc_time_it_was_given():
    project: Project = ProjectFactory()  # type: ignore[assignment]  # factory_boy: the model
    created = datetime.datetime(2026, 12, 1, 12, 0, 0, 654321, tzinfo=datetime.UTC)
    Project.objects.filter(pk=project.pk).update(created_at=created)
    project.refresh_from_db()
    assert project.created_at == created and project.created_at.tzinfo is datetime.UTC
