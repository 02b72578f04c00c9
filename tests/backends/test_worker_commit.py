"""Workers' database connections use WORKER_SYNCHRONOUS_COMMIT; the web's stay durable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection, connections
from django.db.backends.signals import connection_created

from portal.celery import _worker_commit_durability

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
SET_LEVEL = "set_config('synchronous_commit'"


def _synchronous_commit(conn: object) -> str:
    with conn.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


@pytest.fixture
def new_connection() -> Iterator[object]:
    """A connection opened after the worker's signal is wired, as a worker child opens its own."""
    conn = connections.create_connection("default")
    yield conn
    conn.close()
    connection_created.disconnect(dispatch_uid="tweezer-worker-commit")


def test_worker_connections_skip_the_wal_flush_by_default(settings, new_connection) -> None:  # type: ignore[no-untyped-def]
    assert _synchronous_commit(connection) == "on"  # the web process: every commit is durable
    settings.WORKER_SYNCHRONOUS_COMMIT = "off"
    _worker_commit_durability()
    assert _synchronous_commit(new_connection) == "off"


def test_worker_commit_level_follows_the_setting(settings, new_connection) -> None:  # type: ignore[no-untyped-def]
    settings.WORKER_SYNCHRONOUS_COMMIT = "local"
    _worker_commit_durability()
    assert _synchronous_commit(new_connection) == "local"


def test_an_unknown_commit_level_stops_the_worker_at_start(settings) -> None:  # type: ignore[no-untyped-def]
    settings.WORKER_SYNCHRONOUS_COMMIT = "sometimes"
    with pytest.raises(ValueError, match="WORKER_SYNCHRONOUS_COMMIT"):
        _worker_commit_durability()


@pytest.mark.django_db(transaction=True)
def test_advance_commits_as_the_workers_do_and_leaves_the_connection_durable(settings, devices) -> None:  # type: ignore[no-untyped-def]
    """Scheduling state only: the web's `advance` skips the flush too, for its own transaction."""
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    from batches import scheduler

    settings.WORKER_SYNCHRONOUS_COMMIT = "off"
    device = devices["EMU_FREE"]
    with CaptureQueriesContext(connection) as queries:
        scheduler.advance(device.pk)
    assert any(SET_LEVEL in q["sql"] for q in queries.captured_queries)
    assert _synchronous_commit(connection) == "on"  # SET LOCAL: gone with advance's commit
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        scheduler.advance(device.pk)  # inside a caller's transaction: its commit is the caller's
    assert not any(SET_LEVEL in q["sql"] for q in queries.captured_queries)
    settings.WORKER_SYNCHRONOUS_COMMIT = "on"
    with CaptureQueriesContext(connection) as queries:
        scheduler.advance(device.pk)
    assert not any(SET_LEVEL in q["sql"] for q in queries.captured_queries)
