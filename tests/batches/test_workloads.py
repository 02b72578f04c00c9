"""Workload services: a workload is a one-job closed batch, validated, charged and refunded as one."""

from __future__ import annotations

from typing import Any

import pytest

from backends.models import Device
from batches import lifecycle, runner, services, workloads
from batches.models import Batch, Workload
from jobs.models import Job, JobStatus
from jobs.results import read_result
from portal import credits
from portal.errors import Conflict, InsufficientCredits, InvalidInput
from portal.models import CreditTransaction
from tests.batches.conftest import SEQUENCE, drain
from tests.factories import MembershipFactory, ProjectFactory

QUBITS = {"q0": 1, "q1": 5}


def config(**overrides: Any) -> dict[str, Any]:
    return {"sequence": SEQUENCE, "runs": 10, "variables": {"omega_max": 1.0, "qubits": QUBITS}, **overrides}


def create(member: Any, **kwargs: Any) -> Workload:
    options = {"workload_type": "pulser", "backend": "EMU_FREE", "config": config(), **kwargs}
    return workloads.create_workload(member.project, member.user, **options)


def test_a_pulser_workload_is_a_one_job_closed_batch_tagged_workload_and_charged_once(member, emu):
    before = credits.balance_of(member.project)
    workload = create(member, config=config(configuration={"sampling_rate": 0.5}))

    batch = Batch.objects.get(pk=workload.batch_id)
    (job,) = batch.jobs.all()
    assert batch.open is False and batch.tags == ["workload"] and batch.device.name == "EMU_FREE"
    assert batch.sequence_builder == SEQUENCE and batch.configuration == {"sampling_rate": 0.5}
    assert (job.runs, job.variables) == (10, {"omega_max": 1.0, "qubits": QUBITS})
    assert credits.balance_of(member.project) == before - 10
    assert CreditTransaction.objects.filter(job=job, kind="CHARGE").count() == 1
    assert workloads.workload_status(workload, job) == "PENDING"
    assert workloads.workload_config(workload) == config(configuration={"sampling_rate": 0.5})


def test_a_workload_runs_on_the_device_queue_to_done_with_its_result(member, emu):
    workload = create(member)
    drain(emu)
    job = workloads.workload_job(workload)
    assert workloads.workload_status(workload, job) == "DONE"
    result = read_result(job)
    assert result is not None and sum(result["counter"].values()) == 10 and len(result["raw"]) == 10


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        (
            {"workload_type": "qaoa"},
            "workload_type",
            "Unknown workload_type 'qaoa'. Supported workload types: 'pulser'.",
        ),
        ({"backend": "EMU_NOPE"}, "backend", "Unknown backend 'EMU_NOPE'. Available backends: EMU_FREE, EMU_MPS,"),
        ({"config": config(runs=None)}, "config.runs", "config.runs is required for a 'pulser' workload"),
        ({"config": config(runs=0)}, "config.runs", "config.runs must be a whole number of shots from 1 to"),
        ({"config": config(runs=True)}, "config.runs", "config.runs must be a whole number of shots"),
        ({"config": config(runs="10")}, "config.runs", "config.runs must be a whole number of shots"),
        ({"config": config(shots=10)}, "config.shots", "config: unknown key 'shots'; a 'pulser' workload takes: "),
        ({"config": config(sequence=None)}, "config.sequence", "config.sequence is required"),
        ({"config": config(sequence="{oops")}, "config.sequence", "'config.sequence' is not valid JSON"),
        ({"config": config(sequence=7)}, "config.sequence", "'config.sequence' must be a string"),
        (
            {"config": config(variables={"qubits": QUBITS})},
            "config.variables",
            "config.variables: missing variable 'omega_max' declared by the sequence.",
        ),
        (
            {"config": config(variables={"omega_max": 1.0, "qubits": QUBITS, "omega_min": 0})},
            "config.variables",
            "config.variables: unknown variable 'omega_min'; the sequence declares: omega_max.",
        ),
        (
            {"config": config(configuration={"sampling_rate": 0})},
            "config.configuration",
            "config.configuration.sampling_rate must be a number in (0, 1]",
        ),
        ({"config": config(configuration=[1])}, "config.configuration", "config.configuration must be an object"),
        ({"config": [1, 2]}, "config", "'config' must be an object."),
    ],
)
def test_a_bad_workload_names_the_field_and_creates_and_charges_nothing(member, emu, kwargs, field, message):
    before = credits.balance_of(member.project)
    with pytest.raises(InvalidInput) as caught:
        create(member, **kwargs)
    assert caught.value.field == field
    assert caught.value.message.startswith(message), caught.value.message
    assert not Workload.objects.exists() and not Batch.objects.exists()
    assert credits.balance_of(member.project) == before


def test_a_workload_on_a_down_backend_is_refused(member, emu):
    Device.objects.filter(pk=emu.pk).update(status=Device.Status.DOWN, status_reason="cryostat warming up")
    with pytest.raises(InvalidInput) as caught:
        create(member)
    assert caught.value.message == "Backend EMU_FREE is DOWN: cryostat warming up"
    assert caught.value.field == "backend"


def test_a_workload_the_project_cannot_pay_is_402_and_creates_nothing(emu):
    poor = MembershipFactory(project=ProjectFactory(credits=5))
    with pytest.raises(InsufficientCredits) as caught:
        create(poor)
    assert caught.value.details == {"price": 10, "balance": 5}
    assert not Workload.objects.exists() and not Batch.objects.exists() and not Job.objects.exists()


