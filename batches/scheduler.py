"""The per-device queue: decides which batch takes a slot, which job runs next, what the tick repairs.

The database is the only source of truth. `advance(device)` may be called by any number of
processes at once (web, workers, the tick): it locks the device row, so they take turns. The
transitions themselves are `batches.lifecycle`'s conditional updates. Celery messages sent here
are hints; a lost one is re-sent by the tick.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from backends.models import Device
from batches import lifecycle
from batches.models import Batch, BatchStatus
from jobs.models import Job, JobStatus
from portal.celery import RUN_JOB, commit_as_workers, send_task

log = logging.getLogger(__name__)

# What `advance` reads of a running batch: its counters say whether a job is pending or running.
_RUNNING_FIELDS = ("pk", "project_id", "open", "start_datetime", "last_activity_at", "pending_jobs", "running_jobs")


def advance(device_id: UUID | str) -> None:
    """Bring a device's queue up to date: end finished batches, fill idle slots, dispatch jobs."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        # Scheduling state only (batch starts and ends, dispatch marks, the cancellations and
        # refunds of a time-out): a crash may forget it, and the next `advance` derives it
        # again. Only for its own transaction: never a caller's, which may hold a charge.
        if outermost:
            commit_as_workers(connection)
        # Lock the device row: two processes finishing jobs together must not both fill a slot.
        device = Device.objects.select_for_update().filter(pk=device_id).first()
        if device is None:
            return
        now = timezone.now()
        running = _end_finished_batches(_running_batches(device), now)
        running += _fill_idle_slots(device, now, running)
        job_ids = _jobs_to_dispatch(device, now, running)
        if job_ids:
            Job.objects.filter(pk__in=job_ids).update(dispatched_at=now, dispatches=F("dispatches") + 1)
            queue = device.queue
            transaction.on_commit(lambda: send_jobs(job_ids, queue))


def send_jobs(job_ids: list[UUID], queue: str) -> None:
    """Hint the device's workers (after commit). A lost message is re-sent by the tick."""
    for job_id in job_ids:
        try:
            send_task(RUN_JOB, str(job_id), queue=queue)
        except Exception:  # noqa: BLE001 - the broker is down: the tick re-sends it later
            log.warning("could not send job %s to %s; the tick will retry", job_id, queue, exc_info=True)


def _running_batches(device: Device, ids: list[UUID] | None = None) -> list[Batch]:
    """The device's RUNNING batches (or those of `ids` among them), newest first."""
    running = Batch.objects.filter(device=device, status=BatchStatus.RUNNING)
    if ids is not None:
        running = running.filter(pk__in=ids)
    return list(running.only(*_RUNNING_FIELDS).order_by("-created_at"))


def _has_active_job(batch: Batch) -> bool:
    return bool(batch.pending_jobs or batch.running_jobs)


def _end_finished_batches(running: list[Batch], now: datetime) -> list[Batch]:
    """Rule 3: a closed batch with every job terminal is DONE. Rule 5: an idle open batch times
    out. An open batch older than OPEN_BATCH_MAX_SECONDS is closed: its jobs still run, then
    it ends and its slot moves on. Returns the batches still running."""
    idle_since = now - timedelta(seconds=settings.OPEN_BATCH_TIMEOUT)
    born_before = now - timedelta(seconds=settings.OPEN_BATCH_MAX_SECONDS)
    still = []
    for batch in running:
        if batch.open and batch.start_datetime and batch.start_datetime < born_before:
            batch.open = not lifecycle.close_batch(batch.pk)
        if _has_active_job(batch):
            still.append(batch)
        elif not batch.open:
            lifecycle.finish_batch(batch.pk, now=now)
        elif batch.last_activity_at >= idle_since or not lifecycle.time_out_batch(
            batch.pk, now=now, idle_since=idle_since
        ):
            still.append(batch)
    return still


def _draining_slots(device: Device) -> int:
    """Ended batches whose last job is still running: each keeps its slot until that job ends."""
    return Batch.objects.filter(device=device, running_jobs__gt=0).exclude(status=BatchStatus.RUNNING).count()


