"""Batch methods of the real SDK against a live Tweezer: one test per method (or per pair)."""

from __future__ import annotations

import inspect
from datetime import timedelta

import pytest
from django.utils import timezone
from pasqal_cloud.device.configuration import EmuFreeConfig
from pasqal_cloud.errors import (
    BatchCancellingError,
    BatchClosingError,
    BatchCreationError,
    BatchFetchingError,
    BatchSetTagsError,
    JobCreationError,
    RebatchError,
)
from pasqal_cloud.utils.constants import BatchStatus
from pasqal_cloud.utils.filters import BatchFilters, PaginationParams
from pulser import Pulse, Register, Sequence
from pulser.json.abstract_repr.deserializer import deserialize_device

from backends.models import Device
from batches.models import Batch
from jobs.models import Job
from portal.models import CreditTransaction
from tests.sdk.helpers import omega_sequence, wait_batch_done, wait_batch_settled

JOB = {"runs": 10, "variables": {"omega_max": 1.5}}


@pytest.fixture
def parked(devices):
    """EMU_FREE in maintenance: batches are accepted but stay PENDING (nothing runs)."""
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    return devices


def test_create_closed_batch_echoes_tags_webhook_configuration_and_backend_configuration(sdk, parked, live_server):
    sdk.webhook = f"{live_server.url}/hooks/results"
    backend_configuration = '{"observables": [], "default_evaluation_times": [1.0]}'
    batch = sdk.create_batch(
        omega_sequence(),
        [JOB, {"runs": 20, "variables": {"omega_max": 2.0}}],
        device_type="EMU_FREE",
        configuration=EmuFreeConfig(with_noise=True),
        backend_configuration=backend_configuration,
        tags=["rabi", "scan"],
    )
    assert batch.open is False and batch.complete is True and batch.status == "PENDING"
    assert batch.tags == ["rabi", "scan"] and batch.webhook == sdk.webhook
    assert batch.configuration.with_noise is True
    assert batch.backend_configuration == backend_configuration
    assert batch.project_id == str(sdk_project(sdk)) and batch.jobs_count == 2
    assert [(j.runs, j.variables) for j in batch.ordered_jobs] == [(10, JOB["variables"]), (20, {"omega_max": 2.0})]
    stored = Batch.objects.get(pk=batch.id)
    assert stored.configuration["with_noise"] is True and stored.webhook == sdk.webhook  # type: ignore[index]


def sdk_project(sdk):
    return sdk.project_id


def test_create_open_batch_with_no_job(sdk, parked):
    batch = sdk.create_batch(omega_sequence(), [], open=True, device_type="EMU_FREE")
    assert batch.open is True and batch.jobs_count == 0 and batch.ordered_jobs == []


def test_device_type_none_is_taken_from_the_sequences_device(sdk, parked):
    Device.objects.filter(name="EMU_SV").update(status=Device.Status.MAINTENANCE)
    emu_sv = deserialize_device(Device.objects.get(name="EMU_SV").specs)
    seq = Sequence(Register.rectangle(1, 2, spacing=6, prefix="q"), emu_sv)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(Pulse.ConstantPulse(duration=100, amplitude=1, detuning=0, phase=0), "rydberg")
    batch = sdk.create_batch(seq.to_abstract_repr(), [{"runs": 5}])
    assert batch.device_type == "EMU_SV"
    assert Batch.objects.get(pk=batch.id).device.name == "EMU_SV"


def test_get_batch_returns_sequence_builder_and_exact_status_counts(sdk, parked):
    sequence = omega_sequence()
    batch = sdk.create_batch(sequence, [JOB] * 3, device_type="EMU_FREE")
    Job.objects.filter(batch_id=batch.id, order=0).update(status="DONE")
    fetched = sdk.get_batch(batch.id)
    assert fetched.sequence_builder == sequence
    assert fetched.jobs_count_per_status == {"PENDING": 2, "RUNNING": 0, "DONE": 1, "ERROR": 0, "CANCELED": 0}
    if hasattr(sdk, "get_batch_status"):  # pasqal-cloud >= 0.24 (GET /api/v1/batches/{id}/status)
        assert sdk.get_batch_status(batch.id) == BatchStatus.PENDING
        assert sdk._get_batch_status(batch.id)["jobs_count_per_status"]["PENDING"] == 2