def test_cancel_of_a_pending_workload_leaves_the_queue_and_refunds_once(member, emu):
    workload = create(member)
    before = credits.balance_of(member.project)
    canceled = workloads.cancel_workload(workload, by=member.user)
    job = workloads.workload_job(canceled)
    assert workloads.workload_status(canceled, job) == "CANCELED"
    assert canceled.batch.status == "CANCELED"
    assert credits.balance_of(member.project) == before + 10
    with pytest.raises(Conflict) as caught:
        workloads.cancel_workload(canceled, by=member.user)
    assert caught.value.message == f"Workload {workload.pk} is CANCELED: it can no longer be canceled."
    assert CreditTransaction.objects.filter(job=job, kind="REFUND").count() == 1


def test_cancel_of_a_running_workload_is_409_and_it_keeps_running(member, emu):
    workload = create(member)
    from batches import scheduler

    scheduler.advance(emu.pk)
    job = workloads.workload_job(workload)
    assert runner.claim(str(job.pk), "worker-1") is not None
    with pytest.raises(Conflict) as caught:
        workloads.cancel_workload(workload, by=member.user)
    assert "is RUNNING: only a PENDING workload can be canceled" in caught.value.message
    assert Batch.objects.get(pk=workload.batch_id).status == "RUNNING"  # the batch's cancel was undone
    assert Job.objects.get(pk=job.pk).status == "RUNNING"
    assert not CreditTransaction.objects.filter(job=job, kind="REFUND").exists()


def test_cancel_of_a_done_workload_is_409(member, emu):
    workload = create(member)
    drain(emu)
    with pytest.raises(Conflict) as caught:
        workloads.cancel_workload(workload, by=member.user)
    assert caught.value.message == f"Workload {workload.pk} is DONE: it can no longer be canceled."


def test_a_workload_whose_backend_fails_ends_error_and_is_refunded_once(member, emu):
    workload = create(member)
    before = credits.balance_of(member.project)
    from batches import scheduler

    scheduler.advance(emu.pk)
    claimed = runner.claim(str(workloads.workload_job(workload).pk), "worker-1")
    assert claimed is not None
    lifecycle.end_job(claimed, "worker-1", JobStatus.ERROR, errors=["EMU_FREE failed: boom"], refund=True)
    job = workloads.workload_job(workload)
    assert workloads.workload_status(workload, job) == "ERROR" and job.errors == ["EMU_FREE failed: boom"]
    assert credits.balance_of(member.project) == before + 10


def test_another_projects_workload_is_not_found(member, emu, make_member):
    workload = create(member)
    stranger = make_member()
    with pytest.raises(workloads.NotFound):
        workloads.get_workload_for(stranger.user, workload.pk)
    assert workloads.get_workload_for(member.user, workload.pk) == workload


def test_the_portal_labels_a_workloads_batch_as_a_workload(member, emu, client):
    workload = create(member)
    plain = workloads.services.create_batch(
        member.project,
        member.user,
        sequence_builder=SEQUENCE,
        jobs=[{"runs": 1, "variables": config()["variables"]}],
        device_type="EMU_FREE",
    )
    client.force_login(member.user)
    page = client.get(f"/batches/{workload.batch_id}/").content.decode()
    assert f'This batch runs workload <span class="mono">{workload.pk}</span>' in page
    assert 'id="workload"' not in client.get(f"/batches/{plain.pk}/").content.decode()
    listing = client.get("/batches/").content.decode()
    assert '<span class="tag">workload</span>' in listing


def test_create_workload_with_an_idempotency_key_returns_the_first_answer(member, emu, client):
    body = {"workload_type": "pulser", "backend": "EMU_FREE", "config": config(), "project_id": str(member.project_id)}
    headers = {"HTTP_AUTHORIZATION": f"Bearer {member.token}", "HTTP_IDEMPOTENCY_KEY": "wl-1"}
    first = client.post("/core/api/v1/workloads", body, content_type="application/json", **headers)
    again = client.post("/core/api/v1/workloads", body, content_type="application/json", **headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    assert Workload.objects.count() == 1 and Job.objects.count() == 1
    assert CreditTransaction.objects.filter(kind="CHARGE").count() == 1


def test_a_nul_character_in_the_config_is_refused_before_it_reaches_the_database(member, emu):
    with pytest.raises(InvalidInput) as caught:
        create(member, config=config(configuration={"with_noise\x00": True}))
    assert caught.value.message == "config may not contain NUL characters." and caught.value.field == "config"
    assert not Workload.objects.exists()


def test_rebatching_a_workloads_batch_gives_an_ordinary_batch_without_the_workload_tag(member, emu):
    workload = create(member)
    drain(emu)
    Batch.objects.filter(pk=workload.batch_id).update(tags=["workload", "scan-7"])
    copy = services.rebatch(Batch.objects.get(pk=workload.batch_id), by=member.user)
    assert copy.tags == ["scan-7"] and not Workload.objects.filter(batch=copy).exists()
    jobs = [{"runs": 5, "variables": {"omega_max": 1.0, "qubits": QUBITS}}]
    mine = services.create_batch(member.project, member.user, sequence_builder=SEQUENCE, jobs=jobs, tags=["workload"])
    drain(emu)
    assert services.rebatch(Batch.objects.get(pk=mine.pk), by=member.user).tags == ["workload"], (
        "a user's own tag stays"
    )
