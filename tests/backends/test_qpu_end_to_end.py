"""FRESNEL end to end: the real SDK → API → queue → a real worker → the QPU simulator process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pulser import Pulse, Register, Sequence
from pulser.json.abstract_repr.deserializer import deserialize_device

from backends.devices import sync_devices
from jobs.models import Job
from portal.models import CreditTransaction
from tests.conftest import WorkerProcess, purge_broker, wait_until

QUEUE = "device.FRESNEL"


def _other_workers_on(queue: str) -> list[str]:
    """Workers of this session already consuming `queue` (the shared worker has no QPU_URL)."""
    from portal.celery import app

    try:
        active = app.control.inspect(timeout=1).active_queues() or {}
    except Exception:  # noqa: BLE001 - a broker without remote control: nobody to ask
        return []
    return [name for name, queues in active.items() if any(q["name"] == queue for q in queues)]


@pytest.fixture
def qpu_worker(qpu, transactional_db, tmp_path) -> Iterator[WorkerProcess]:  # type: ignore[no-untyped-def]
    from portal.celery import app

    others = _other_workers_on(QUEUE)
    if others:
        app.control.cancel_consumer(QUEUE, destination=others, reply=True)
    purge_broker()
    worker = WorkerProcess(
        tmp_path / "worker.log",
        beat=True,
        QPU_URL=qpu.url,
        QPU_TOKEN="qpu-secret",
        QPU_POLL_SECONDS="0.05",
        QPU_BACKOFF_SECONDS="0.05",
        QPU_RETRIES="3",
        QPU_READ_TIMEOUT="1",
    )
    yield worker
    worker.stop()
    if others:
        app.control.add_consumer(QUEUE, destination=others, reply=True)


def fresnel_sequence(specs: str) -> str:
    seq = Sequence(Register.rectangle(1, 3, spacing=6, prefix="q"), deserialize_device(specs))
    seq.declare_channel("rydberg", "rydberg_global")
    omega = seq.declare_variable("omega_max")
    seq.add(Pulse.ConstantPulse(duration=200, amplitude=omega, detuning=0, phase=0), "rydberg")
    return str(seq.to_abstract_repr())


def test_a_fresnel_batch_survives_qpu_faults_and_runs_each_job_once(qpu, qpu_worker, sdk_for, member):
    devices = {d.name: d for d in sync_devices()}  # with QPU_URL set: specs and UP status from the QPU
    assert devices["FRESNEL"].status == "UP", devices["FRESNEL"].status_reason
    sdk: Any = sdk_for(member)
    specs = sdk.get_device_specs_dict()["FRESNEL"]
    # Job 0 meets a refusal, then an answer lost after the QPU accepted it: retried, run once.
    qpu.faults(submit=["503", "500_after"])
    batch = sdk.create_batch(
        fresnel_sequence(specs), [{"runs": 30, "variables": {"omega_max": 1.0}}], device_type="FRESNEL", open=True
    )
    wait_until(lambda: Job.objects.filter(batch_id=batch.id, order=0, status="DONE").exists())
    # Job 1 meets a QPU that stays down: ERROR, refunded.
    qpu.faults(submit=["503"] * 4)
    batch.add_jobs([{"runs": 20, "variables": {"omega_max": 2.0}}])
    wait_until(lambda: Job.objects.filter(batch_id=batch.id, order=1, status="ERROR").exists())
    batch.close(wait=True)

    first, second = batch.ordered_jobs
    assert first.status == "DONE", Job.objects.get(pk=first.id).errors
    assert sum(first.result.values()) == 30
    assert second.status == "ERROR"
    job = Job.objects.get(pk=second.id)
    assert job.errors == [
        "FRESNEL failed: the QPU endpoint did not answer POST /jobs after 4 attempts (last: HTTP 503)."
    ]
    wait_until(lambda: CreditTransaction.objects.filter(job_id=second.id, kind="REFUND").exists())
    assert CreditTransaction.objects.get(job_id=second.id, kind="REFUND").amount == job.price
    stats = qpu.stats()
    assert stats["submissions"] == {first.id: 3, second.id: 4}
    assert stats["runs"] == {first.id: 1}
