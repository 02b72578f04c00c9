"""Job methods of the real SDK against a live Tweezer, and the signed results link."""

from __future__ import annotations

import pytest
import requests
from pasqal_cloud.errors import JobCancellingError, JobFetchingError
from pasqal_cloud.utils.constants import JobStatus
from pasqal_cloud.utils.filters import CancelJobFilters, JobFilters

from backends.models import Device
from jobs.models import Job
from tests.sdk.helpers import omega_sequence, wait_batch_done

JOB = {"runs": 10, "variables": {"omega_max": 1.5}}


@pytest.fixture
def parked(devices):
    """EMU_FREE in maintenance: batches are accepted but stay PENDING (nothing runs)."""
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    return devices


@pytest.fixture
def done_batch(sdk, worker):
    """One closed batch of 2 jobs (a shared sequence, and one job with its own sequence), DONE."""
    own = omega_sequence(3)
    batch = sdk.create_batch(omega_sequence(), [JOB, {"runs": 25, "sequence": _fixed(3)}], device_type="EMU_FREE")
    return wait_batch_done(sdk, batch.id), own


def _fixed(n_atoms: int) -> str:
    from pulser import Pulse, Register, Sequence
    from pulser.devices import MockDevice

    seq = Sequence(Register.rectangle(1, n_atoms, spacing=6, prefix="q"), MockDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(Pulse.ConstantPulse(duration=100, amplitude=2, detuning=0, phase=0), "rydberg")
    return str(seq.to_abstract_repr())


def test_get_job_status_sequence_and_results_of_a_done_batch(sdk, done_batch, settings):
    batch, _ = done_batch
    first, second = batch.ordered_jobs
    if hasattr(sdk, "get_job_status"):  # pasqal-cloud >= 0.24 (GET /api/v1/jobs/{id}/status)
        assert sdk.get_job_status(first.id) == JobStatus.DONE
    job = sdk.get_job(second.id)
    assert job.sequence == _fixed(3) and job.runs == 25 and job.batch_id == batch.id
    assert sdk.get_job(first.id).sequence is None  # it uses the batch's sequence_builder
    assert sdk.get_job(first.id, wait=True).status == "DONE"

    full = job.full_result
    assert set(full) >= {"counter", "raw", "serialised_results"}
    assert sum(full["counter"].values()) == 25 and len(full["raw"]) == 25
    assert {len(bits) for bits in full["counter"]} == {3}
    assert job.result == full["counter"]
    assert sum(sdk.get_job(first.id).result.values()) == 10


def test_results_link_is_self_authorising_and_refuses_tampering_and_expiry(
    sdk, done_batch, settings, member, live_server
):
    batch, _ = done_batch
    job_id = batch.ordered_jobs[0].id
    answer = requests.get(
        f"{live_server.url}/core/api/v1/jobs/{job_id}/results_link",
        headers={"Authorization": f"Bearer {member.token}"},
        timeout=10,
    )
    link = answer.json()["data"]["results_link"]
    assert link.startswith(live_server.url + "/")
    fetched = requests.get(link, timeout=10)  # no Authorization header, like the SDK
    assert fetched.status_code == 200 and sum(fetched.json()["counter"].values()) == 10

    token = link.rsplit("/", 1)[1]
    other = batch.ordered_jobs[1].id
    forged = link.replace(token, token.replace(job_id, other))
    assert requests.get(forged, timeout=10).status_code == 404
    flipped = link[:-1] + ("A" if link[-1] != "A" else "B")
    response = requests.get(flipped, timeout=10)
    assert response.status_code == 404 and response.json()["status"] == "fail"

    settings.RESULTS_LINK_MAX_AGE = -1  # every link is already expired
    expired = requests.get(link, timeout=10)
    assert expired.status_code == 403 and "expired" in expired.json()["message"]


def test_a_job_without_results_has_no_link(sdk, parked):
    batch = sdk.create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
    job = batch.ordered_jobs[0]
    assert job.full_result is None and job.result is None


def test_cancel_job_refunds_and_canceling_a_done_job_is_409(sdk, done_batch, parked):
    batch, _ = done_batch
    with pytest.raises(JobCancellingError) as caught:
        sdk.cancel_job(batch.ordered_jobs[0].id)
    assert f"409: Job {batch.ordered_jobs[0].id} is DONE: only a PENDING job can be canceled." in str(caught.value)
    pending = sdk.create_batch(omega_sequence(), [JOB, JOB], device_type="EMU_FREE")
    canceled = sdk.cancel_job(pending.ordered_jobs[0].id)
    assert canceled.status == "CANCELED"
    job = pending.ordered_jobs[1]
    job.cancel()
    assert job.status == "CANCELED"
    assert sdk.get_batch(pending.id).jobs_count_per_status["CANCELED"] == 2


def test_cancel_jobs_with_cancel_job_filters(sdk, parked):
    batch = sdk.create_batch(
        omega_sequence(), [{"runs": r, "variables": {"omega_max": 1.0}} for r in (2, 5, 8, 11)], open=True
    )
    jobs = batch.ordered_jobs
    Job.objects.filter(pk=jobs[3].id).update(status="DONE")
    response = sdk.cancel_jobs(batch.id, CancelJobFilters(min_runs=5, max_runs=9))
    assert sorted(j.runs for j in response.jobs) == [5, 8] and response.errors == {}
    response = sdk.cancel_jobs(batch.id, CancelJobFilters(id=[jobs[0].id, jobs[3].id]))
    assert [j.id for j in response.jobs] == [jobs[0].id]
    assert {str(k) for k in response.errors} == {jobs[3].id}
    response = sdk.cancel_jobs(batch.id)  # no filter: every cancellable job; none is left
    assert response.jobs == [] and {str(k) for k in response.errors} == {j.id for j in jobs}


def test_ordered_jobs_pages_through_more_than_100_jobs_with_offset_end(sdk, parked, settings):
    settings.BATCH_JOBS_INLINE_MAX = 0  # never inline: the SDK must page with offset=end
    batch = sdk.create_batch(omega_sequence(), [{"runs": 1 + i, "variables": {"omega_max": 1}} for i in range(130)])
    fetched = sdk.get_batch(batch.id)
    assert [j.runs for j in fetched.ordered_jobs] == list(range(1, 131))
    page = sdk.get_jobs(filters=JobFilters(batch_id=batch.id, min_runs=100))
    assert page.total == 31 and len(page.results) == 31
    assert sdk.get_jobs(filters=JobFilters(batch_id=batch.id, errors=True)).total == 0
    assert sdk.get_jobs(filters=JobFilters(batch_id=batch.id, errors=False)).total == 130


def test_another_projects_job_is_404(sdk, sdk_for, make_member, parked):
    batch = sdk.create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
    stranger = sdk_for(make_member())
    with pytest.raises(JobFetchingError) as caught:
        stranger.get_job(batch.ordered_jobs[0].id)
    assert "404" in str(caught.value)
    with pytest.raises(JobCancellingError):
        stranger.cancel_job(batch.ordered_jobs[0].id)
    assert stranger.get_jobs().total == 0
