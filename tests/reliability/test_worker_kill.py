"""SIGKILL workers again and again while 200 jobs run: nothing lost, nothing stuck, charged once."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from jobs.models import Job, JobStatus
from tests.conftest import purge_broker, wait_until
from tests.reliability.conftest import all_jobs_terminal, assert_money_ok, figure, status_counts, submit
from tests.sequences import analog_sequence

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

JOBS, BATCHES = 200, 10


def test_sigkilled_workers_lose_no_job_and_run_none_to_done_twice(transactional_db, devices, make_member, start_worker):
    purge_broker()
    member = make_member(credits=1_000_000)
    worker = start_worker()
    ready_at = time.monotonic()  # no tick runs while no worker does: staleness counts from here
    sequence = analog_sequence(3)
    for _ in range(BATCHES):
        submit(member, JOBS // BATCHES, sequence=sequence)

    rng = random.Random(9)
    child_kills = worker_kills = 0
    stale_seen = 0  # samples of a job still RUNNING 30 s after its lease ended (stuck)
    while not all_jobs_terminal() and child_kills + worker_kills < 6:
        # Kill only while a job is really running, so the kill lands mid-job.
        wait_until(lambda: Job.objects.filter(status=JobStatus.RUNNING).exists() or all_jobs_terminal(), timeout=60)
        if all_jobs_terminal():
            break
        time.sleep(rng.uniform(0.05, 0.4))  # a random point inside the job
        if (child_kills + worker_kills) % 3 == 2:
            worker.kill()  # the whole worker (main, pool and beat): start a fresh one
            worker_kills += 1
            worker = start_worker()
            ready_at = time.monotonic()
        else:
            children = worker.children()
            if children:
                os.kill(rng.choice(children), signal.SIGKILL)
                child_kills += 1
        stale_seen += _stale_running(ready_at)
        wait_until(lambda: Job.objects.filter(status=JobStatus.DONE).count() > 0, timeout=60)
        time.sleep(rng.uniform(0.5, 2.0))

    def finished() -> bool:
        nonlocal stale_seen
        stale_seen += _stale_running(ready_at)
        return all_jobs_terminal()

    wait_until(finished, timeout=400, interval=0.5)
    counts = status_counts()
    reruns = sum(max(job.attempts - 1, 0) for job in Job.objects.all())
    errors = Job.objects.filter(status=JobStatus.ERROR)
    figure("worker kills (pool child / whole worker)", f"{child_kills} / {worker_kills}")
    figure("jobs lost", f"{JOBS - counts.get('DONE', 0) - counts.get('ERROR', 0)} / {JOBS}")
    figure("jobs DONE / ERROR (refunded)", f"{counts.get('DONE', 0)} / {counts.get('ERROR', 0)}")
    figure("jobs re-run after a kill", reruns)
    figure("samples of a job RUNNING 30 s past its lease", stale_seen)

    assert counts.get("DONE", 0) + counts.get("ERROR", 0) == JOBS, counts
    # A kill interrupts at most one job per pool child; every extra attempt is explained by one.
    assert reruns <= child_kills + 2 * worker_kills
    assert all(job.result_path for job in Job.objects.filter(status=JobStatus.DONE))
    for job in errors:
        assert job.transactions.filter(kind="REFUND").count() == 1, job.errors
    assert stale_seen == 0
    assert_money_ok()


def _stale_running(ready_at: float) -> int:
    from datetime import timedelta

    from django.utils import timezone

    if time.monotonic() - ready_at < 30:
        return 0  # the worker (and its beat) started less than 30 s ago

    # The tick reaps an expired lease within a tick or two, once a worker (and its beat) runs
    # again; 30 s only separates "reaped late on a loaded machine" from "stuck for good".
    cutoff = timezone.now() - timedelta(seconds=30)
    return Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=cutoff).count()