def test_close_an_open_batch_then_adding_jobs_is_409_with_a_clear_message(sdk, parked):
    batch = sdk.create_batch(omega_sequence(), [JOB], open=True, device_type="EMU_FREE")
    batch.add_jobs([JOB, JOB])
    assert batch.jobs_count == 3 and [j.variables for j in batch.ordered_jobs] == [JOB["variables"]] * 3
    closed = sdk.close_batch(batch.id)
    assert closed.open is False
    assert sdk.close_batch(batch.id).open is False  # rule 6: close is idempotent
    with pytest.raises(JobCreationError) as caught:
        sdk.add_jobs(batch.id, [JOB])
    assert f"409: Batch {batch.id} is closed: jobs can no longer be added." in str(caught.value)
    assert Job.objects.filter(batch_id=batch.id).count() == 3


def test_cancel_a_batch_refunds_and_a_second_cancel_is_409(sdk, parked, member):
    batch = sdk.create_batch(omega_sequence(), [JOB] * 2, device_type="EMU_FREE")
    balance = member.project.__class__.objects.get(pk=member.project_id).balance
    batch.cancel()
    assert batch.status == "CANCELED"
    assert {j.status for j in sdk.get_batch(batch.id).ordered_jobs} == {"CANCELED"}
    assert member.project.__class__.objects.get(pk=member.project_id).balance == balance + 20
    with pytest.raises(BatchCancellingError) as caught:
        batch.cancel()
    assert "409" in str(caught.value) and "CANCELED" in str(caught.value)


def test_cancel_batches_cancels_many_and_reports_the_others(sdk, sdk_for, make_member, parked):
    one = sdk.create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
    two = sdk.create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
    done = sdk.create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
    Batch.objects.filter(pk=done.id).update(status="DONE")
    foreign = sdk_for(make_member()).create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
    response = sdk.cancel_batches([one.id, two.id, done.id, foreign.id])
    assert sorted(b.id for b in response.batches) == sorted([one.id, two.id])
    assert {b.status for b in response.batches} == {"CANCELED"}
    errors = {str(key): reason for key, reason in response.errors.items()}  # the SDK parses keys as UUIDs
    assert set(errors) == {done.id, foreign.id}
    assert "DONE" in errors[done.id] and "not found" in errors[foreign.id]
    assert Batch.objects.get(pk=foreign.id).status == "PENDING"


def test_add_jobs_to_an_open_batch_with_wait(sdk, worker):
    batch = sdk.create_batch(omega_sequence(), [], open=True, device_type="EMU_FREE")
    jobs = [JOB, {"runs": 30, "variables": {"omega_max": 3.0}}]
    if "wait" in inspect.signature(sdk.add_jobs).parameters:
        updated = sdk.add_jobs(batch.id, jobs, wait=True)
    else:  # pasqal-cloud 0.22: sdk.add_jobs has no `wait` (batch.add_jobs has)
        sdk.add_jobs(batch.id, jobs)
        wait_batch_settled(sdk, batch.id)
        updated = sdk.get_batch(batch.id)
    assert updated.jobs_count_per_status["DONE"] == 2
    assert [sum(j.result.values()) for j in updated.ordered_jobs] == [10, 30]
    batch.close()
    assert wait_batch_done(sdk, batch.id).status == "DONE"


def test_rebatch_an_open_batch_is_409_and_unmatched_filters_are_400(sdk, parked):
    from pasqal_cloud.utils.filters import RebatchFilters

    batch = sdk.create_batch(omega_sequence(), [JOB], open=True, device_type="EMU_FREE")
    with pytest.raises(RebatchError) as caught:
        sdk.rebatch(batch.id)
    assert "409" in str(caught.value) and "still open" in str(caught.value)
    batch.close()
    with pytest.raises(RebatchError) as caught:
        sdk.rebatch(batch.id, RebatchFilters(min_runs=1000))
    assert "400" in str(caught.value) and "nothing to rebatch" in str(caught.value)


