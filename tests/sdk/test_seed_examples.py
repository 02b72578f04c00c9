"""Every code example of seed/batches-of-jobs.txt, as written there, through the real SDK.

Where the seed uses an argument the current SDK renamed, the test says so and uses both the
seed's spelling (when the SDK still accepts it) and the current one.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from pasqal_cloud import JobFilters, JobStatus, PaginationParams, RebatchFilters
from pulser.devices._device_datacls import BaseDevice
from pulser.json.abstract_repr.deserializer import deserialize_device

from backends.models import Device
from batches.models import Batch
from jobs.models import Job
from tests.sdk.helpers import omega_sequence, seed_mappable_sequence, wait_batch_done, wait_batch_settled


def test_seed_open_batch_create_add_jobs_with_wait_then_close(sdk, worker):
    serialized_sequence = omega_sequence()
    # Create an open batch with 1 job
    batch = sdk.create_batch(serialized_sequence, [{"runs": 50, "variables": {"omega_max": 9.5}}], open=True)
    assert batch.open is True and batch.device_type == "EMU_FREE"  # device_type None: taken from the sequence
    # Add some jobs to it and wait for the jobs to be terminated
    batch.add_jobs(
        [
            {"runs": 50, "variables": {"omega_max": 10}},
            {"runs": 50, "variables": {"omega_max": 10.5}},
        ],
        wait=True,
    )
    assert [job.status for job in batch.ordered_jobs] == ["DONE", "DONE", "DONE"]
    assert [job.variables["omega_max"] for job in batch.ordered_jobs] == [9.5, 10, 10.5]
    assert batch.jobs_count_per_status["DONE"] == 3
    assert batch.status == "RUNNING"  # rule 4: the open batch keeps its slot
    # When you have sent all the jobs to your batch, don't forget to mark it as closed
    batch.close()
    assert batch.open is False
    assert wait_batch_done(sdk, batch.id).status == "DONE"


def test_seed_mappable_register_batch_runs_each_job_on_its_own_register(sdk, worker):
    jobs: list[dict[str, Any]] = [
        {"runs": 100, "variables": {"qubits": {"q0": 1, "q1": 5, "q2": 7}}},
        {"runs": 100, "variables": {"qubits": {"q0": 2, "q1": 4, "q2": 8, "q3": 26}}},
    ]
    # The seed writes `emulator="EMU_FREE"`. pasqal-cloud 0.24 still accepts it but deprecates it
    # (DeprecationWarning "use argument `device_type`"); the current spelling is device_type=.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = sdk.create_batch(seed_mappable_sequence(), jobs, emulator="EMU_FREE")
    assert any("device_type" in str(w.message) for w in caught if w.category is DeprecationWarning)
    current = sdk.create_batch(seed_mappable_sequence(), jobs, device_type="EMU_FREE")
    for created in (batch, current):
        assert created.device_type == "EMU_FREE"
        done = wait_batch_done(sdk, created.id)
        assert done.status == "DONE"
        for job, spec in zip(done.ordered_jobs, jobs, strict=True):
            assert sum(job.result.values()) == 100
            assert {len(bits) for bits in job.result} == {len(spec["variables"]["qubits"])}


def test_seed_get_jobs_examples(sdk, sdk_for, member, make_member, live_server):
    """The seed's get_jobs calls; 300 jobs so that offsets 0/100/200 each return a full page."""
    # The device is in maintenance: the jobs stay PENDING (nothing needs to run), then are canceled.
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    big = sdk.create_batch(omega_sequence(), [{"runs": 1 + i % 20, "variables": {"omega_max": 1}} for i in range(300)])
    big.cancel()
    small = sdk.create_batch(omega_sequence(), [{"runs": 7, "variables": {"omega_max": 1}}] * 2)
    small.cancel()
    errored = Job.objects.filter(batch_id=small.id).order_by("order").first()
    assert errored is not None  # typing: small has two jobs
    Job.objects.filter(pk=errored.pk).update(status="ERROR", errors=["backend failure"])
    # A second member of the project submits too (user_id filter), and a stranger (never visible).
    colleague = make_member(project=member.project)
    theirs = sdk_for(colleague).create_batch(omega_sequence(), [{"runs": 3, "variables": {"omega_max": 1}}])
    theirs.cancel()
    sdk_for(make_member()).create_batch(omega_sequence(), [{"runs": 3, "variables": {"omega_max": 1}}]).cancel()
    total = 303

    # Get the first 100 jobs, no filters applied (newest first)
    first = sdk.get_jobs()
    assert len(first.results) == 100 and first.total == total and first.offset == 0
    created = [j.created_at for j in first.results]
    assert created == sorted(created, reverse=True)
    # Get the first 40 jobs, no filters applied
    assert len(sdk.get_jobs(pagination_params=PaginationParams(limit=40)).results) == 40
    # Get the first 100 jobs from a given batch
    page = sdk.get_jobs(filters=JobFilters(batch_id=small.id))
    assert {j.batch_id for j in page.results} == {small.id} and page.total == 2
    # Get the first 100 jobs in error from a specific project
    page = sdk.get_jobs(filters=JobFilters(status=JobStatus.ERROR, project_id=str(member.project_id)))
    assert [j.id for j in page.results] == [str(errored.pk)]
    # Get two jobs using two ids
    two = [j.id for j in first.results[:2]]
    assert sorted(j.id for j in sdk.get_jobs(filters=JobFilters(id=two)).results) == sorted(two)
    # Get the first 20 cancelled jobs created in a given period from a specific list of users.
    # The seed writes `sdk.get_jobs(limit=20, ...)`: 0.24 has no `limit` argument (TypeError);
    # the current spelling is pagination_params=PaginationParams(limit=20).
    with pytest.raises(TypeError):
        sdk.get_jobs(limit=20, filters=JobFilters(status=JobStatus.CANCELED))
    now = timezone.now()
    page = sdk.get_jobs(
        pagination_params=PaginationParams(limit=20),
        filters=JobFilters(
            status=JobStatus.CANCELED,
            start_date=now - timedelta(hours=1),
            end_date=datetime.now() + timedelta(hours=1),  # naive, as users write it: no offset
            user_id=[str(member.user_id), str(colleague.user_id)],
        ),
    )
    assert len(page.results) == 20 and page.total == total - 1
    page = sdk.get_jobs(filters=JobFilters(status=JobStatus.CANCELED, user_id=[str(colleague.user_id)]))
    assert [j.batch_id for j in page.results] == [theirs.id]
    assert sdk.get_jobs(filters=JobFilters(end_date=now - timedelta(hours=1))).total == 0
    # Get the total number of jobs matching the filters
    assert sdk.get_jobs(pagination_params=PaginationParams(offset=0)).total == total
    # Get the first 300 jobs, no filters applied
    jobs = []
    jobs.extend(sdk.get_jobs(pagination_params=PaginationParams(offset=0)).results)
    jobs.extend(sdk.get_jobs(pagination_params=PaginationParams(offset=100)).results)
    jobs.extend(sdk.get_jobs(pagination_params=PaginationParams(offset=200)).results)
    assert len(jobs) == 300 and len({j.id for j in jobs}) == 300
    assert len(sdk.get_jobs(pagination_params=PaginationParams(offset=300)).results) == 3


