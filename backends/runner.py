"""Running one job: claim it, run the adapter under a renewed lease, store the result, end it.

Every step is a conditional UPDATE fenced by the lease owner, so a redelivered message,
a second worker or a worker that lost its lease can never end a job twice.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from backends.adapters import BackendUnavailable, RunConfig, get_adapter
from backends.sequences import build, check_variables, sequence_cache
from batches import scheduler
from batches.models import Batch, BatchStatus
from jobs.models import Job, JobStatus
from jobs.results import store_result
from portal import credits
from portal.errors import TweezerError

log = logging.getLogger(__name__)


def claim(job_id: str, owner: str) -> Job | None:
    """PENDING -> RUNNING with a fresh lease, or None if the job is not ours to run."""
    if not _claim_update(job_id, owner):
        return None  # canceled, already running elsewhere, or gone
    return Job.objects.select_related("batch", "batch__device").get(pk=job_id)


def _lease_until(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.JOB_LEASE_SECONDS)


def _claim_update(job_id: Any, owner: str, *, now: datetime | None = None) -> bool:
    """The conditional PENDING -> RUNNING UPDATE of `claim`; True if this worker won the job.

    Rule 2 holds even for a stale or duplicated message: a job starts only in a RUNNING
    batch, when no job of that batch runs and no earlier job of it is still pending.
    Written as SQL because it runs once per job and Django takes ~10× longer to compile
    this three-subquery UPDATE than the database takes to run it. The conditions sit on
    the updated row itself (EXISTS, not a join), so PostgreSQL re-checks all of them,
    `status = PENDING` included, on the row version a concurrent claim left behind.
    """
    now = now or timezone.now()
    ops, pk = connection.ops, Job._meta.pk
    assert pk is not None
    params = [
        JobStatus.RUNNING,
        ops.adapt_datetimefield_value(now),
        owner,
        ops.adapt_datetimefield_value(_lease_until(now)),
        pk.get_db_prep_value(job_id, connection),
        JobStatus.PENDING,
        BatchStatus.RUNNING,
        JobStatus.RUNNING,
        JobStatus.PENDING,
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_CLAIM_LOCKING_BATCH_SQL, [params[4], *params])
        else:  # SQLite: one writer at a time, no row locks
            cursor.execute(_CLAIM_SQL, params)
        return bool(cursor.rowcount == 1)


# The conditional PENDING -> RUNNING UPDATE; on PostgreSQL `{lock}` and `{gate}` make it lock the
# job's batch first: the uncorrelated EXISTS is a one-time filter (an InitPlan), evaluated
# before any job row is read or locked. Every writer of a job's status locks its batch first
# (the trigger counting jobs on the batch row updates it), so that a claim never holds the job
# while waiting for the batch a cancel holds. One statement, one round trip, either way.
_CLAIM_TEMPLATE = """{lock}
UPDATE jobs_job SET status = %s, start_timestamp = %s, lease_owner = %s, lease_expires_at = %s,
       attempts = attempts + 1
 WHERE {gate}id = %s AND status = %s
   AND EXISTS (SELECT 1 FROM batches_batch b WHERE b.id = jobs_job.batch_id AND b.status = %s)
   AND NOT EXISTS (
       SELECT 1 FROM jobs_job other
        WHERE other.batch_id = jobs_job.batch_id
          AND (other.status = %s OR (other.status = %s AND other."order" < jobs_job."order")))
