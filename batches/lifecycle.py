"""Every conditional state change of jobs and batches (DESIGN.md §2), with what goes with it.

Each function here is one transition: a conditional UPDATE whose row count says whether this
actor won, so two racing actors (a worker and a cancel, two workers, the tick and a worker)
cannot both win (rule 11). The winner alone refunds (`portal.credits`) and queues the batch's
webhook on commit. Nothing here decides *when* to act: the scheduler, the runner and the
services do, and call these.

Lock order everywhere: device → batch → job → project. Every writer of a job's status takes its
batch's row lock first, because the database triggers that keep the batch's counters
(`batches.models.STATUS_COUNTERS`) update that row after the job's: a writer holding a job and
waiting for the batch would deadlock with a cancel holding the batch and waiting for its jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from batches.models import Batch, BatchStatus
from jobs.models import Job, JobStatus
from portal import credits, events
from portal.celery import SEND_WEBHOOK, send_task

ACTIVE_BATCH_STATUSES = (BatchStatus.PENDING, BatchStatus.RUNNING)


@dataclass
class CancelReport:
    """Jobs a cancel stopped (in order) and the credits it gave back."""

    canceled: list[Job]
    refunded: int


def lock_batch(batch_id: UUID | str, **conditions: Any) -> Batch | None:
    """The batch's row, locked for this transaction, if it meets `conditions` (else None).

    `of=self`: the device joined by `select_related` elsewhere is not locked with it (only
    `scheduler.advance` locks devices, and it does so first). The lock is about the batch's
    state: its sequence, which never changes and can be large, is not read with it."""
    return (
        Batch.objects.select_for_update(of=("self",))
        .defer("sequence_builder")
        .filter(pk=batch_id, **conditions)
        .first()
    )


def notify(batch_id: UUID) -> None:
    """Queue the batch's webhook once the transaction that ended the batch commits."""
    transaction.on_commit(lambda: send_task(SEND_WEBHOOK, str(batch_id)), robust=True)
    events.batch_changed(batch_id)


# --- Batches -------------------------------------------------------------------------------


def start_batch(batch_id: UUID, *, now: datetime) -> bool:
    """Rule 1's transition: a PENDING batch takes a slot (the scheduler chose it)."""
    won = Batch.objects.filter(pk=batch_id, status=BatchStatus.PENDING).update(
        status=BatchStatus.RUNNING, start_datetime=now, last_activity_at=now
    )
    if won:
        events.batch_changed(batch_id)
    return bool(won)


def finish_batch(batch_id: UUID, *, now: datetime | None = None) -> bool:
    """Rule 3: a closed RUNNING batch whose every job is terminal is DONE, and its slot moves on.

    Called from the transaction that ended its last job (which holds the batch's lock, and whose
    triggers have already counted that job), and by `advance` for the batches it finds so."""
    won = Batch.objects.filter(
        pk=batch_id, status=BatchStatus.RUNNING, open=False, pending_jobs=0, running_jobs=0
    ).update(status=BatchStatus.DONE, end_datetime=now or timezone.now())
    if won:
        notify(batch_id)
    return bool(won)


def close_batch(batch_id: UUID) -> bool:
    """Rule 6: an open batch stops taking jobs; closing a closed one changes nothing."""
    won = Batch.objects.filter(pk=batch_id, open=True).update(open=False, last_activity_at=timezone.now())
    if won:
        events.batch_changed(batch_id)
    return bool(won)


def time_out_batch(batch_id: UUID, *, now: datetime | None = None, idle_since: datetime | None = None) -> bool:
    """Rule 5: an open RUNNING batch (idle since before `idle_since`, if given) ends TIMED_OUT.

    The idle condition is part of the UPDATE: an `add_jobs` committing meanwhile bumps
    `last_activity_at`, so the batch no longer matches and its new job is not canceled.
    Any job still pending is canceled and refunded. Must run inside a transaction."""
    now = now or timezone.now()
    idle = Batch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING, open=True)
    if idle_since is not None:
        idle = idle.filter(last_activity_at__lt=idle_since)
    won = idle.update(status=BatchStatus.TIMED_OUT, end_datetime=now, open=False)
    if won:
        stop_pending_jobs(batch_id, JobStatus.CANCELED, by=None, reason="The open batch timed out.", now=now)
        notify(batch_id)
    return bool(won)


def cancel_batch(batch: Batch, *, by: User | None) -> CancelReport | None:
    """Rule 8: a PENDING or RUNNING batch ends CANCELED; its pending jobs are canceled and
    refunded, a running job finishes. None if the batch had already ended."""
    with transaction.atomic():
        # The lock before the clock: jobs added by a transaction we waited for are older than
        # the batch's end.
        if lock_batch(batch.pk, status__in=ACTIVE_BATCH_STATUSES) is None:
            return None
        now = timezone.now()
        won = Batch.objects.filter(pk=batch.pk, status__in=ACTIVE_BATCH_STATUSES).update(
            status=BatchStatus.CANCELED, end_datetime=now, open=False
        )
        if not won:
            return None
        report = stop_pending_jobs(batch.pk, JobStatus.CANCELED, by=by, reason="Batch canceled.", now=now)
        notify(batch.pk)
    return report


