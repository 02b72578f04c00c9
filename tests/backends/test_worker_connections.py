"""A worker reuses its database connection from task to task as Django does from request to
request: CONN_MAX_AGE and CONN_HEALTH_CHECKS decide, not Celery's fix-up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from portal.celery import RUN_JOB, _recycle_connections, app

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def max_age() -> Iterator[object]:
    """Sets the connection's CONN_MAX_AGE for one test (the next connection opened takes it)."""
    saved = connection.settings_dict["CONN_MAX_AGE"]

    def set_to(seconds: int) -> None:
        connection.close()
        connection.settings_dict["CONN_MAX_AGE"] = seconds

    yield set_to
    connection.close()
    connection.settings_dict["CONN_MAX_AGE"] = saved


def _run_tasks(n: int) -> list[object]:
    """The raw connection each of `n` tasks used, around which the worker's signals ran."""
    fixup = DjangoWorkerFixup(app)  # as a worker installs it
    app.loader.import_default_modules()  # registers the tasks, as a worker does at start
    task = app.tasks[RUN_JOB]
    used = []
    for _ in range(n):
        fixup.on_task_prerun(sender=task)
        _recycle_connections(sender=task)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        used.append(connection.connection)
        fixup.on_task_postrun(sender=task)
        _recycle_connections(sender=task)
    return used


def test_a_worker_keeps_its_connection_from_task_to_task(max_age) -> None:  # type: ignore[no-untyped-def]
    max_age(60)
    used = _run_tasks(3)
    assert used[0] is used[1] is used[2]


def test_without_a_max_age_each_task_opens_its_own_connection(max_age) -> None:  # type: ignore[no-untyped-def]
    max_age(0)
    used = _run_tasks(2)
    assert used[0] is not used[1]


@pytest.mark.postgres  # SQLite's connections never break (Django never checks them)
def test_a_broken_connection_is_replaced_before_the_next_task(max_age) -> None:  # type: ignore[no-untyped-def]
    max_age(60)
    first = _run_tasks(1)[0]
    connection.connection.close()  # the server went away between two tasks
    second = _run_tasks(1)[0]
    assert second is not first


def test_a_task_run_eagerly_leaves_its_callers_connection_open() -> None:
    """CELERY_TASK_ALWAYS_EAGER runs a task inside its caller's transaction: not to be closed."""
    app.loader.import_default_modules()
    task = app.tasks[RUN_JOB]
    connection.ensure_connection()
    raw = connection.connection
    task.push_request(is_eager=True)
    try:
        _recycle_connections(sender=task)
    finally:
        task.pop_request()
    assert connection.connection is raw