def test_set_batch_tags_replaces_them(sdk, parked):
    batch = sdk.create_batch(omega_sequence(), [JOB], device_type="EMU_FREE", tags=["old"])
    tagged = sdk.set_batch_tags(batch.id, ["new", "calibration"])
    assert tagged.tags == ["new", "calibration"]
    batch.set_tags([])
    assert batch.tags == [] and Batch.objects.get(pk=batch.id).tags == []
    with pytest.raises(BatchSetTagsError) as caught:
        sdk.set_batch_tags(batch.id, ["x" * 101])
    assert "400" in str(caught.value)


def test_get_batches_with_batch_filters_and_pagination(sdk, sdk_for, make_member, member, parked):
    Device.objects.filter(name="EMU_SV").update(status=Device.Status.MAINTENANCE)
    closed = sdk.create_batch(omega_sequence(), [JOB], device_type="EMU_FREE", tags=["alpha"])
    opened = sdk.create_batch(omega_sequence(), [JOB], device_type="EMU_FREE", open=True, tags=["beta"])
    on_sv = sdk.create_batch(omega_sequence(), [JOB], device_type="EMU_SV")
    on_sv.cancel()
    sdk_for(make_member()).create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")  # never listed

    def ids(**filters):
        page = sdk.get_batches(filters=BatchFilters(**filters))
        return {b.id for b in page.results}

    everything = sdk.get_batches()
    assert everything.total == 3 and [b.id for b in everything.results] == [on_sv.id, opened.id, closed.id]
    assert ids(open=True) == {opened.id} and ids(open=False) == {closed.id, on_sv.id}
    assert ids(tag="alpha") == {closed.id}
    assert ids(device_type="EMU_SV") == {on_sv.id}
    assert ids(status=[BatchStatus.CANCELED]) == {on_sv.id}
    assert ids(status=[BatchStatus.PENDING, BatchStatus.CANCELED]) == {closed.id, opened.id, on_sv.id}
    assert ids(id=[closed.id, opened.id]) == {closed.id, opened.id}
    assert ids(project_id=str(member.project_id)) == {closed.id, opened.id, on_sv.id}
    assert ids(user_id=[str(member.user_id)]) == {closed.id, opened.id, on_sv.id}
    assert ids(queue_priority="MEDIUM") == {closed.id, opened.id, on_sv.id}
    assert ids(start_date=timezone.now() + timedelta(minutes=5)) == set()
    assert ids(end_date=timezone.now() + timedelta(minutes=5)) == {closed.id, opened.id, on_sv.id}
    second = sdk.get_batches(pagination_params=PaginationParams(offset=1, limit=1))
    assert second.total == 3 and second.offset == 1 and [b.id for b in second.results] == [opened.id]


def test_refusals_are_json_errors_the_sdk_shows_verbatim(sdk, sdk_for, make_member, parked):
    poor = sdk_for(make_member(credits=5))
    with pytest.raises(BatchCreationError) as caught:
        poor.create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
    message = str(caught.value)
    assert "402: Not enough credits: this submission costs 10 credits" in message and "has 5" in message
    assert not CreditTransaction.objects.filter(kind="CHARGE").exists()
    with pytest.raises(BatchCreationError) as caught:
        sdk.create_batch(omega_sequence(), [JOB], device_type="NOT_A_DEVICE")
    assert "400: Unknown device_type 'NOT_A_DEVICE'" in str(caught.value)
    with pytest.raises(BatchFetchingError) as caught:  # type: ignore[assignment]  # name reused
        sdk.get_batch("00000000-0000-4000-8000-000000000000")
    assert "404" in str(caught.value)
    with pytest.raises(BatchClosingError):
        sdk.close_batch("00000000-0000-4000-8000-000000000000")


def test_wait_true_on_create_ends_when_jobs_are_terminal(sdk, worker):
    batch = sdk.create_batch(omega_sequence(), [JOB, JOB], device_type="EMU_FREE", wait=True)
    assert batch.jobs_count_per_status["DONE"] == 2
    assert all(sum(j.result.values()) == 10 for j in batch.ordered_jobs)
    wait_batch_settled(sdk, batch.id)
