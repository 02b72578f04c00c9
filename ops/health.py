"""Readiness checks (django-health-check): the database, the broker, the results storage and
the migrations. Liveness (/healthz) checks nothing but that the process answers."""

from __future__ import annotations

import dataclasses
import datetime

from django.db import DEFAULT_DB_ALIAS, connections
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable

_MIGRATED: set[str] = set()


@dataclasses.dataclass
class Broker(HealthCheck):
    """A connection to the Celery broker (Redis, or the file-system broker's folders)."""

    timeout = datetime.timedelta(seconds=3)

    def run(self) -> None:
        from portal.celery import app

        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:  # noqa: BLE001 - kombu raises many kinds
            raise ServiceUnavailable(f"broker unreachable ({type(exc).__name__})") from exc


def _reason(exc: Exception) -> str:
    """The exception's kind, and an S3 error's code (botocore's ClientError: 404 for a missing
    bucket, 403 for refused credentials), never its message (it names buckets and keys)."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return f"{type(exc).__name__} {code}" if code else type(exc).__name__


@dataclasses.dataclass
class ResultsStorage(HealthCheck):
    """The results storage answers a lookup (a row, the S3 bucket's HEAD, a folder): nothing is written."""

    def run(self) -> None:
        from jobs.storage import probe_results_storage

        try:
            probe_results_storage()
        except Exception as exc:  # noqa: BLE001 - whatever the backend raises
            raise ServiceUnavailable(f"results storage unreachable ({_reason(exc)})") from exc
        finally:
            connections[DEFAULT_DB_ALIAS].close()


@dataclasses.dataclass
class Migrations(HealthCheck):
    """Every migration this code knows of is applied (checked until true, then remembered)."""

    alias: str = DEFAULT_DB_ALIAS

    def run(self) -> None:
        if self.alias in _MIGRATED:
            return
        from django.db.migrations.executor import MigrationExecutor

        connection = connections[self.alias]
        try:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except Exception as exc:  # noqa: BLE001 - the database itself is the Database check's
            raise ServiceUnavailable(f"migrations unknown ({type(exc).__name__})") from exc
        finally:
            connection.close()
        if plan:
            raise ServiceUnavailable(f"{len(plan)} migrations not applied (run `manage.py migrate`)")
        _MIGRATED.add(self.alias)


READY_CHECKS = ("health_check.checks.Database", Broker, ResultsStorage, Migrations)
