"""The per-device queue: which batch owns a slot, which job runs next, when a batch ends.

The database is the only source of truth. `advance(device)` may be called by any
number of processes at once (web, workers, the tick): it locks the device row, so
they take turns, and every state change is a conditional UPDATE whose row count is
checked. Celery messages it sends are hints; a lost one is re-sent by the tick.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from backends.models import Device
from batches.models import Batch, BatchStatus
from jobs.models import Job, JobStatus
from portal import sql
from portal.celery import commit_as_workers

log = logging.getLogger(__name__)


def advance(device_id: UUID | str) -> None:
    """Bring a device's queue up to date: end finished batches, fill idle slots, dispatch jobs.

    The device's running batches are read once, with what the later steps need (any active
    job? one running? ), and carried through: ~4 queries when nothing changes, ~8 when a
    batch starts, instead of re-reading them for every step.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        # Scheduling state only (batch starts and ends, dispatch marks, the cancellations and
        # refunds of a time-out, together): a crash may forget it as a suffix of the log, and the
        # next `advance` derives it again. Charges never commit here. Only for its own
        # transaction: the setting lasts until the outermost commit, never a caller's.
        if outermost:
            commit_as_workers(connection)
        # Lock the device row: two processes finishing jobs together must not both fill a slot.
        device = Device.objects.select_for_update().filter(pk=device_id).first()
        if device is None:
            return
        now = timezone.now()
        running = _end_finished_batches(_running_batches(device), now)
        running += _fill_idle_slots(device, now, len(running))
        job_ids = _jobs_to_dispatch(device, now, running)
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


@dataclass(frozen=True)
class _Running:
    """A RUNNING batch as `advance` needs it."""

    pk: UUID
    open: bool
    last_activity_at: datetime
    active_jobs: bool  # a job pending or running
    running_job: bool  # a job running


# The scheduler's reads, as SQL (portal/sql.py): `advance` runs on every submission, at the end
# of every batch and on every tick, and Django took longer to build these than to run them.
_B, _J = Batch._meta.db_table, Job._meta.db_table
_RUNNING_SQL = (
    f"SELECT {sql.column(Batch, 'id', 'b')}, {sql.column(Batch, 'open', 'b')},"
    f" {sql.column(Batch, 'last_activity_at', 'b')},"
    # EXISTS, not COUNT: it stops at the first active job instead of counting a big batch's
    # jobs on every advance (once per finished job).
    f" EXISTS (SELECT 1 FROM {_J} j WHERE j.batch_id = b.id AND j.status IN (%s, %s)),"
    f" EXISTS (SELECT 1 FROM {_J} j WHERE j.batch_id = b.id AND j.status = %s)"
    f" FROM {_B} b WHERE b.device_id = %s AND b.status = %s"
)
_RUNNING_FIELDS: list[Any] = [Batch._meta.get_field(name) for name in ("id", "open", "last_activity_at")]
_DRAINING_SQL = (
    f"SELECT COUNT(DISTINCT j.batch_id) FROM {_J} j JOIN {_B} b ON b.id = j.batch_id"
    " WHERE b.device_id = %s AND j.status = %s AND b.status <> %s"
)
_NEXT_JOB_SQL = (
    f"SELECT j.id, j.dispatched_at, j.dispatches FROM {_J} j WHERE j.batch_id = %s AND j.status = %s"
    f" ORDER BY {sql.column(Job, 'order', 'j')} LIMIT 1"
)
_NEXT_JOB_FIELDS: list[Any] = [Job._meta.get_field(name) for name in ("id", "dispatched_at", "dispatches")]


def _running_batches(device: Device, ids: list[UUID] | None = None) -> list[_Running]:
    """The device's RUNNING batches (or those of `ids` among them), newest first."""
    query = _RUNNING_SQL
    device_id = sql.param(Batch, "device", device.pk)
    params = [JobStatus.PENDING, JobStatus.RUNNING, JobStatus.RUNNING, device_id, BatchStatus.RUNNING]
    if ids is not None:
        query += f" AND b.id IN ({', '.join(['%s'] * len(ids))})"
        params += [sql.param(Batch, "id", pk) for pk in ids]
    rows = sql.fetch(query + " ORDER BY b.created_at DESC", params, [*_RUNNING_FIELDS, None, None])
    return [_Running(pk, is_open, last, bool(active), bool(busy)) for pk, is_open, last, active, busy in rows]