def fail_batch(batch_id: UUID, message: str) -> bool:
    """The batch itself cannot run (its device is gone): PENDING or RUNNING ends ERROR, and its
    pending jobs end ERROR, refunded (not the user's fault)."""
    with transaction.atomic():
        if lock_batch(batch_id, status__in=ACTIVE_BATCH_STATUSES) is None:
            return False
        now = timezone.now()
        won = Batch.objects.filter(pk=batch_id, status__in=ACTIVE_BATCH_STATUSES).update(
            status=BatchStatus.ERROR, end_datetime=now, open=False
        )
        if not won:
            return False
        stop_pending_jobs(batch_id, JobStatus.ERROR, by=None, reason=message, now=now)
        notify(batch_id)
    return True


# --- Jobs ----------------------------------------------------------------------------------


def _may_start() -> Exists:
    """Rule 2, as a condition on a job row: no job of its batch runs, and no earlier job of it
    is still pending. Part of the claim's UPDATE, so a stale or duplicated message cannot start
    a job out of turn."""
    ahead = Job.objects.filter(batch_id=OuterRef("batch_id")).filter(
        Q(status=JobStatus.RUNNING) | Q(status=JobStatus.PENDING, order__lt=OuterRef("order"))
    )
    return ~Exists(ahead)  # type: ignore[return-value]  # ~Exists is an Exists (negated)


def next_job(batch_id: UUID) -> Job | None:
    """Rule 2: the job the batch runs next (its first pending one), if none of its jobs runs."""
    return (
        Job.objects.filter(batch_id=batch_id, status=JobStatus.PENDING).filter(_may_start()).order_by("order").first()
    )


def lease_until(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.JOB_LEASE_SECONDS)


def claim_job(job_id: UUID | str, owner: str, *, now: datetime | None = None) -> Job | None:
    """PENDING → RUNNING for `owner`, with a fresh lease, in a RUNNING batch and in its turn
    (rule 2): the job, with its batch and device, or None if it is not ours to run (gone,
    canceled, running elsewhere, not its turn). Needs nothing but the job's id: one statement
    reads the job and locks its batch (only the batch row, the lock every transition takes first)."""
    now = now or timezone.now()
    with transaction.atomic():
        job = (
            Job.objects.select_related("batch", "batch__device")
            .select_for_update(of=("batch",))
            .filter(pk=job_id, batch__status=BatchStatus.RUNNING)
            .first()
        )
        if job is None or not _start(job.pk, owner, now):
            return None
    events.batch_changed(job.batch_id)
    return _started(job, owner, now)


def _start(job_id: UUID | str, owner: str, now: datetime) -> bool:
    """The claim's conditional UPDATE; the caller holds the lock of the job's RUNNING batch."""
    return bool(
        Job.objects.filter(pk=job_id, status=JobStatus.PENDING)
        .filter(_may_start())
        .update(
            status=JobStatus.RUNNING,
            start_timestamp=now,
            lease_owner=owner,
            lease_expires_at=lease_until(now),
            attempts=F("attempts") + 1,
        )
    )


def _started(job: Job, owner: str, now: datetime) -> Job:
    """`job` in memory as `_start` left its row (its `attempts` as read before)."""
    job.status, job.lease_owner, job.start_timestamp, job.lease_expires_at = (
        JobStatus.RUNNING,
        owner,
        now,
        lease_until(now),
    )
    return job


def renew_lease(job_id: UUID | str, owner: str) -> bool:
    """The running job's lease, extended while its worker still owns it."""
    return bool(
        Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, lease_owner=owner).update(
            lease_expires_at=lease_until(timezone.now())
        )
    )


@dataclass
class Ending:
    """What `end_job` did: whether this actor ended the job (its truth value), the batch's
    next job, claimed in the same transaction when the caller asked for it, and whether the
    batch is left open, RUNNING and idle: it keeps its slot (rule 4), so the queue has nothing
    new to decide."""

    won: bool
    next_job: Job | None = None
    idle_open: bool = False

    def __bool__(self) -> bool:
        return self.won


def end_job(
    job: Job,
    owner: str,
    status: str,
    *,
    errors: list[str] | None = None,
    refund: bool = False,
    result_path: str | None = None,
    claim_next_for: str | None = None,
) -> Ending:
    """RUNNING → DONE or ERROR while `owner` still holds the lease; an ERROR that is the
    platform's fault (`refund`) gives the credits back, once. Ends a closed batch whose last
    job this was (rule 3) in the same transaction. Not won if the job is no longer ours.

    With `claim_next_for`, the batch's next job (rule 2) is claimed for that owner in the same
    transaction, under the batch lock it already holds: a worker goes on with the batch's jobs
    without a message, a lock or a commit between them. The next job shares `job.batch`."""
    now = timezone.now()
    following = None
    with transaction.atomic():
        Batch.objects.filter(pk=job.batch_id).update(last_activity_at=now)  # takes the batch's lock first
        fields: dict[str, Any] = {"status": status, "end_timestamp": now, "errors": errors, "lease_expires_at": None}
        if result_path is not None:
            fields["result_path"] = result_path
        won = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, lease_owner=owner).update(**fields)
        if not won:
            transaction.set_rollback(True)  # not ours any more: leave the batch as it was
            return Ending(won=False)
        if refund:
            credits.refund_job(job, by=None, reason=(errors or ["Backend failure."])[0])
        events.batch_changed(job.batch_id)  # wakes the held status requests (issue 19)
        if claim_next_for is not None:
            following = _claim_following(job, claim_next_for, now)
        idle_open = following is None and not finish_batch(job.batch_id, now=now) and _open_and_running(job.batch_id)
    return Ending(won=True, next_job=following, idle_open=idle_open)