def test_seed_rebatch_examples(sdk, worker):
    batch = sdk.create_batch(
        omega_sequence(), [{"runs": r, "variables": {"omega_max": 1.0 + r}} for r in (3, 5, 8, 10, 12)]
    )
    wait_batch_settled(sdk, batch.id)
    batch_id = batch.id
    ordered = sdk.get_batch(batch_id).ordered_jobs
    Job.objects.filter(pk=ordered[1].id).update(status="ERROR", errors=["backend failure"])
    Job.objects.filter(pk=ordered[4].id).update(status="CANCELED")

    def runs_of(new):
        assert new.parent_id == batch_id and new.open is False and new.id != batch_id
        return [j.runs for j in new.ordered_jobs]

    # Retry all jobs from a given batch
    assert runs_of(sdk.rebatch(batch_id)) == [3, 5, 8, 10, 12]
    # Retry the first job of a batch
    assert runs_of(sdk.rebatch(batch_id, RebatchFilters(id=batch.ordered_jobs[0].id))) == [3]
    # Retry all jobs in error
    assert runs_of(sdk.rebatch(batch_id, RebatchFilters(status=JobStatus.ERROR))) == [5]
    # Retry cancelled jobs created in a given period
    start, end = datetime.now() - timedelta(hours=1), datetime.now() + timedelta(hours=1)
    assert runs_of(
        sdk.rebatch(batch_id, RebatchFilters(status=JobStatus.CANCELED, start_date=start, end_date=end))
    ) == [12]
    # Retry jobs that have a run number between 5 and 10
    new = sdk.rebatch(batch_id, RebatchFilters(min_runs=5, max_runs=10))
    assert runs_of(new) == [5, 8, 10]
    assert [j.variables for j in new.ordered_jobs] == [j.variables for j in ordered[1:4]]
    assert Batch.objects.filter(parent_id=batch_id).count() == 5


def test_seed_retry_a_job_in_an_open_batch_without_and_with_wait(sdk, worker):
    batch = sdk.create_batch(omega_sequence(), [{"runs": 10, "variables": {"omega_max": 2.0}}], complete=False)
    assert batch.open is True
    wait_batch_settled(sdk, batch.id)
    batch.refresh()
    original = batch.ordered_jobs[0]

    batch.retry(batch.ordered_jobs[0])
    assert batch.jobs_count == 2
    # Like for adding a job you can choose to wait for results.
    batch.retry(batch.ordered_jobs[0], wait=True)
    assert batch.jobs_count_per_status == {"PENDING": 0, "RUNNING": 0, "DONE": 3, "ERROR": 0, "CANCELED": 0}
    copies = batch.ordered_jobs[1:]
    assert [(j.runs, j.variables) for j in copies] == [(original.runs, original.variables)] * 2
    # The SDK does not name the retried job (spec surprise 10): they arrive as plain added jobs.
    assert all(j.status == "DONE" and sum(j.result.values()) == 10 for j in copies)
    batch.close()


def test_seed_get_device_specs_dict(sdk, sdk_for, member, devices):
    specs = sdk.get_device_specs_dict()
    assert set(specs) == {"EMU_FREE", "EMU_SV", "EMU_MPS", "FRESNEL"}
    for name, text in specs.items():
        device = deserialize_device(text)
        assert isinstance(device, BaseDevice) and device.name == name