"""
_CLAIM_SQL = _CLAIM_TEMPLATE.format(lock="", gate="")
_CLAIM_LOCKING_BATCH_SQL = _CLAIM_TEMPLATE.format(
    lock="WITH locked AS (SELECT 1 FROM batches_batch"
    " WHERE id = (SELECT batch_id FROM jobs_job WHERE id = %s) FOR NO KEY UPDATE)",
    gate="EXISTS (SELECT 1 FROM locked) AND ",
)


def renew_lease(job_id: str, owner: str) -> bool:
    expires = _lease_until(timezone.now())
    return bool(
        Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, lease_owner=owner).update(lease_expires_at=expires)
    )


class Heartbeat:
    """Renews the job's lease every third of its length while the backend runs."""

    def __init__(self, job_id: str, owner: str) -> None:
        self.job_id, self.owner = job_id, owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        interval = max(settings.JOB_LEASE_SECONDS / 3, 0.2)
        try:
            while not self._stop.wait(interval):
                try:
                    if not renew_lease(self.job_id, self.owner):
                        return  # lost: the tick re-queued or ended the job
                except Exception:  # noqa: BLE001 - a blip; the next beat tries again
                    log.warning("heartbeat for job %s failed", self.job_id, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()


def end_job(
    job: Job,
    owner: str,
    status: str,
    *,
    errors: list[str] | None = None,
    refund: bool = False,
    result_path: str | None = None,
) -> bool:
    """RUNNING -> DONE/ERROR if we still hold the lease; refunds platform failures once."""
    now = timezone.now()
    with transaction.atomic():
        # Lock order everywhere: device, batch, job, project. Updating the batch first takes
        # its row lock, which keeps us from deadlocking with a cancel or the lease reaper.
        Batch.objects.filter(pk=job.batch_id).update(last_activity_at=now)
        fields: dict[str, Any] = {"status": status, "end_timestamp": now, "errors": errors, "lease_expires_at": None}
        if result_path is not None:
            fields["result_path"] = result_path
        won = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, lease_owner=owner).update(**fields)
        if won != 1:
            transaction.set_rollback(True)  # not ours any more: leave the batch as it was
            return False
        if refund:
            credits.refund_job(job, by=None, reason=(errors or ["Backend failure."])[0])
        scheduler.finish_if_complete(job.batch_id, now=now)
    return True


def execute(job_id: str) -> None:
    """The body of the `run_job` task.

    After a job ends, the worker claims the next PENDING job of the same batch itself and
    runs it at once (the batch owns its slot, rule 2 keeps the order): no broker round trip
    and no full `advance` between the jobs of a batch. `advance` runs when the batch has no
    job left to chain (it ends the batch and gives the slot on). A message later sent for a
    chained job finds it RUNNING or DONE and does nothing.
    """
    job = claim(job_id, uuid.uuid4().hex)
    device_id = None
    while job is not None:
        device_id = job.batch.device_id
        _run_claimed(job, job.lease_owner)
        job = _claim_next(job)
    if device_id is not None:
        scheduler.advance(device_id)


def _claim_next(previous: Job) -> Job | None:
    """The next job of `previous`'s batch, claimed for this worker, if the batch still runs.

    One SELECT of the whole row, then the same conditional UPDATE as `claim`; the won row
    is patched in memory instead of read back, and shares `previous`'s batch and device
    (their fields that a run reads never change after submission).
    """
    job = Job.objects.filter(batch_id=previous.batch_id, status=JobStatus.PENDING).order_by("order").first()
    if job is None:
        return None
    now, owner = timezone.now(), uuid.uuid4().hex
    if not _claim_update(job.pk, owner, now=now):
        return None
    job.status, job.start_timestamp, job.lease_owner = JobStatus.RUNNING, now, owner
    job.lease_expires_at = _lease_until(now)
    job.attempts += 1
    job.batch = previous.batch
    return job


def _run_claimed(job: Job, owner: str) -> None:
    device = job.batch.device
    try:
        with Heartbeat(str(job.pk), owner):
            result = _run(job)
    except TweezerError as exc:
        # The user's input, caught late (e.g. the device changed since submission): no refund.
        end_job(job, owner, JobStatus.ERROR, errors=[exc.message])
    except BackendUnavailable as exc:
        end_job(job, owner, JobStatus.ERROR, errors=[f"{device.name} failed: {exc}"], refund=True)
    except Exception as exc:  # noqa: BLE001 - anything else is ours to pay for
        log.exception("job %s failed on %s", job.pk, device.name)
        message = f"{device.name} could not run the job ({type(exc).__name__}: {exc}). Credits refunded."
        end_job(job, owner, JobStatus.ERROR, errors=[message[:1000]], refund=True)
    else:
        end_job(job, owner, JobStatus.DONE, result_path=store_result(job, result.as_json()))


def _run(job: Job) -> Any:
    batch = job.batch
    text = job.sequence or batch.sequence_builder or ""
    seq = sequence_cache.get(text)
    where = f"Job {job.order}"
    built = build(seq, check_variables(seq, job.variables, where=where), where=where)
    config = RunConfig(
        configuration=batch.configuration or {},
        backend_configuration=batch.backend_configuration,
        job_id=str(job.pk),
    )
    return get_adapter(batch.device).run(built, job.runs, config)
