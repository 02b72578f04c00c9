"""Issue 18.3: a queued batch's start is estimated from the work ahead of it, as a p10-p90 band."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from backends.models import Device
from batches import scheduler
from batches.models import Batch
from batches.queue import FinishedJob, QueuedBatch, estimate_queue, read_queue, seconds_per_run
from tests.batches.conftest import drain, run_dispatched
from tests.conftest import consumers_paused

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _batch(
    *, status: str = "PENDING", open: bool = False, jobs: int = 1, runs: int = 100, project: str = "p", **times: Any
) -> QueuedBatch:
    return QueuedBatch(
        id=uuid.uuid4(),
        project_id=project,
        status=status,
        open=open,
        created_at=times.get("created_at", NOW - timedelta(minutes=10)),
        start_datetime=times.get("start", NOW - timedelta(minutes=1) if status == "RUNNING" else None),
        last_activity_at=times.get("last_activity", NOW - timedelta(minutes=1)),
        jobs_left=jobs,
        runs_left=jobs * runs,
    )


def _history(*per_job: float, runs: int = 100) -> list[FinishedJob]:
    """Jobs of one batch that ended one after the other, each holding its slot `per_job` seconds."""
    batch, start = uuid.uuid4(), NOW - timedelta(hours=1)
    jobs, end = [], start
    for order, seconds in enumerate(per_job):
        end += timedelta(seconds=seconds)
        jobs.append(FinishedJob(batch_id=batch, order=order, runs=runs, created_at=start, end=end, batch_start=start))
    return jobs


def _device(slots: int = 1, status: str = "UP") -> Device:
    return Device(name="EMU_FREE", slots=slots, status=status)


def test_seconds_per_run_counts_from_the_previous_jobs_end_as_p10_and_p90():
    assert seconds_per_run(_history(1, 1, 1, 1, 1, 1, 1, 1, 1, 5)) == (0.01, 0.01)
    assert seconds_per_run(_history(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)) == (0.01, 0.09)
    assert seconds_per_run([]) is None


def test_a_waiting_batch_starts_when_the_jobs_left_in_the_running_batch_are_done():
    running = _batch(status="RUNNING", jobs=6)  # 600 runs left
    waiting = _batch()
    [_, mine] = estimate_queue(_device(), [running], [waiting], _history(*[1.0] * 9, 3.0), now=NOW)
    assert mine.position == 1 and mine.jobs_ahead == 6 and mine.runs_ahead == 600
    # 600 runs at 0.01 s (p10) and 0.03 s... the p90 of [1]*9 + [3] is still 1 s per 100 runs.
    assert mine.start == (NOW + timedelta(seconds=6), NOW + timedelta(seconds=6))


def test_batches_behind_wait_for_those_ahead_of_them_on_every_slot():
    running = [_batch(status="RUNNING", jobs=2), _batch(status="RUNNING", jobs=4)]
    first, second, third = _batch(jobs=1), _batch(jobs=1), _batch(jobs=1)
    estimates = estimate_queue(_device(slots=2), running, [first, second, third], _history(*[1.0] * 10), now=NOW)
    starts = {e.batch.id: e.start[0] - NOW for e in estimates if e.position and e.start}
    assert starts[first.id] == timedelta(seconds=2)  # the slot of the 2-job batch frees first
    assert starts[second.id] == timedelta(seconds=3)  # then the first waiting one's, 1 job later
    assert starts[third.id] == timedelta(seconds=4)  # and the 4-job batch's slot at 4 s


def test_an_idle_open_batch_holds_its_slot_until_it_times_out_and_says_so(settings):
    settings.OPEN_BATCH_TIMEOUT = 300
    idle = _batch(status="RUNNING", open=True, jobs=0, last_activity=NOW - timedelta(minutes=3))
    waiting = _batch()
    [_, mine] = estimate_queue(_device(), [idle], [waiting], _history(*[1.0] * 10), now=NOW)
    assert mine.start == (NOW + timedelta(minutes=2), NOW + timedelta(minutes=2))
    assert mine.blockers == [f"Slot held by open batch {str(idle.id)[:8]}… idle for 3 min, times out in 2 min."]


def test_a_projects_open_batch_waits_while_its_open_batches_hold_their_slots(settings):
    settings.OPEN_BATCH_TIMEOUT = 300
    settings.OPEN_BATCH_SLOTS_PER_PROJECT = 1
    held = _batch(status="RUNNING", open=True, jobs=1, project="a", last_activity=NOW)
    second_open = _batch(open=True, project="a")
    other = _batch(project="b", created_at=NOW - timedelta(minutes=5))  # younger, but may go first
    estimates = estimate_queue(_device(slots=2), [held], [second_open, other], _history(*[1.0] * 10), now=NOW)
    starts = {e.batch.id: e.start[0] for e in estimates if e.start}
    assert starts[other.id] == NOW
    # Project a's second open batch starts when its first lets go: its job, then 5 idle minutes.
    assert starts[second_open.id] == NOW + timedelta(seconds=1, minutes=5)


def test_a_device_that_is_not_up_gives_no_estimate_and_says_why():
    [mine] = estimate_queue(_device(status="MAINTENANCE"), [], [_batch()], _history(1.0), now=NOW)
    assert mine.start is None
    assert mine.blockers == ["EMU_FREE is MAINTENANCE. No batch starts until it is UP."]


@pytest.mark.django_db(transaction=True)
def test_the_band_contains_the_real_start_of_a_queued_batch(emu, submit):
    """A queue of known jobs on one slot: estimate, run it, compare (this test runs the jobs
    itself: a session worker must not take them)."""
    with consumers_paused("device.EMU_FREE"):
        _estimate_then_run(emu, submit)


def _estimate_then_run(emu: Device, submit: Any) -> None:
    drain(emu)  # nothing left from elsewhere
    history = submit(6)
    drain(emu)  # the device's recent seconds per run
    submit(4)  # takes the slot
    queued = submit(2)
    scheduler.advance(emu.pk)  # the 4 jobs take the slot, `queued` waits
    estimated_at = timezone.now()
    mine = next(e for e in read_queue(emu, now=estimated_at) if e.batch.id == queued.pk)
    assert mine.position == 1 and mine.jobs_ahead == 4 and mine.start is not None
    for _ in range(20):
        if not run_dispatched(emu):
            break
    started = Batch.objects.get(pk=queued.pk).start_datetime
    assert started is not None and Batch.objects.get(pk=history.pk).status == "DONE"
    p10, p90 = mine.start
    # The band is of job run times; the scheduler's own steps between jobs (a transaction or
    # two each) are not in it: a small margin on both sides.
    margin = timedelta(milliseconds=50)
    assert p10 - margin <= started <= p90 + 4 * margin, (estimated_at, p10, started, p90)


def test_the_batch_page_and_the_queue_board_show_the_same_band(member, emu, submit, client, settings):
    settings.OPEN_BATCH_TIMEOUT = 300
    client.force_login(member.user)
    idle = submit(1, open=True)
    drain(emu)
    Batch.objects.filter(pk=idle.pk).update(last_activity_at=timezone.now() - timedelta(minutes=3))
    queued = submit(1)
    page = client.get(reverse("batches:detail", args=[queued.pk])).content.decode()
    assert 'id="queue-position">#1' in page
    assert f"Slot held by open batch {str(idle.pk)[:8]}… idle for 3 min, times out in 2 min." in page
    assert 'id="queue-eta">~2 min<' in page
    board = client.get(reverse("batches:queue", args=["EMU_FREE"])).content.decode()
    assert board.index(str(idle.pk)[:8]) < board.index(str(queued.pk)[:8])
    assert "~2 min" in board and "times out in 2 min" in board
