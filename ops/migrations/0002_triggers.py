"""Triggers that keep ops_jobruntime (the job run time histogram) and ops_credittotal (credits
charged and refunded) in the transaction that ends a job or writes a ledger row, then a
backfill from what the tables already hold. A scrape then reads a few rows, not the jobs.

PostgreSQL: statement-level triggers with transition tables (a statement ending many jobs
writes each (device, bucket) row once, in a fixed order). SQLite: row-level triggers.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from ops.models import RUNTIME_BUCKETS

TERMINAL = "('DONE', 'ERROR', 'CANCELED')"


def _bucket(seconds: str) -> str:
    cases = " ".join(f"WHEN {seconds} <= {bound} THEN {i}" for i, bound in enumerate(RUNTIME_BUCKETS))
    return f"CASE {cases} ELSE {len(RUNTIME_BUCKETS)} END"


RUNTIME_UPSERT = (
    " ON CONFLICT (device_id, bucket) DO UPDATE SET jobs = ops_jobruntime.jobs + EXCLUDED.jobs,"
    " seconds = ops_jobruntime.seconds + EXCLUDED.seconds"
)
CREDIT_UPSERT = (
    " ON CONFLICT (kind) DO UPDATE SET credits = ops_credittotal.credits + EXCLUDED.credits,"
    " entries = ops_credittotal.entries + EXCLUDED.entries"
)


def _pg_runtime(source: str) -> str:
    return (
        "INSERT INTO ops_jobruntime (device_id, bucket, jobs, seconds)"
        f" SELECT b.device_id, {_bucket('x.d')}, COUNT(*), SUM(x.d) FROM ({source}) x"
        " JOIN batches_batch b ON b.id = x.batch_id GROUP BY 1, 2 ORDER BY 1, 2" + RUNTIME_UPSERT
    )


PG_RUNTIME = _pg_runtime(
    "SELECT n.batch_id, EXTRACT(EPOCH FROM (n.end_timestamp - n.start_timestamp))::float8 AS d"
    " FROM new_jobs n JOIN old_jobs o ON o.id = n.id"
    f" WHERE o.status = 'RUNNING' AND n.status IN {TERMINAL}"
    " AND n.start_timestamp IS NOT NULL AND n.end_timestamp IS NOT NULL"
)
PG_CREDITS = (
    "INSERT INTO ops_credittotal (kind, credits, entries) SELECT kind, SUM(amount), COUNT(*) FROM new_rows"
    " WHERE kind IN ('CHARGE', 'REFUND') GROUP BY kind ORDER BY kind" + CREDIT_UPSERT
)
SQLITE_RUNTIME = (
    "CREATE TRIGGER ops_job_runtime AFTER UPDATE OF status ON jobs_job FOR EACH ROW"
    f" WHEN OLD.status = 'RUNNING' AND NEW.status IN {TERMINAL}"
    " AND NEW.start_timestamp IS NOT NULL AND NEW.end_timestamp IS NOT NULL BEGIN"
    " INSERT INTO ops_jobruntime (device_id, bucket, jobs, seconds)"
    f" SELECT device_id, {_bucket('d')}, 1, d FROM (SELECT"
    " (SELECT device_id FROM batches_batch WHERE id = NEW.batch_id) AS device_id,"
    " (julianday(NEW.end_timestamp) - julianday(NEW.start_timestamp)) * 86400.0 AS d)"
    " WHERE device_id IS NOT NULL" + RUNTIME_UPSERT + "; END"
)
SQLITE_CREDITS = (
    "CREATE TRIGGER ops_credit_totals AFTER INSERT ON portal_credittransaction FOR EACH ROW"
    " WHEN NEW.kind IN ('CHARGE', 'REFUND') BEGIN"
    " INSERT INTO ops_credittotal (kind, credits, entries) SELECT NEW.kind, NEW.amount, 1 WHERE true"
    + CREDIT_UPSERT
    + "; END"
)
PG_DURATION = "EXTRACT(EPOCH FROM (j.end_timestamp - j.start_timestamp))::float8"
SQLITE_DURATION = "(julianday(j.end_timestamp) - julianday(j.start_timestamp)) * 86400.0"


def _backfill_runtime(duration: str) -> str:
    return (
        "INSERT INTO ops_jobruntime (device_id, bucket, jobs, seconds)"
        f" SELECT device_id, {_bucket('d')}, COUNT(*), SUM(d) FROM (SELECT b.device_id AS device_id, {duration} AS d"
        " FROM jobs_job j JOIN batches_batch b ON b.id = j.batch_id"
        f" WHERE j.status IN {TERMINAL} AND j.start_timestamp IS NOT NULL AND j.end_timestamp IS NOT NULL) x"
        " GROUP BY 1, 2"
    )


BACKFILL_CREDITS = (
    "INSERT INTO ops_credittotal (kind, credits, entries) SELECT kind, SUM(amount), COUNT(*)"
    " FROM portal_credittransaction WHERE kind IN ('CHARGE', 'REFUND') GROUP BY kind"
)


def install(apps: Any, schema_editor: Any) -> None:
    run = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        run(f"CREATE FUNCTION ops_job_runtime() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {PG_RUNTIME}; RETURN NULL; END $$")
        run(
            "CREATE TRIGGER ops_job_runtime AFTER UPDATE ON jobs_job"
            " REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs FOR EACH STATEMENT EXECUTE FUNCTION ops_job_runtime()"
        )
        run(f"CREATE FUNCTION ops_credit_totals() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {PG_CREDITS}; RETURN NULL; END $$")
        run(
            "CREATE TRIGGER ops_credit_totals AFTER INSERT ON portal_credittransaction"
            " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ops_credit_totals()"
        )
        run(_backfill_runtime(PG_DURATION))
    else:
        run(SQLITE_RUNTIME)
        run(SQLITE_CREDITS)
        run(_backfill_runtime(SQLITE_DURATION))
    run(BACKFILL_CREDITS)


def uninstall(apps: Any, schema_editor: Any) -> None:
    run = schema_editor.execute
    postgres = schema_editor.connection.vendor == "postgresql"
    run("DROP TRIGGER IF EXISTS ops_job_runtime" + (" ON jobs_job" if postgres else ""))
    run("DROP TRIGGER IF EXISTS ops_credit_totals" + (" ON portal_credittransaction" if postgres else ""))
    if postgres:
        run("DROP FUNCTION IF EXISTS ops_job_runtime()")
        run("DROP FUNCTION IF EXISTS ops_credit_totals()")
    run("DELETE FROM ops_jobruntime")
    run("DELETE FROM ops_credittotal")


class Migration(migrations.Migration):
    dependencies = [
        ("ops", "0001_initial"),
        ("jobs", "0008_running_lease_index"),
        ("batches", "0004_batch_counters"),
        ("portal", "0002_ledger_drop_project_index"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
