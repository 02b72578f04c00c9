"""PostgreSQL connections killed (`pg_terminate_backend`) mid-submission and mid-completion."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
import requests
from django.db import connection

from batches.models import Batch
from jobs.models import Job, JobStatus
from portal.models import CreditTransaction
from tests.conftest import is_postgres, purge_broker, wait_until
from tests.reliability.conftest import (
    all_jobs_terminal,
    assert_money_ok,
    backend_pid,
    figure,
    status_counts,
    submit,
    terminate_other_backends,
)
from tests.sequences import analog_sequence

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

JOBS_PER_BATCH = 5


def _assert_no_partial_batch() -> None:
    """Every batch holds all its jobs, each charged once: a submission is all or nothing."""
    for batch in Batch.objects.all():
        jobs = list(batch.jobs.all())
        assert len(jobs) == batch.jobs_count == JOBS_PER_BATCH, (batch.pk, len(jobs), batch.jobs_count)
        charged = CreditTransaction.objects.filter(kind="CHARGE", job__in=jobs).count()
        assert charged == JOBS_PER_BATCH, (batch.pk, charged)
    orphans = CreditTransaction.objects.filter(kind="CHARGE", job__isnull=True).count()
    assert orphans == 0


def test_killed_connections_during_submissions_leave_no_partial_batch_and_no_half_charge(
    live_server, devices, make_member
):
    assert is_postgres()
    member = make_member(credits=1_000_000)
    url = f"{live_server.url}/core/api/v1/batches"
    headers = {"Authorization": f"Bearer {member.token}"}
    body: dict[str, Any] = {
        "sequence_builder": analog_sequence(3),
        "jobs": [{"runs": 10, "variables": {"omega_max": 1.0}}] * JOBS_PER_BATCH,
        "device_type": "EMU_FREE",
        "project_id": str(member.project_id),
    }
    codes: Counter[int] = Counter()
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            for _ in range(12):
                codes[session.post(url, json=body, headers=headers, timeout=60).status_code] += 1

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    killed = 0
    spare = backend_pid()  # the test's own connection
    rng = random.Random(9)

    def killer() -> None:
        nonlocal killed
        try:
            while not stop.is_set():
                killed += terminate_other_backends(spare)
                time.sleep(rng.uniform(0.3, 1.0))  # some requests get through, some do not
        finally:
            connection.close()

    killer_thread = threading.Thread(target=killer)
    killer_thread.start()
    for thread in clients:
        thread.join()
    stop.set()
    killer_thread.join()

    batches = Batch.objects.count()
    figure("submissions under connection kills (status: count)", dict(sorted(codes.items())))
    figure("backends terminated during submissions", killed)
    figure("batches created / accepted (200)", f"{batches} / {codes[200]}")
    assert killed > 0
    assert set(codes) <= {200, 500}, codes  # a lost connection is a clean JSON 500, nothing else
    # A 500 may come after the commit (reading the batch back), never a 200 without one.
    assert codes[200] <= batches <= codes[200] + codes[500]
    _assert_no_partial_batch()
    assert_money_ok()


def test_killed_connections_during_job_completion_lose_no_job_and_charge_once(
    transactional_db, devices, make_member, start_worker
):
    purge_broker()
    member = make_member(credits=1_000_000)
    start_worker()
    sequence = analog_sequence(3)
    for _ in range(8):
        submit(member, JOBS_PER_BATCH, sequence=sequence)
    wait_until(lambda: Job.objects.filter(status=JobStatus.DONE).exists(), timeout=120)

    killed = 0
    rng = random.Random(9)
    done_before = Job.objects.filter(status=JobStatus.DONE).count()
    # Kill the worker's connections at random moments while jobs claim, run, store and end.
    for _ in range(60):
        if all_jobs_terminal():
            break
        killed += terminate_other_backends()
        time.sleep(rng.uniform(0.1, 0.6))
    done_under_fire = Job.objects.filter(status=JobStatus.DONE).count() - done_before
    wait_until(all_jobs_terminal, timeout=300, interval=0.5)

    counts = status_counts()
    total = 8 * JOBS_PER_BATCH
    reruns = sum(max(job.attempts - 1, 0) for job in Job.objects.all())
    figure("backends terminated during job completion", killed)
    figure("jobs that ended DONE while connections were being killed", done_under_fire)
    figure("jobs lost under connection kills", f"{total - counts.get('DONE', 0) - counts.get('ERROR', 0)} / {total}")
    figure("jobs DONE / ERROR (refunded) / re-run", f"{counts.get('DONE', 0)} / {counts.get('ERROR', 0)} / {reruns}")
    assert killed > 0
    assert counts.get("DONE", 0) + counts.get("ERROR", 0) == total, counts
    assert all(job.result_path for job in Job.objects.filter(status=JobStatus.DONE))
    for job in Job.objects.filter(status=JobStatus.ERROR):
        assert job.transactions.filter(kind="REFUND").count() == 1, job.errors
    _assert_no_partial_batch()
    assert_money_ok()
