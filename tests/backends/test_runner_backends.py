"""The runner with each real adapter: results stored as files, platform failures refunded."""

from __future__ import annotations

import pytest
from pulser import Pulse, Register, Sequence
from pulser.backend.results import Results
from pulser.json.abstract_repr.deserializer import deserialize_device

from backends.devices import sync_devices
from batches import runner, scheduler
from batches.services import create_batch
from jobs.models import Job, JobStatus
from jobs.results import read_result
from jobs.storage import results_storage
from portal.models import CreditTransaction
from tests.sequences import seed_mappable_sequence


def fresnel_sequence(specs: str, n_atoms: int = 2) -> str:
    seq = Sequence(Register.rectangle(1, n_atoms, spacing=6, prefix="q"), deserialize_device(specs))
    seq.declare_channel("rydberg", "rydberg_global")
    omega = seq.declare_variable("omega_max")
    seq.add(Pulse.ConstantPulse(duration=200, amplitude=omega, detuning=0, phase=0), "rydberg")
    return str(seq.to_abstract_repr())


def submit(member, device: str, sequence: str, runs: int = 40, **variables):  # type: ignore[no-untyped-def]
    variables = variables or {"omega_max": 1.5}
    batch = create_batch(
        member.project,
        member.user,
        sequence_builder=sequence,
        jobs=[{"runs": runs, "variables": variables}],
        device_type=device,
    )
    scheduler.advance(batch.device_id)  # the batch takes the idle slot: its job may start
    return batch.jobs.get()


def test_an_emu_free_result_is_a_file_with_counter_raw_and_pulser_results(member, devices):
    job = submit(member, "EMU_FREE", seed_mappable_sequence(), runs=64, omega_max=2.0, qubits={"q0": 1, "q1": 5})

    runner.execute(str(job.pk))

    job.refresh_from_db()
    assert job.status == JobStatus.DONE
    assert results_storage().exists(job.result_path)
    result = read_result(job)
    assert result is not None
    assert sum(result["counter"].values()) == 64
    assert len(result["raw"]) == 64 and set(result["raw"]) == set(result["counter"])
    restored = Results.from_abstract_repr(result["serialised_results"])
    assert dict(restored.final_bitstrings) == result["counter"]
    assert list(restored.atom_order) == ["q0", "q1"]


@pytest.fixture
def fresnel(qpu, db):  # type: ignore[no-untyped-def]
    device = {d.name: d for d in sync_devices()}["FRESNEL"]
    assert device.status == "UP", device.status_reason
    return device


def test_a_fresnel_job_runs_on_the_qpu_once_despite_faults(member, fresnel, qpu):
    job = submit(member, "FRESNEL", fresnel_sequence(fresnel.specs), runs=25)
    qpu.faults(submit=["drop_after", "503"], status=["500_after"])

    runner.execute(str(job.pk))

    job.refresh_from_db()
    assert job.status == JobStatus.DONE, job.errors
    result = read_result(job)
    assert result is not None and sum(result["counter"].values()) == 25
    assert qpu.stats()["submissions"] == {str(job.pk): 3}
    assert qpu.stats()["runs"] == {str(job.pk): 1}


def test_a_qpu_that_stays_down_ends_the_job_in_error_and_refunds_it(member, fresnel, qpu):
    job = submit(member, "FRESNEL", fresnel_sequence(fresnel.specs), runs=25)
    balance_after_charge = member.project.__class__.objects.get(pk=member.project_id).balance
    qpu.faults(submit=["503"] * 4)

    runner.execute(str(job.pk))

    job.refresh_from_db()
    assert job.status == JobStatus.ERROR
    assert job.errors == [
        "FRESNEL failed: the QPU endpoint did not answer POST /jobs after 4 attempts (last: HTTP 503)."
    ]
    refund = CreditTransaction.objects.get(job=job, kind="REFUND")
    assert refund.amount == job.price == 25 * fresnel.price_per_run
    member.project.refresh_from_db()
    assert member.project.balance == balance_after_charge + job.price
    assert qpu.stats()["runs"] == {}


def test_a_qpu_job_that_never_finishes_ends_in_error_after_the_maximum_wait(member, fresnel, qpu, settings):
    settings.QPU_MAX_WAIT_SECONDS = 1
    job = submit(member, "FRESNEL", fresnel_sequence(fresnel.specs), runs=25)
    qpu.faults(never_finish=1)

    runner.execute(str(job.pk))

    job.refresh_from_db()
    assert job.status == JobStatus.ERROR
    assert "did not finish the job within 1 s" in job.errors[0]
    assert CreditTransaction.objects.filter(job=job, kind="REFUND").count() == 1
    assert [j["status"] for j in qpu.stats()["jobs"].values()] == ["CANCELED"]
    assert Job.objects.get(pk=job.pk).result_path in ("", None)
