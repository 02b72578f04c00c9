"""What the periodic tick repairs: expired job leases and batches stuck on a downed device."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backends.models import Device
from batches import scheduler
from batches.models import Batch, BatchStatus
from jobs.models import Job, JobStatus
from portal import credits


def reap_expired_leases() -> int:
    """RUNNING jobs whose worker stopped renewing: back to PENDING, or ERROR + refund.

    A job goes back to PENDING only while it has attempts left AND its batch still runs;
    in a batch that ended meanwhile (canceled, device failed) nobody would run it again,
    so it ends ERROR and is refunded. The fence (owner + still expired) makes a lease
    renewed since our SELECT, or a job the worker ended meanwhile, a no-op.
    """
    now = timezone.now()
    reaped = 0
    expired = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    for job in expired.select_related("batch"):
        fence = {
            "pk": job.pk,
            "status": JobStatus.RUNNING,
            "lease_owner": job.lease_owner,
            "lease_expires_at__lt": now,
        }
        with transaction.atomic():
            # Lock the batch: a cancel_batch racing us must not leave a PENDING job in a CANCELED batch.
            job.batch = Batch.objects.select_for_update().get(pk=job.batch_id)
            if job.attempts < settings.JOB_MAX_ATTEMPTS and job.batch.status == BatchStatus.RUNNING:
                won = Job.objects.filter(**fence).update(
                    status=JobStatus.PENDING, lease_owner="", lease_expires_at=None, dispatched_at=None, dispatches=0
                )
            else:
                if job.batch.status == BatchStatus.RUNNING:
                    message = (
                        f"The worker running this job stopped responding {job.attempts} times; "
                        "the job was given up and its credits refunded."
                    )
                else:
                    message = (
                        f"The worker running this job stopped responding after its batch ended "
                        f"{job.batch.status}; the job was given up and its credits refunded."
                    )
                won = Job.objects.filter(**fence).update(
                    status=JobStatus.ERROR, end_timestamp=now, errors=[message], lease_expires_at=None
                )
                if won:
                    credits.refund_job(job, by=None, reason=message)
            if won:
                Batch.objects.filter(pk=job.batch_id).update(last_activity_at=now)
                reaped += 1
    return reaped


def fail_batches_on_down_devices() -> int:
    """A device DOWN for longer than DEVICE_DOWN_FAIL_AFTER ends its batches ERROR (jobs refunded)."""
    cutoff = timezone.now() - timedelta(seconds=settings.DEVICE_DOWN_FAIL_AFTER)
    failed = 0
    for device in Device.objects.filter(status=Device.Status.DOWN, status_changed_at__lt=cutoff):
        message = f"Device {device.name} has been down since {device.status_changed_at:%Y-%m-%d %H:%M} UTC."
        for batch in Batch.objects.filter(device=device, status__in=[BatchStatus.PENDING, BatchStatus.RUNNING]):
            with transaction.atomic():
                won = Batch.objects.filter(pk=batch.pk, status=batch.status).update(
                    status=BatchStatus.ERROR, end_datetime=timezone.now(), open=False
                )
                if not won:
                    continue
                _error_pending_jobs(batch, message)
                scheduler._notify(batch.pk)
                failed += 1
    return failed


def _error_pending_jobs(batch: Batch, message: str) -> None:
    jobs = list(batch.jobs.select_for_update().filter(status=JobStatus.PENDING))
    Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.PENDING).update(
        status=JobStatus.ERROR, end_timestamp=timezone.now(), errors=[message]
    )
    credits.refund_jobs(jobs, by=None, reason=message)
