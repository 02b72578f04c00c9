"""Workload methods of the real SDK (create_workload, get_workload, cancel_workload) against a live Tweezer."""

from __future__ import annotations

import pytest
from pasqal_cloud.errors import WorkloadCancellingError, WorkloadCreationError, WorkloadFetchingError

from backends.models import Device
from batches.models import Batch, Workload
from jobs.models import Job
from portal.models import CreditTransaction, Project
from tests.sdk.helpers import omega_sequence

CONFIG = {"sequence": omega_sequence(), "runs": 10, "variables": {"omega_max": 1.5}}


@pytest.fixture
def parked(devices):
    """EMU_FREE in maintenance: workloads are accepted but stay PENDING (nothing runs)."""
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    return devices


def _balance(member) -> int:
    return Project.objects.get(pk=member.project_id).balance


def test_create_workload_with_wait_runs_to_done_and_the_sdk_downloads_its_result(sdk, worker, member):
    before = _balance(member)
    workload = sdk.create_workload("pulser", "EMU_FREE", CONFIG, wait=True)

    assert workload.status == "DONE" and workload.backend == "EMU_FREE" and workload.workload_type == "pulser"
    assert workload.project_id == str(member.project_id) and workload.config == CONFIG
    assert workload.errors is None and workload.start_timestamp and workload.end_timestamp
    assert set(workload.result) >= {"counter", "raw", "serialised_results"}
    assert sum(workload.result["counter"].values()) == 10 and len(workload.result["raw"]) == 10
    assert {len(bits) for bits in workload.result["counter"]} == {2}
    assert _balance(member) == before - 10  # 10 runs x 1 credit on EMU_FREE, charged once

    fetched = sdk.get_workload(workload.id)
    assert fetched.status == "DONE" and fetched.result["counter"] == workload.result["counter"]
    assert fetched.result_link and "/results/" in fetched.result_link


def test_get_workload_of_a_pending_one_has_no_result_link(sdk, parked):
    created = sdk.create_workload("pulser", "EMU_FREE", CONFIG)
    fetched = sdk.get_workload(created.id)
    assert fetched.status == "PENDING" and fetched.result_link is None and fetched.result is None
    assert fetched.config == CONFIG and fetched.created_at == created.created_at
    # Its batch is recognisable: one closed job, tagged `workload`.
    batch = Batch.objects.get(workload__pk=created.id)
    assert batch.tags == ["workload"] and batch.open is False and batch.jobs.count() == 1


def test_cancel_a_pending_workload_refunds_it_in_the_ledger(sdk, parked, member):
    workload = sdk.create_workload("pulser", "EMU_FREE", CONFIG)
    before = _balance(member)
    workload.cancel()
    assert workload.status == "CANCELED"
    assert sdk.get_workload(workload.id).status == "CANCELED"
    job = Job.objects.get(batch__workload__pk=workload.id)
    refund = CreditTransaction.objects.get(job=job, kind="REFUND")
    assert refund.amount == 10 and _balance(member) == before + 10
    with pytest.raises(WorkloadCancellingError) as caught:
        sdk.cancel_workload(workload.id)
    assert f"409: Workload {workload.id} is CANCELED: it can no longer be canceled." in str(caught.value)
    assert CreditTransaction.objects.filter(job=job, kind="REFUND").count() == 1


def test_cancel_a_done_workload_is_a_cancelling_error_with_our_message(sdk, worker):
    workload = sdk.create_workload("pulser", "EMU_FREE", CONFIG, wait=True)
    assert workload.status == "DONE"
    with pytest.raises(WorkloadCancellingError) as caught:
        sdk.cancel_workload(workload.id)
    assert f"409: Workload {workload.id} is DONE: it can no longer be canceled." in str(caught.value)
    assert sdk.get_workload(workload.id).status == "DONE"


@pytest.mark.parametrize(
    ("workload_type", "backend", "config", "expected"),
    [
        ("pulser", "EMU_FREE", {**CONFIG, "runs": 0}, "400: config.runs must be a whole number of shots from 1 to"),
        ("pulser", "EMU_FREE", {"sequence": CONFIG["sequence"]}, "400: config.runs is required"),
        ("pulser", "EMU_FREE", {**CONFIG, "variables": {}}, "400: config.variables: missing variable 'omega_max'"),
        ("qaoa", "EMU_FREE", CONFIG, "400: Unknown workload_type 'qaoa'. Supported workload types: 'pulser'."),
        ("pulser", "QPU_9000", CONFIG, "400: Unknown backend 'QPU_9000'. Available backends: EMU_FREE,"),
    ],
    ids=["runs-zero", "runs-missing", "variable-missing", "unknown-type", "unknown-backend"],
)
def test_a_bad_workload_is_a_creation_error_naming_the_field_and_nothing_is_created_or_charged(
    sdk, parked, member, workload_type, backend, config, expected
):
    before = _balance(member)
    with pytest.raises(WorkloadCreationError) as caught:
        sdk.create_workload(workload_type, backend, config)
    assert expected in str(caught.value)
    assert not Workload.objects.exists() and not Batch.objects.exists()
    assert _balance(member) == before


def test_a_workload_the_project_cannot_pay_for_is_402_with_price_and_balance(sdk_for, make_member, parked):
    poor = make_member(credits=5)
    with pytest.raises(WorkloadCreationError) as caught:
        sdk_for(poor).create_workload("pulser", "EMU_FREE", CONFIG)
    message = str(caught.value)
    assert "402: Not enough credits: this submission costs 10 credits" in message and "has 5" in message
    assert not Workload.objects.exists() and _balance(poor) == 5


def test_another_projects_workload_is_404_on_get_and_cancel_and_its_project_on_create(
    sdk, sdk_for, make_member, parked
):
    workload = sdk.create_workload("pulser", "EMU_FREE", CONFIG)
    stranger = sdk_for(make_member())
    with pytest.raises(WorkloadFetchingError) as caught:
        stranger.get_workload(workload.id)
    assert f"404: Workload {workload.id} not found." in str(caught.value)
    with pytest.raises(WorkloadCancellingError) as caught_cancel:
        stranger.cancel_workload(workload.id)
    assert "404" in str(caught_cancel.value)
    stranger.project_id = sdk.project_id  # a project the stranger is not a member of
    with pytest.raises(WorkloadCreationError) as caught_create:
        stranger.create_workload("pulser", "EMU_FREE", CONFIG)
    assert "404: Project" in str(caught_create.value)
    assert sdk.get_workload(workload.id).status == "PENDING" and Workload.objects.count() == 1