def _open_and_running(batch_id: UUID) -> bool:
    return Batch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING, open=True).exists()


def _claim_following(job: Job, owner: str, now: datetime) -> Job | None:
    """The next job of `job`'s batch, claimed for `owner` (the caller holds the batch's lock and
    has just ended `job`). A batch that no longer runs has no pending job left to claim: every
    way out of RUNNING stops its pending jobs in the same transaction."""
    # Its first pending job: with the batch locked and its one running job just ended, that is
    # the job rule 2 lets start, which `_start`'s condition checks all the same.
    following = Job.objects.filter(batch_id=job.batch_id, status=JobStatus.PENDING).order_by("order").first()
    if following is None or not _start(following.pk, owner, now):
        return None
    following.batch = job.batch  # its fields that a run reads never change after submission
    return _started(following, owner, now)


def hand_back_job(job: Job, owner: str) -> bool:
    """RUNNING → PENDING at once, from a worker being stopped mid-run (not the job's fault):
    the attempt does not count, and the scheduler sends the job again without waiting for
    its lease to expire."""
    with transaction.atomic():
        if lock_batch(job.batch_id) is None:
            return False
        won = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, lease_owner=owner).update(
            status=JobStatus.PENDING,
            lease_owner="",
            lease_expires_at=None,
            start_timestamp=None,
            dispatched_at=None,
            dispatches=0,
            attempts=F("attempts") - 1,
        )
        if won:
            events.batch_changed(job.batch_id)
    return bool(won)


def release_expired_lease(job: Job, *, now: datetime) -> bool:
    """A RUNNING job whose worker stopped renewing its lease: back to PENDING while it has
    attempts left and its batch still runs; otherwise ERROR, refunded. The fence (same owner,
    still expired) makes a lease renewed since the caller's read, or a job ended meanwhile, a
    no-op."""
    with transaction.atomic():
        batch = lock_batch(job.batch_id)
        if batch is None:
            return False
        fenced = Job.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, lease_owner=job.lease_owner, lease_expires_at__lt=now
        )
        if job.attempts < settings.JOB_MAX_ATTEMPTS and batch.status == BatchStatus.RUNNING:
            won = fenced.update(
                status=JobStatus.PENDING, lease_owner="", lease_expires_at=None, dispatched_at=None, dispatches=0
            )
        else:
            if batch.status == BatchStatus.RUNNING:
                message = (
                    f"The worker running this job stopped responding {job.attempts} times; "
                    "the job was given up and its credits refunded."
                )
            else:
                message = (
                    f"The worker running this job stopped responding after its batch ended "
                    f"{batch.status}; the job was given up and its credits refunded."
                )
            won = fenced.update(status=JobStatus.ERROR, end_timestamp=now, errors=[message], lease_expires_at=None)
            if won:
                credits.refund_job(job, by=None, reason=message)
        if won:
            Batch.objects.filter(pk=job.batch_id).update(last_activity_at=now)
            events.batch_changed(job.batch_id)
            finish_batch(job.batch_id, now=now)
    return bool(won)


def stop_pending_jobs(
    batch_id: UUID,
    status: str,
    *,
    by: User | None,
    reason: str,
    only: QuerySet[Job] | None = None,
    now: datetime | None = None,
) -> CancelReport:
    """Rules 7 and 8: the batch's PENDING jobs (all, or those of `only`) end `status`
    (CANCELED, or ERROR when the platform gave up on them) and are refunded once.

    The caller holds the batch's lock in its transaction. The jobs' rows are locked too, so a
    worker's claim waits, then finds them ended."""
    now = now or timezone.now()
    pending = Job.objects.filter(batch_id=batch_id, status=JobStatus.PENDING)
    if only is not None:
        pending = pending.filter(pk__in=only.values("pk"))
    jobs = list(pending.select_for_update().order_by("order"))
    if not jobs:
        return CancelReport(canceled=[], refunded=0)
    errors = [reason] if status == JobStatus.ERROR else None
    Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.PENDING).update(
        status=status, end_timestamp=now, dispatched_at=None, errors=errors
    )
    refunded = credits.refund_jobs(jobs, by=by, reason=reason)
    Batch.objects.filter(pk=batch_id).update(last_activity_at=now)
    events.batch_changed(batch_id)
    for job in jobs:
        job.status, job.end_timestamp, job.errors = status, now, errors
    return CancelReport(canceled=jobs, refunded=refunded)
