"""The per-device queue: which batch owns a slot, which job runs next, when a batch ends.

The database is the only source of truth. `advance(device)` may be called by any
number of processes at once (web, workers, the tick): it locks the device row, so
they take turns, and every state change is a conditional UPDATE whose row count is
checked. Celery messages it sends are hints; a lost one is re-sent by the tick.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from backends.models import Device
from batches.models import Batch, BatchStatus
from jobs.models import Job, JobStatus

log = logging.getLogger(__name__)


def advance(device_id: UUID | str) -> None:
    """Bring a device's queue up to date: end finished batches, fill idle slots, dispatch jobs."""
    with transaction.atomic():
        # Lock the device row: two processes finishing jobs together must not both fill a slot.
        device = Device.objects.select_for_update().filter(pk=device_id).first()
        if device is None:
            return
        now = timezone.now()
        _end_finished_batches(device, now)
        _fill_idle_slots(device, now)
        job_ids = _jobs_to_dispatch(device, now)
        if job_ids:
            Job.objects.filter(pk__in=job_ids).update(dispatched_at=now, dispatches=F("dispatches") + 1)
            queue = device.queue
            transaction.on_commit(lambda: send_jobs(job_ids, queue))


def send_jobs(job_ids: list[UUID], queue: str) -> None:
    """Hint the device's workers (after commit). A lost message is re-sent by the tick."""
    from backends.tasks import run_job

    for job_id in job_ids:
        try:
            run_job.apply_async(args=[str(job_id)], queue=queue)
        except Exception:  # noqa: BLE001 - the broker is down: the tick re-sends it later
            log.warning("could not send job %s to %s; the tick will retry", job_id, queue, exc_info=True)


def _running_batches(device: Device) -> list[Batch]:
    # EXISTS, not COUNT: it stops at the first active job instead of counting a big batch's
    # jobs on every advance (once per finished job).
    active = Job.objects.filter(batch_id=OuterRef("pk"), status__in=[JobStatus.PENDING, JobStatus.RUNNING])
    return list(
        Batch.objects.filter(device=device, status=BatchStatus.RUNNING)
        .only("pk", "open", "last_activity_at")
        .annotate(active_jobs=Exists(active))
    )


def _end_finished_batches(device: Device, now: datetime) -> None:
    """Rule 3: a closed batch with every job terminal is DONE. Rule 5: an idle open batch times out."""
    timeout = now - timedelta(seconds=settings.OPEN_BATCH_TIMEOUT)
    for batch in _running_batches(device):
        if batch.active_jobs:  # type: ignore[attr-defined]  # annotated by _running_batches()
            continue
        if not batch.open:
            finish_batch(batch.pk, BatchStatus.DONE, now=now)
        elif batch.last_activity_at < timeout:
            time_out_batch(batch.pk, now=now, idle_since=timeout)


def finish_batch(batch_id: UUID, status: str, *, now: datetime | None = None) -> bool:
    """RUNNING -> a terminal status, if nobody got there first. Sends the webhook on success."""
    now = now or timezone.now()
    won = Batch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING).update(status=status, end_datetime=now)
    if won:
        _notify(batch_id)
    return bool(won)


def time_out_batch(batch_id: UUID, *, now: datetime | None = None, idle_since: datetime | None = None) -> bool:
    """Rule 5: an open batch left idle ends TIMED_OUT; any job still pending is canceled and refunded.

    Must run inside a transaction. With `idle_since`, the batch times out only if nothing
    happened to it since then: an `add_jobs` that commits between advance's count of active
    jobs and this UPDATE bumps `last_activity_at`, so the UPDATE (re-checked on the locked
    row by PostgreSQL) no longer matches and the new job is not canceled.
    """
    from batches.services import cancel_pending_jobs

    now = now or timezone.now()
    idle = Batch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING, open=True)
    if idle_since is not None:
        idle = idle.filter(last_activity_at__lt=idle_since)
    won = idle.update(status=BatchStatus.TIMED_OUT, end_datetime=now, open=False)
    if won:
        cancel_pending_jobs(Batch.objects.get(pk=batch_id), by=None, reason="The open batch timed out.")
        _notify(batch_id)
    return bool(won)


def _notify(batch_id: UUID) -> None:
    from batches.webhooks import send_webhook

    # robust: a broker that is down must not turn a committed transition into an error.
    transaction.on_commit(lambda: send_webhook.delay(str(batch_id)), robust=True)


def _busy_slots(device: Device) -> int:
    """RUNNING batches, plus ended batches whose last job is still running (it keeps the slot)."""
    running = Batch.objects.filter(device=device, status=BatchStatus.RUNNING).count()
    draining = (
        Job.objects.filter(batch__device=device, status=JobStatus.RUNNING)
        .exclude(batch__status=BatchStatus.RUNNING)
        .values("batch_id")
        .distinct()
        .count()
    )
    return running + draining


def _fill_idle_slots(device: Device, now: datetime) -> None:
    """Rule 1: an idle slot takes the oldest PENDING batch, highest priority first."""
    if device.status != Device.Status.UP:
        return
    queue = Batch.objects.filter(device=device, status=BatchStatus.PENDING).order_by("-priority", "created_at", "pk")
    while True:
        free = device.slots - _busy_slots(device)
        if free <= 0:
            return
        started = 0
        for batch_id in queue.values_list("pk", flat=True)[:free]:
            started += Batch.objects.filter(pk=batch_id, status=BatchStatus.PENDING).update(
                status=BatchStatus.RUNNING, start_datetime=now, last_activity_at=now
            )
        # A closed batch with no job left (e.g. all canceled while queued) is DONE at once,
        # and its slot goes to the next batch in this same pass.
        finished = 0
        for batch in _running_batches(device):
            if not batch.active_jobs and not batch.open:  # type: ignore[attr-defined]  # annotated by _running_batches()
                finished += finish_batch(batch.pk, BatchStatus.DONE, now=now)
        if not started or not finished:
            return


def _jobs_to_dispatch(device: Device, now: datetime) -> list[UUID]:
    """Rule 2: each running batch runs one job at a time, in submission order.

    A job already sent is sent again only once `redispatch_delay` has passed (its message
    may be lost); running it twice is harmless because a worker claims it conditionally.
    """
    if device.status != Device.Status.UP:
        return []
    batches = Batch.objects.filter(device=device, status=BatchStatus.RUNNING)
    busy = set(Job.objects.filter(batch__in=batches, status=JobStatus.RUNNING).values_list("batch_id", flat=True))
    job_ids = []
    for batch_id in batches.values_list("pk", flat=True):
        if batch_id in busy:
            continue
        job = (
            Job.objects.filter(batch_id=batch_id, status=JobStatus.PENDING)
            .order_by("order")
            .values("pk", "dispatched_at", "dispatches")
            .first()
        )
        if job and (job["dispatched_at"] is None or now - job["dispatched_at"] >= redispatch_delay(job["dispatches"])):
            job_ids.append(job["pk"])
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
