"""Issue 17 with the real SDK, which re-sends a request answered 5xx five times: a number the
platform cannot carry is refused once (one call, nothing created, nothing charged), and a job
stored with one before that check still lists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.signals import request_started
from pasqal_cloud.errors import BatchCreationError, JobCreationError, WorkloadCreationError
from pasqal_cloud.utils.filters import JobFilters

from backends.models import Device
from batches.models import Batch, Workload
from jobs.models import Job
from portal.models import CreditTransaction
from tests.sdk.helpers import omega_sequence

HUGE = 10**30  # what PostgreSQL's jsonb gives back for a stored 1e30


@pytest.fixture
def parked(devices: Any) -> Any:
    """EMU_FREE in maintenance: batches are accepted but stay PENDING (nothing runs)."""
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    return devices


@pytest.fixture
def calls() -> Iterator[list[str]]:
    """`METHOD path` of every request the live server receives."""
    seen: list[str] = []

    def record(sender: Any, environ: dict[str, Any], **kwargs: Any) -> None:
        seen.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")

    request_started.connect(record)
    yield seen
    request_started.disconnect(record)


def _charges() -> int:
    return CreditTransaction.objects.filter(kind="CHARGE").count()


def test_a_variable_of_1e30_is_refused_in_one_call_and_nothing_is_created_or_charged(sdk, parked, calls):
    with pytest.raises(BatchCreationError) as refused:
        sdk.create_batch(omega_sequence(), [{"runs": 3, "variables": {"omega_max": 1e30}}], open=True)
    assert "400" in str(refused.value) and "jobs[0].variables.omega_max: 1e+30 is too large" in str(refused.value)
    assert calls.count("POST /core/api/v1/batches") == 1
    assert Batch.objects.count() == 0 and _charges() == 0


def test_adding_a_job_beyond_64_bits_is_refused_in_one_call_and_the_batch_keeps_its_one_job_and_charge(
    sdk, parked, calls
):
    batch = sdk.create_batch(omega_sequence(), [{"runs": 3, "variables": {"omega_max": 1.0}}], open=True)
    with pytest.raises(JobCreationError) as refused:
        batch.add_jobs([{"runs": 7, "variables": {"omega_max": 2**64}}])
    assert "jobs[0].variables.omega_max" in str(refused.value)
    assert calls.count(f"POST /core/api/v2/batches/{batch.id}/jobs") == 1
    assert Batch.objects.count() == 1 and Job.objects.count() == 1 and _charges() == 1


def test_a_workload_with_a_variable_of_1e30_is_refused_in_one_call_and_creates_nothing(sdk, parked, calls):
    with pytest.raises(WorkloadCreationError):
        sdk.create_workload(
            "pulser", "EMU_FREE", {"sequence": omega_sequence(), "runs": 3, "variables": {"omega_max": 1e30}}
        )
    assert calls.count("POST /core/api/v1/workloads") == 1
    assert Workload.objects.count() == 0 and Batch.objects.count() == 0 and _charges() == 0


def test_a_job_stored_with_an_integer_beyond_64_bits_still_lists_through_the_sdk(sdk, parked, member):
    """Stored before the submission check (jsonb turns a stored 1e30 into 10**30): listing never fails."""
    batch = sdk.create_batch(
        omega_sequence(), [{"runs": 3, "variables": {"omega_max": 1.0}}, {"runs": 4, "variables": {"omega_max": 2.0}}]
    )
    first = Job.objects.get(batch_id=batch.id, order=0)
    Job.objects.filter(pk=first.pk).update(variables={"omega_max": HUGE})
    listed = sdk.get_jobs(filters=JobFilters(project_id=[str(member.project_id)]))
    assert {job.id: job.variables for job in listed.results}[str(first.pk)] == {"omega_max": HUGE}
    assert sdk.get_jobs().total == 2
    ordered = sdk.get_batch(batch.id).ordered_jobs  # GET /jobs?batch_id=…&order_by=creation_order
    assert [job.variables for job in ordered] == [{"omega_max": HUGE}, {"omega_max": 2.0}]
