"""A QPU that refuses, drops and half-answers: retries, then ERROR + refund; never a job run twice."""

from __future__ import annotations

import random
from typing import Any

import pytest

from backends.devices import sync_devices
from jobs.models import Job, JobStatus
from tests.conftest import purge_broker, wait_until
from tests.reliability.conftest import all_jobs_terminal, assert_money_ok, figure, status_counts

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
qpu_module = pytest.importorskip("tests.backends.conftest", reason="the QPU simulator (issue 5) is not here yet")
JOBS = 12


def test_qpu_faults_end_each_job_done_or_refunded_and_never_run_it_twice(
    transactional_db, make_member, start_worker, tmp_path, settings
):
    from batches import services
    from tests.backends.test_qpu_end_to_end import fresnel_sequence

    qpu: Any = qpu_module.QpuSimulator(tmp_path / "qpu.log", "--token", "qpu-secret", "--slow-seconds", "2")
    try:
        settings.QPU_URL, settings.QPU_TOKEN = qpu.url, "qpu-secret"
        settings.QPU_RETRIES, settings.QPU_BACKOFF_SECONDS, settings.QPU_READ_TIMEOUT = 3, 0.05, 1
        devices = {d.name: d for d in sync_devices()}
        assert devices["FRESNEL"].status == "UP", devices["FRESNEL"].status_reason
        purge_broker()
        start_worker(
            QPU_URL=qpu.url,
            QPU_TOKEN="qpu-secret",
            QPU_POLL_SECONDS="0.05",
            QPU_BACKOFF_SECONDS="0.05",
            QPU_RETRIES="3",
            QPU_READ_TIMEOUT="1",
            JOB_LEASE_SECONDS="5",
        )
        rng = random.Random(5)
        kinds = ["503", "500_after", "drop", "drop_after", "slow"]
        faults = {
            "submit": [rng.choice(kinds) for _ in range(14)] + ["503"] * 4,  # the last ones meet a QPU that stays down
            "status": [rng.choice(kinds) for _ in range(8)],
            "result": [rng.choice(kinds) for _ in range(6)],
        }
        qpu.faults(**faults)
        member = make_member(credits=1_000_000)
        batch = services.create_batch(
            member.project,
            member.user,
            sequence_builder=fresnel_sequence(devices["FRESNEL"].specs),
            jobs=[{"runs": 10, "variables": {"omega_max": 1.0 + i / 10}} for i in range(JOBS)],
            device_type="FRESNEL",
        )
        wait_until(all_jobs_terminal, timeout=400, interval=0.5)
        stats = qpu.stats()
    finally:
        qpu.stop()

    counts = status_counts()
    ran_twice = {key: n for key, n in stats["runs"].items() if n > 1}
    injected = sum(len(v) for v in faults.values())
    figure("QPU faults injected", injected)
    figure("QPU jobs DONE / ERROR (refunded)", f"{counts.get('DONE', 0)} / {counts.get('ERROR', 0)}")
    figure("QPU submissions (with retries) / jobs", f"{sum(stats['submissions'].values())} / {JOBS}")
    figure("QPU jobs run twice", len(ran_twice))
    assert counts.get("DONE", 0) + counts.get("ERROR", 0) == JOBS, counts
    assert ran_twice == {}
    for job in Job.objects.filter(batch=batch, status=JobStatus.ERROR):
        assert job.transactions.filter(kind="REFUND").count() == 1, job.errors
        assert job.errors and "FRESNEL" in job.errors[0]
    for job in Job.objects.filter(batch=batch, status=JobStatus.DONE):
        assert stats["runs"].get(str(job.pk)) == 1
    assert_money_ok()
