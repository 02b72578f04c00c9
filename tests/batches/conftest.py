"""Helpers for the scheduling tests: submit through the services, run jobs in-process.

`runner.execute(job_id)` is exactly what a worker's `run_job` task does, so calling it here
runs the real claim / QuTiP / result / end / advance path without a broker hop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from backends.models import Device
from batches import runner, scheduler, services
from batches.models import Batch
from jobs.models import Job, JobStatus
from tests.sequences import seed_mappable_sequence

SEQUENCE = seed_mappable_sequence()


def job_spec(runs: int = 10, omega: float = 1.0) -> dict[str, Any]:
    # Two atoms: a QuTiP run takes ~50 ms.
    return {"runs": runs, "variables": {"omega_max": omega, "qubits": {"q0": 1, "q1": 5}}}


@pytest.fixture
def emu(devices: dict[str, Device]) -> Device:
    """EMU_FREE with a single slot, so queueing is observable."""
    device = devices["EMU_FREE"]
    device.slots = 1
    device.save(update_fields=["slots"])
    return device


@pytest.fixture
def submit(member: Any, emu: Device) -> Callable[..., Batch]:
    def make(n_jobs: int = 1, *, runs: int = 10, device: Device | None = None, **options: Any) -> Batch:
        return services.create_batch(
            member.project,
            member.user,
            sequence_builder=SEQUENCE,
            jobs=[job_spec(runs, omega=1.0 + i / 10) for i in range(n_jobs)],
            device_type=(device or emu).name,
            **options,
        )

    return make


def jobs_of(batch: Batch) -> list[Job]:
    return list(Job.objects.filter(batch=batch).order_by("order"))


def dispatched(device: Device) -> list[Job]:
    """The jobs `advance` has handed to the device's queue and no worker has started yet."""
    return list(
        Job.objects.filter(batch__device=device, status=JobStatus.PENDING, dispatched_at__isnull=False).order_by(
            "batch__created_at", "order"
        )
    )


def run_dispatched(device: Device) -> list[Job]:
    """Play the worker: execute every job `advance` dispatched, as `run_job` would."""
    jobs = dispatched(device)
    for job in jobs:
        runner.execute(str(job.pk))
    return jobs


def drain(device: Device, limit: int = 50) -> None:
    """Advance and run until the device has nothing left to dispatch."""
    scheduler.advance(device.pk)
    for _ in range(limit):
        if not run_dispatched(device):
            return
    raise AssertionError("the device never ran out of work")