def _fill_idle_slots(device: Device, now: datetime, running: list[Batch]) -> list[Batch]:
    """Rule 1: an idle slot takes the oldest PENDING batch, highest priority first.

    An open batch can hold its slot while idle (rule 4): one project's open batches hold at most
    OPEN_BATCH_SLOTS_PER_PROJECT slots of a device, so that its idle ones cannot starve the
    others; its further open batches wait while other batches go ahead. `running`: the device's
    RUNNING batches. Returns the batches started that still run.
    """
    if device.status != Device.Status.UP:
        return []
    queue = Batch.objects.filter(device=device, status=BatchStatus.PENDING).order_by("-priority", "created_at", "pk")
    busy = len(running) + _draining_slots(device)
    held = Counter(batch.project_id for batch in running if batch.open)
    started: list[Batch] = []
    while busy < device.slots:
        full = [project for project, slots in held.items() if slots >= settings.OPEN_BATCH_SLOTS_PER_PROJECT]
        batch = queue.exclude(open=True, project_id__in=full).only(*_RUNNING_FIELDS).first()
        if batch is None:
            break
        if not lifecycle.start_batch(batch.pk, now=now):
            continue  # canceled meanwhile: no longer in the queue
        # A closed batch with no job left (e.g. all canceled while queued) is DONE at once,
        # and its slot goes to the next batch.
        if not _has_active_job(batch) and not batch.open and lifecycle.finish_batch(batch.pk, now=now):
            continue
        batch.start_datetime = batch.last_activity_at = now
        started.append(batch)
        busy += 1
        held[batch.project_id] += batch.open
    return started


def _jobs_to_dispatch(device: Device, now: datetime, running: list[Batch]) -> list[UUID]:
    """Each running batch's next job (rule 2: `lifecycle.next_job`), unless already sent.

    A job already sent is sent again only once `redispatch_delay` has passed (its message
    may be lost); running it twice is harmless because a worker claims it conditionally.
    """
    if device.status != Device.Status.UP:
        return []
    job_ids = []
    for batch in running:
        if batch.running_jobs or not batch.pending_jobs:
            continue
        job = lifecycle.next_job(batch.pk)
        if job is None:
            continue
        if job.dispatched_at is None or now - job.dispatched_at >= redispatch_delay(job.dispatches):
            job_ids.append(job.pk)
    return job_ids


def redispatch_delay(dispatches: int) -> timedelta:
    """How long a job sent `dispatches` times waits, unclaimed, before it is sent again.

    JOB_REDISPATCH_SECONDS after the first message, then twice as long after each re-send, up
    to JOB_REDISPATCH_MAX_SECONDS. A message is usually only queued behind busy workers, not
    lost: re-sending it at a fixed pace would fill the queue with duplicates under load.
    """
    doublings = min(max(dispatches - 1, 0), 30)
    seconds = min(settings.JOB_REDISPATCH_SECONDS * 2**doublings, settings.JOB_REDISPATCH_MAX_SECONDS)
    return timedelta(seconds=max(seconds, settings.JOB_REDISPATCH_SECONDS))


# --- The tick's repairs ---------------------------------------------------------------------


def reap_expired_leases() -> int:
    """RUNNING jobs whose worker stopped renewing their lease: each back to PENDING, or ended
    ERROR and refunded (`lifecycle.release_expired_lease`). Returns how many were released."""
    now = timezone.now()
    expired = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    return sum(lifecycle.release_expired_lease(job, now=now) for job in expired)


def fail_batches_on_down_devices() -> int:
    """A device DOWN for longer than DEVICE_DOWN_FAIL_AFTER ends its batches ERROR (jobs refunded)."""
    cutoff = timezone.now() - timedelta(seconds=settings.DEVICE_DOWN_FAIL_AFTER)
    failed = 0
    for device in Device.objects.filter(status=Device.Status.DOWN, status_changed_at__lt=cutoff):
        message = f"Device {device.name} has been down since {device.status_changed_at:%Y-%m-%d %H:%M} UTC."
        active = Batch.objects.filter(device=device, status__in=lifecycle.ACTIVE_BATCH_STATUSES)
        failed += sum(lifecycle.fail_batch(batch_id, message) for batch_id in active.values_list("pk", flat=True))
    return failed


def tick() -> None:
    """The periodic repair: expired leases, downed devices, then every device's queue."""
    reap_expired_leases()
    fail_batches_on_down_devices()
    for device_id in Device.objects.values_list("pk", flat=True):
        advance(device_id)
