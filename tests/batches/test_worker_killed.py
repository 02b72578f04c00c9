"""A worker killed with SIGKILL mid-job: the lease expires, the tick re-queues, another worker finishes.

Real processes: two `celery worker` subprocesses (with beat, so the tick runs), a QuTiP job
long enough to be killed while running. The job must end DONE (re-run) or ERROR+refunded,
never stay RUNNING, never be charged twice.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from backends.devices import _emulator_specs
from backends.models import Device
from batches import scheduler, services
from jobs.models import Job
from portal.models import CreditTransaction
from tests.conftest import ROOT, WorkerProcess, purge_broker, wait_until, worker_env
from tests.sequences import seed_mappable_sequence

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUEUE_DEVICE = "EMU_KILLTEST"  # a device (and queue) of its own: no other test worker takes its jobs
LONG_JOB = {
    "runs": 50,
    "variables": {"omega_max": 1.0, "qubits": {f"q{i}": t for i, t in enumerate([1, 5, 7, 2, 4, 8, 26, 30])}},
}


class DeviceWorker(WorkerProcess):
    """A worker (with beat) on one device's queue and `default`, with a short job lease."""

    def __init__(self, log_path: Path, queue: str, *, beat: bool = True, env: dict[str, str]) -> None:
        from portal.management.commands.runall import worker_command

        command = worker_command(["default", queue], concurrency=1, name=f"kill-{time.time_ns()}")
        command[command.index("warning")] = "info"
        if beat:
            command += ["-B", "-s", str(log_path.with_suffix(".beat"))]
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=worker_env(**env), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready()


def kill_test_device(slots: int) -> Device:
    """A device (and queue) of its own: no other test worker takes its jobs."""
    return Device.objects.create(
        name=QUEUE_DEVICE, backend=Device.Backend.QUTIP, price_per_run=1, slots=slots, specs=_emulator_specs("EMU_FREE")
    )


def submit_long_job(member: Any, *jobs: dict[str, Any]) -> tuple[Any, Job]:
    """A batch whose first job runs long enough to be interrupted; returns it once that job runs."""
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(duration=16000),
        jobs=[LONG_JOB, *jobs],
        device_type=QUEUE_DEVICE,
    )
    job = Job.objects.get(batch=batch, order=0)
    wait_until(lambda: Job.objects.get(pk=job.pk).status == "RUNNING", timeout=60, interval=0.05)
    return batch, job


def test_a_worker_killed_mid_job_has_its_job_rerun_after_the_lease_expires(member, devices, tmp_path):
    kill_test_device(slots=1)
    purge_broker()
    env = {"JOB_LEASE_SECONDS": "2", "TICK_SECONDS": "1", "JOB_REDISPATCH_SECONDS": "2"}
    first = DeviceWorker(tmp_path / "first.log", f"device.{QUEUE_DEVICE}", env=env)
    second: Any = None
    try:
        batch, job = submit_long_job(member)
        owner = Job.objects.get(pk=job.pk).lease_owner
        pids = [first.proc.pid, *first.children()]
        first.kill()  # SIGKILL to the whole process group: main process and pool child
        wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=10)
        assert Job.objects.get(pk=job.pk).status == "RUNNING", "the job was mid-run when its worker died"

        second = DeviceWorker(tmp_path / "second.log", f"device.{QUEUE_DEVICE}", env=env)
        final = wait_until(
            lambda: (j := Job.objects.get(pk=job.pk)).status in ("DONE", "ERROR") and j, timeout=120, interval=0.1
        )
        assert final.lease_owner != owner
        if final.status == "DONE":
            assert final.attempts == 2 and final.result_path
            assert not CreditTransaction.objects.filter(job=job, kind="REFUND").exists()
        else:
            assert CreditTransaction.objects.filter(job=job, kind="REFUND").count() == 1
        assert CreditTransaction.objects.filter(job=job, kind="CHARGE").count() == 1
        wait_until(lambda: batch.__class__.objects.get(pk=batch.pk).status == "DONE", timeout=30)
    finally:
        if first.proc.poll() is None:
            first.stop()
        if second is not None:
            second.stop()


def test_a_pool_child_terminated_mid_job_hands_its_job_back_at_once_and_it_runs_again(member, devices, tmp_path):
    """Issue 17.4: SIGTERM to the process running a job (as Celery does to a task it cancels) is a
    lost worker, not a failed job: the job goes back to PENDING at once (no wait for its lease),
    its attempt not counted, and then runs to DONE, charged once, never refunded."""
    kill_test_device(slots=1)
    purge_broker()
    # A lease far longer than the test: only the hand-back can make the job run again in time.
    # No beat in the worker (its one child is the pool's): the test advances the queue itself.
    env = {"JOB_LEASE_SECONDS": "600", "JOB_REDISPATCH_SECONDS": "1"}
    worker = DeviceWorker(tmp_path / "worker.log", f"device.{QUEUE_DEVICE}", beat=False, env=env)
    try:
        batch, job = submit_long_job(member)
        time.sleep(0.5)  # inside QuTiP's integrator
        (child,) = worker.children()
        os.kill(child, 15)
        handed_back = wait_until(
            lambda: (j := Job.objects.get(pk=job.pk)).status != "RUNNING" and j, timeout=20, interval=0.05
        )
        assert handed_back.status in ("PENDING", "DONE"), handed_back.errors  # never ERROR

        def ended() -> Any:
            scheduler.advance(batch.device_id)  # what the tick does: the job is sent again
            return (j := Job.objects.get(pk=job.pk)).status in ("DONE", "ERROR") and j

        final = wait_until(ended, timeout=120, interval=0.5)
        assert final.status == "DONE", final.errors
        assert final.attempts == 1, "the terminated attempt does not count"
        assert not CreditTransaction.objects.filter(job=job, kind="REFUND").exists()
        assert CreditTransaction.objects.filter(job=job, kind="CHARGE").count() == 1
    finally:
        worker.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its state says it is dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False
