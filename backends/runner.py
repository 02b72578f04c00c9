"""Running one job: claim it, run the adapter under a renewed lease, store the result, end it.

Every step is a conditional UPDATE fenced by the lease owner, so a redelivered message,
a second worker or a worker that lost its lease can never end a job twice.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Exists, F, OuterRef
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
    now = timezone.now()
    # Rule 2 holds even for a stale or duplicated message: a job starts only in a RUNNING
    # batch, when no job of that batch runs and no earlier job of it is still pending.
    same_batch = Job.objects.filter(batch_id=OuterRef("batch_id"))
    won = (
        # Exists, not a join: a join would make Django UPDATE … WHERE id IN (subquery) and
        # drop `status = PENDING` from the row PostgreSQL re-checks after a concurrent claim.
        Job.objects.filter(pk=job_id, status=JobStatus.PENDING)
        .filter(Exists(Batch.objects.filter(pk=OuterRef("batch_id"), status=BatchStatus.RUNNING)))
        .exclude(Exists(same_batch.filter(status=JobStatus.RUNNING)))
        .exclude(Exists(same_batch.filter(status=JobStatus.PENDING, order__lt=OuterRef("order"))))
        .update(
            status=JobStatus.RUNNING,
            start_timestamp=now,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS),
            attempts=F("attempts") + 1,
        )
    )
    if won != 1:
        return None  # canceled, already running elsewhere, or gone
    return Job.objects.select_related("batch", "batch__device").get(pk=job_id)


def renew_lease(job_id: str, owner: str) -> bool:
    expires = timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS)
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


def end_job(job: Job, owner: str, status: str, *, errors: list[str] | None = None, refund: bool = False) -> bool:
    """RUNNING -> DONE/ERROR if we still hold the lease; refunds platform failures once."""
    now = timezone.now()
    with transaction.atomic():
        # Lock order everywhere: device, batch, job, project. Taking the batch first keeps
        # us from deadlocking with a cancel or the lease reaper that hold it.
        Batch.objects.select_for_update().filter(pk=job.batch_id).values_list("pk", flat=True).first()
        won = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, lease_owner=owner).update(
            status=status, end_timestamp=now, errors=errors, lease_expires_at=None
        )
        if won != 1:
            return False
        if refund:
            credits.refund_job(job, by=None, reason=(errors or ["Backend failure."])[0])
        Batch.objects.filter(pk=job.batch_id).update(last_activity_at=now)
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
    """The next job of `previous`'s batch, claimed for this worker, if the batch still runs."""
    next_id = (
        Job.objects.filter(batch_id=previous.batch_id, status=JobStatus.PENDING)
        .order_by("order")
        .values_list("pk", flat=True)
        .first()
    )
    return claim(str(next_id), uuid.uuid4().hex) if next_id else None


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
        path = store_result(job, result.as_json())
        Job.objects.filter(pk=job.pk, lease_owner=owner).update(result_path=path)
        end_job(job, owner, JobStatus.DONE)


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
