"""When a queued batch will start, from the work actually ahead of it, and what holds the queue.

The estimate replays the scheduler's rules (DESIGN §2 rule 1, rules 4-5 for open batches,
OPEN_BATCH_SLOTS_PER_PROJECT, OPEN_BATCH_MAX_SECONDS) on the device's slots: each running
batch keeps its slot for the runs its jobs have left (an open one also for its idle timeout),
then each waiting batch, in queue order, takes the first slot to come free. A job's time is
its runs × the device's recent seconds per run; the band is that replay with the 10th (p10)
and the 90th percentile (p90) of those seconds per run: a batch starts inside it 8 times in 10
when the device runs as it did. (A median as the lower end was measured too high about half the
time: the test of the real start below it failed.)

`estimate_queue` and `seconds_per_run` are pure functions of rows; `read_queue` reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone

from backends.models import Device
from batches.models import Batch, BatchStatus
from jobs.models import Job, JobStatus

#: Recent finished jobs of a device read for its seconds per run, from its latest batches.
HISTORY = 200
RECENT = 20
FINISHED = (JobStatus.DONE, JobStatus.ERROR)


@dataclass(frozen=True)
class QueuedBatch:
    """A RUNNING or PENDING batch as the estimate sees it."""

    id: UUID
    project_id: Any
    status: str
    open: bool
    created_at: datetime
    start_datetime: datetime | None
    last_activity_at: datetime
    jobs_left: int  # pending + running
    runs_left: int  # the runs of those jobs


@dataclass(frozen=True)
class FinishedJob:
    """A finished job of the device: how long it held its slot, per run."""

    batch_id: UUID
    order: int
    runs: int
    created_at: datetime
    end: datetime
    batch_start: datetime | None


@dataclass
class Estimate:
    """One batch of the queue: where it stands, the work ahead, and its start and end bands."""

    batch: QueuedBatch
    position: int | None  # 1 = next to start; None while running
    jobs_ahead: int = 0
    runs_ahead: int = 0
    start: tuple[datetime, datetime] | None = None  # (p10, p90); a running batch: its start
    end: tuple[datetime, datetime] | None = None
    seconds_per_run: float | None = None
    blockers: list[str] = field(default_factory=list)

    @property
    def eta(self) -> dict[str, Any] | None:
        """Seconds from `now` to the start band, for a waiting batch (None when unknown)."""
        return None if self.start is None else {"p10": self.start[0], "p90": self.start[1]}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def seconds_per_run(jobs: list[FinishedJob]) -> tuple[float, float] | None:
    """The (p10, p90) seconds a job held its slot, per run, over recent finished jobs.

    A job holds its slot from the end of the one before it in its batch (or from the batch's
    start, or from the job's own arrival in an open batch, whichever is last) to its own end:
    that counts the dispatch between jobs, which a job's own start-to-end does not."""
    samples = []
    previous: dict[UUID, datetime] = {}
    for job in sorted(jobs, key=lambda j: (str(j.batch_id), j.order)):
        begins = [t for t in (previous.get(job.batch_id), job.batch_start, job.created_at) if t is not None]
        held = (job.end - max(begins)).total_seconds()
        previous[job.batch_id] = job.end
        if held >= 0 and job.runs > 0:
            samples.append(held / job.runs)
    if not samples:
        return None
    return _quantile(samples, 0.1), _quantile(samples, 0.9)


def _short(batch_id: UUID) -> str:
    return str(batch_id)[:8]


def _minutes(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    return f"{seconds} s" if seconds < 60 else f"{round(seconds / 60)} min"


def _occupancy(batch: QueuedBatch, begins: datetime, per_run: float, now: datetime) -> datetime:
    """When a batch that owns a slot since `begins` lets it go: after the runs it has left,
    and, for an open batch, its idle timeout (rule 5), unless OPEN_BATCH_MAX_SECONDS closes it."""
    work_ends = max(begins, now) + timedelta(seconds=batch.runs_left * per_run)
    if not batch.open:
        return work_ends
    if batch.jobs_left:
        idle_from = work_ends
    else:  # a running batch has been idle since its last activity; a waiting one will be from its start
        idle_from = batch.last_activity_at if batch.status == BatchStatus.RUNNING else begins
    times_out = idle_from + timedelta(seconds=settings.OPEN_BATCH_TIMEOUT)
    closes = (batch.start_datetime or begins) + timedelta(seconds=settings.OPEN_BATCH_MAX_SECONDS)
    return max(now, min(times_out, max(closes, work_ends)))


def _replay(
    slots: int, running: list[QueuedBatch], pending: list[QueuedBatch], per_run: float, now: datetime
) -> dict[UUID, tuple[datetime, datetime]]:
    """(start, end) of each batch when every job takes runs × `per_run` seconds."""
    times: dict[UUID, tuple[datetime, datetime]] = {}
    # One entry per slot: when it comes free, and the project whose open batch holds it.
    free: list[tuple[datetime, Any]] = []
    for batch in running:
        ends = _occupancy(batch, batch.start_datetime or now, per_run, now)
        times[batch.id] = (batch.start_datetime or now, ends)
        free.append((ends, batch.project_id if batch.open else None))
    free += [(now, None)] * max(0, slots - len(free))
    waiting = list(pending)
    while waiting and free:
        free.sort(key=lambda slot: slot[0])
        at, _ = free[0]
        still_held = [project for t, project in free[1:] if project is not None and t > at]
        full = {p for p in still_held if still_held.count(p) >= settings.OPEN_BATCH_SLOTS_PER_PROJECT}
        chosen = next((b for b in waiting if not (b.open and b.project_id in full)), None)
        if chosen is None:
            # Only open batches of projects at their limit wait: the slot idles until one of theirs frees.
            later = [t for t, project in free[1:] if project is not None and t > at]
            if not later:
                break
            free[0] = (min(later), None)
            continue
        waiting.remove(chosen)
        ends = _occupancy(chosen, at, per_run, now)
        times[chosen.id] = (at, ends)
        free[0] = (ends, chosen.project_id if chosen.open else None)
    return times


def estimate_queue(
    device: Device,
    running: list[QueuedBatch],
    pending: list[QueuedBatch],
    history: list[FinishedJob],
    *,
    now: datetime,
) -> list[Estimate]:
    """Each running batch, then each waiting one in queue order, with its start and end bands
    and what holds it back. `pending` must be in queue order (priority, then creation)."""
    rate = seconds_per_run(history)
    estimates = [Estimate(batch=b, position=None) for b in running]
    estimates += [Estimate(batch=b, position=i) for i, b in enumerate(pending, start=1)]
    jobs_ahead = runs_ahead = 0
    for estimate in estimates:
        estimate.jobs_ahead, estimate.runs_ahead = jobs_ahead, runs_ahead
        jobs_ahead += estimate.batch.jobs_left
        runs_ahead += estimate.batch.runs_left
    blockers = _blockers(device, running, now)
    for estimate in estimates:
        if estimate.position is not None:
            estimate.blockers = blockers
    if rate is None or device.status != Device.Status.UP:
        return estimates
    p10 = _replay(device.slots, running, pending, rate[0], now)
    p90 = _replay(device.slots, running, pending, rate[1], now)
    for estimate in estimates:
        estimate.seconds_per_run = rate[0]
        key = estimate.batch.id
        if key in p10 and key in p90:
            estimate.start = (p10[key][0], p90[key][0])
            estimate.end = (p10[key][1], p90[key][1])
    return estimates


def _blockers(device: Device, running: list[QueuedBatch], now: datetime) -> list[str]:
    """Why waiting batches wait, in words: the device's state, and slots held by idle open batches."""
    notes = []
    if device.status != Device.Status.UP:
        reason = f": {device.status_reason}" if device.status_reason else ""
        notes.append(f"{device.name} is {device.status}{reason}. No batch starts until it is UP.")
    timeout = timedelta(seconds=settings.OPEN_BATCH_TIMEOUT)
    for batch in running:
        if batch.open and not batch.jobs_left:
            idle = now - batch.last_activity_at
            notes.append(
                f"Slot held by open batch {_short(batch.id)}… idle for {_minutes(idle)}, "
                f"times out in {_minutes(timeout - idle)}."
            )
    if len(running) >= device.slots and not notes:
        notes.append(f"All {device.slots} slot{'s' if device.slots != 1 else ''} of {device.name} are busy.")
    return notes


# --- reading the rows -------------------------------------------------------------------------

_ACTIVE_JOBS = Q(jobs__status__in=(JobStatus.PENDING, JobStatus.RUNNING))


def _queued(rows: Any) -> list[QueuedBatch]:
    return [
        QueuedBatch(
            id=b.pk,
            project_id=b.project_id,
            status=b.status,
            open=b.open,
            created_at=b.created_at,
            start_datetime=b.start_datetime,
            last_activity_at=b.last_activity_at,
            jobs_left=b.pending_jobs + b.running_jobs,
            runs_left=b.runs_left or 0,
        )
        for b in rows
    ]


def read_queue(device: Device, *, now: datetime | None = None) -> list[Estimate]:
    """The device's running and waiting batches with their estimates (a handful of queries)."""
    now = now or timezone.now()
    active = (
        Batch.objects.filter(device=device, status__in=(BatchStatus.RUNNING, BatchStatus.PENDING))
        .only(
            "pk",
            "project_id",
            "status",
            "open",
            "created_at",
            "start_datetime",
            "last_activity_at",
            "pending_jobs",
            "running_jobs",
            "priority",
        )  # fmt: skip
        .annotate(runs_left=Sum("jobs__runs", filter=_ACTIVE_JOBS))
        .order_by("-priority", "created_at", "pk")
    )
    rows = list(active)
    running = _queued(b for b in rows if b.status == BatchStatus.RUNNING)
    pending = _queued(b for b in rows if b.status == BatchStatus.PENDING)
    # The device's latest batches first (its queue index), then their finished jobs: never a
    # sort over every job the device ever ran.
    latest = Batch.objects.filter(device=device, start_datetime__isnull=False).order_by("-start_datetime")[:RECENT]
    recent = (
        Job.objects.filter(batch__in=list(latest.values_list("pk", flat=True)), status__in=FINISHED)
        .exclude(end_timestamp=None)
        .order_by("-end_timestamp")
        .values("batch_id", "order", "runs", "created_at", "end_timestamp", "batch__start_datetime")[:HISTORY]
    )
    history = [
        FinishedJob(
            batch_id=j["batch_id"],
            order=j["order"],
            runs=j["runs"],
            created_at=j["created_at"],
            end=j["end_timestamp"],
            batch_start=j["batch__start_datetime"],
        )
        for j in recent
        if j["end_timestamp"] is not None
    ]
    return estimate_queue(device, running, pending, history, now=now)