def _end_finished_batches(running: list[_Running], now: datetime) -> list[_Running]:
    """Rule 3: a closed batch with every job terminal is DONE. Rule 5: an idle open batch times
    out. Returns the batches still running."""
    timeout = now - timedelta(seconds=settings.OPEN_BATCH_TIMEOUT)
    still = []
    for batch in running:
        if batch.active_jobs:
            still.append(batch)
        elif not batch.open:
            finish_batch(batch.pk, BatchStatus.DONE, now=now)
        elif not (batch.last_activity_at < timeout and time_out_batch(batch.pk, now=now, idle_since=timeout)):
            still.append(batch)
    return still


def finish_batch(batch_id: UUID, status: str, *, now: datetime | None = None) -> bool:
    """RUNNING -> a terminal status, if nobody got there first. Sends the webhook on success."""
    now = now or timezone.now()
    won = Batch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING).update(status=status, end_datetime=now)
    if won:
        _notify(batch_id)
    return bool(won)


_FINISH_SQL = (
    f"UPDATE {_B} SET status = %s, end_datetime = %s"
    f" WHERE id = %s AND status = %s AND {sql.column(Batch, 'open', _B)} = %s"
    f" AND NOT EXISTS (SELECT 1 FROM {_J} j WHERE j.batch_id = {_B}.id AND j.status IN (%s, %s))"
)


def finish_if_complete(batch_id: UUID, *, now: datetime) -> bool:
    """Rule 3 at once, from the transaction that ended a batch's last job (it holds the batch's
    lock): a closed RUNNING batch with no job pending or running is DONE. `advance` would
    find it so too, a few queries later; it still runs after, to give the slot on."""
    params = [BatchStatus.DONE, sql.param(Batch, "end_datetime", now), sql.param(Batch, "id", batch_id)]
    params += [BatchStatus.RUNNING, sql.param(Batch, "open", False), JobStatus.PENDING, JobStatus.RUNNING]
    with connection.cursor() as cursor:
        cursor.execute(_FINISH_SQL, params)
        won = cursor.rowcount == 1
    if won:
        _notify(batch_id)
    return won


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


def _draining_slots(device: Device) -> int:
    """Ended batches whose last job is still running: each keeps its slot until that job ends."""
    params = [sql.param(Batch, "device", device.pk), JobStatus.RUNNING, BatchStatus.RUNNING]
    return int(sql.fetch(_DRAINING_SQL, params, [None])[0][0])


def _fill_idle_slots(device: Device, now: datetime, running: int) -> list[_Running]:
    """Rule 1: an idle slot takes the oldest PENDING batch, highest priority first.

    `running`: the device's RUNNING batches; with the draining ones, the busy slots. Returns
    the batches started that still run.
    """
    if device.status != Device.Status.UP:
        return []
    queue = Batch.objects.filter(device=device, status=BatchStatus.PENDING).order_by("-priority", "created_at", "pk")
    busy = running + _draining_slots(device)
    started_running: list[_Running] = []
    while busy < device.slots:
        started = [
            batch_id
            for batch_id in queue.values_list("pk", flat=True)[: device.slots - busy]
            if Batch.objects.filter(pk=batch_id, status=BatchStatus.PENDING).update(
                status=BatchStatus.RUNNING, start_datetime=now, last_activity_at=now
            )
        ]
        if not started:
            break
        # A closed batch with no job left (e.g. all canceled while queued) is DONE at once,
        # and its slot goes to the next batch in this same pass.
        finished = 0
        for batch in _running_batches(device, started):
            if not batch.active_jobs and not batch.open:
                finished += finish_batch(batch.pk, BatchStatus.DONE, now=now)
            else:
                started_running.append(batch)
        busy += len(started) - finished
        if not finished:
            break
    return started_running


def _jobs_to_dispatch(device: Device, now: datetime, running: list[_Running]) -> list[UUID]:
    """Rule 2: each running batch runs one job at a time, in submission order.

    A job already sent is sent again only once `redispatch_delay` has passed (its message
    may be lost); running it twice is harmless because a worker claims it conditionally, and
    so is a batch read as idle just before a worker chained its next job (the claim refuses).
    """
    if device.status != Device.Status.UP:
        return []
    job_ids = []
    for batch in running:
        if batch.running_job:
            continue
        found = sql.fetch(_NEXT_JOB_SQL, [sql.param(Job, "batch", batch.pk), JobStatus.PENDING], _NEXT_JOB_FIELDS)
        if not found:
            continue
        pk, dispatched_at, dispatches = found[0]
        if dispatched_at is None or now - dispatched_at >= redispatch_delay(dispatches):
            job_ids.append(pk)
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
