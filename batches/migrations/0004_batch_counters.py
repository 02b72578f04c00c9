"""Per-status job counts and credits spent on the batch row, kept by triggers.

PostgreSQL: statement-level triggers with transition tables, so a COPY of 1,000 jobs, a
cancel of 10,000 or a refund of many updates each batch once per statement (a row-level
trigger would update the same batch row 10,000 times in one transaction, each a new row
version to walk). Only a statement that changes a status writes the batch row: a heartbeat
or a dispatch mark leaves it alone (and takes no batch lock). Every writer of a job's status
holds the batch's lock first (runner.claim included), so the trigger's UPDATE never inverts
the lock order device -> batch -> job -> project.
SQLite (one writer at a time): row-level triggers.
"""

from django.db import migrations, models

STATUSES = ("PENDING", "RUNNING", "DONE", "ERROR", "CANCELED")
COLUMNS = {status: f"{status.lower()}_jobs" for status in STATUSES}


def _pg_delta(table: str, sign: str) -> str:
    counts = ", ".join(f"{sign}(status = '{s}')::int AS {c}" for s, c in COLUMNS.items())
    return f"SELECT batch_id, {counts} FROM {table}"


def _pg_apply(source: str) -> str:
    sums = ", ".join(f"SUM({c}) AS {c}" for c in COLUMNS.values())
    changed = " OR ".join(f"SUM({c}) <> 0" for c in COLUMNS.values())
    sets = ", ".join(f"{c} = b.{c} + d.{c}" for c in COLUMNS.values())
    return (
        f"UPDATE batches_batch b SET {sets}"
        f" FROM (SELECT batch_id, {sums} FROM ({source}) x GROUP BY batch_id HAVING {changed}) d"
        " WHERE b.id = d.batch_id"
    )


PG_FUNCTIONS = {
    "INSERT": _pg_apply(_pg_delta("new_jobs", "")),
    "UPDATE": _pg_apply(f"{_pg_delta('new_jobs', '')} UNION ALL {_pg_delta('old_jobs', '-')}"),
    "DELETE": _pg_apply(_pg_delta("old_jobs", "-")),
}
PG_REFERENCING = {
    "INSERT": "NEW TABLE AS new_jobs",
    "UPDATE": "OLD TABLE AS old_jobs NEW TABLE AS new_jobs",
    "DELETE": "OLD TABLE AS old_jobs",
}
PG_LEDGER = (
    "UPDATE batches_batch b SET credits_spent = b.credits_spent - s.total"
    " FROM (SELECT batch_id, SUM(amount) AS total FROM new_rows"
    "  WHERE batch_id IS NOT NULL AND kind IN ('CHARGE', 'REFUND') GROUP BY batch_id) s"
    " WHERE b.id = s.batch_id"
)


def _sqlite_trigger(event: str) -> str:
    def delta(row: str, sign: str) -> str:
        return " ".join(f"{c} = {c} {sign} ({row}.status = '{s}')," for s, c in COLUMNS.items())

    on, when = "ON jobs_job FOR EACH ROW", ""
    if event == "INSERT":
        sets, where = delta("NEW", "+"), "NEW.batch_id"
    elif event == "DELETE":
        sets, where = delta("OLD", "-"), "OLD.batch_id"
    else:
        parts = [f"{c} = {c} + (NEW.status = '{s}') - (OLD.status = '{s}')," for s, c in COLUMNS.items()]
        sets, where = " ".join(parts), "NEW.batch_id"
        on, when = f"OF status {on}", " WHEN OLD.status IS NOT NEW.status"
    return (
        f"CREATE TRIGGER batch_job_counts_{event.lower()} AFTER {event} {on}{when} BEGIN"
        f" UPDATE batches_batch SET {sets.rstrip(',')} WHERE id = {where}; END"
    )


SQLITE_LEDGER = (
    "CREATE TRIGGER batch_credits_spent AFTER INSERT ON portal_credittransaction FOR EACH ROW"
    " WHEN NEW.batch_id IS NOT NULL AND NEW.kind IN ('CHARGE', 'REFUND') BEGIN"
    " UPDATE batches_batch SET credits_spent = credits_spent - NEW.amount WHERE id = NEW.batch_id; END"
)

BACKFILL = (
    "UPDATE batches_batch SET "
    + ", ".join(f"{c} = (SELECT COUNT(*) FROM jobs_job j WHERE j.batch_id = batches_batch.id AND j.status = '{s}')"
                for s, c in COLUMNS.items())  # fmt: skip
    + ", credits_spent = -(SELECT COALESCE(SUM(t.amount), 0) FROM portal_credittransaction t"
    " WHERE t.batch_id = batches_batch.id AND t.kind IN ('CHARGE', 'REFUND'))"
)


def install(apps, schema_editor):
    run = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        for event, body in PG_FUNCTIONS.items():
            name = f"batch_job_counts_{event.lower()}"
            run(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body}; RETURN NULL; END $$")
            run(
                f"CREATE TRIGGER {name} AFTER {event} ON jobs_job REFERENCING {PG_REFERENCING[event]}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            )
        run(f"CREATE FUNCTION batch_credits_spent() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {PG_LEDGER}; RETURN NULL; END $$")
        run(
            "CREATE TRIGGER batch_credits_spent AFTER INSERT ON portal_credittransaction"
            " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION batch_credits_spent()"
        )
    else:
        for event in ("INSERT", "UPDATE", "DELETE"):
            run(_sqlite_trigger(event))
        run(SQLITE_LEDGER)
    run(BACKFILL)  # after the triggers, in the same transaction: nothing is counted twice or missed


def uninstall(apps, schema_editor):
    run = schema_editor.execute
    postgres = schema_editor.connection.vendor == "postgresql"
    for event in ("insert", "update", "delete"):
        run(f"DROP TRIGGER IF EXISTS batch_job_counts_{event}" + (" ON jobs_job" if postgres else ""))
        if postgres:
            run(f"DROP FUNCTION IF EXISTS batch_job_counts_{event}()")
    run("DROP TRIGGER IF EXISTS batch_credits_spent" + (" ON portal_credittransaction" if postgres else ""))
    if postgres:
        run("DROP FUNCTION IF EXISTS batch_credits_spent()")


def counter(**kwargs):
    return models.PositiveIntegerField(default=0, db_default=0, editable=False, **kwargs)


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0003_workload"),
        ("jobs", "0008_running_lease_index"),
        ("portal", "0002_ledger_drop_project_index"),
    ]

    operations = [
        *(migrations.AddField(model_name="batch", name=column, field=counter()) for column in COLUMNS.values()),
        migrations.AddField(
            model_name="batch", name="credits_spent", field=models.BigIntegerField(default=0, db_default=0, editable=False)
        ),
        migrations.RunPython(install, uninstall),
    ]
