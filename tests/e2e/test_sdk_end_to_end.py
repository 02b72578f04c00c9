"""Issue 3's slice: the real SDK submits to a live Tweezer and a real worker runs the jobs."""

from __future__ import annotations

from typing import Any

import pytest
from pasqal_cloud.errors import BatchCreationError, BatchFetchingError

from batches.models import Batch
from jobs.models import Job
from portal.models import CreditTransaction
from tests.sequences import seed_mappable_sequence


def test_sdk_creates_a_closed_batch_and_both_jobs_end_done(sdk, worker):
    jobs: list[dict[str, Any]] = [
        {"runs": 40, "variables": {"omega_max": 1.0, "qubits": {"q0": 1, "q1": 5, "q2": 7}}},
        {"runs": 60, "variables": {"omega_max": 2.0, "qubits": {"q0": 2, "q1": 4, "q2": 8, "q3": 26}}},
    ]
    batch = sdk.create_batch(seed_mappable_sequence(), jobs, device_type="EMU_FREE", wait=True)

    assert batch.status == "DONE"
    assert [job.status for job in batch.ordered_jobs] == ["DONE", "DONE"]
    for job, spec in zip(batch.ordered_jobs, jobs, strict=True):
        assert sum(job.result.values()) == spec["runs"]
        assert all(len(bits) == len(spec["variables"]["qubits"]) for bits in job.result)
    fetched = sdk.get_batch(batch.id)
    assert fetched.status == "DONE"
    assert fetched.jobs_count_per_status["DONE"] == 2


def test_sdk_with_a_wrong_token_gets_401(sdk_for, member, devices, live_server):
    bad = sdk_for(member, token="twz_not-a-real-token")
    with pytest.raises(BatchCreationError) as caught:
        bad.create_batch(
            seed_mappable_sequence(),
            [{"runs": 10, "variables": {"omega_max": 1, "qubits": {"q0": 1}}}],
            device_type="EMU_FREE",
        )
    assert "401" in str(caught.value)


def test_another_projects_batch_is_404(sdk, sdk_for, make_member, worker):
    batch = sdk.create_batch(
        seed_mappable_sequence(),
        [{"runs": 10, "variables": {"omega_max": 1, "qubits": {"q0": 1}}}],
        device_type="EMU_FREE",
    )
    stranger = sdk_for(make_member())
    with pytest.raises(BatchFetchingError) as caught:
        stranger.get_batch(batch.id)
    assert "404" in str(caught.value)


def test_malformed_sequence_is_refused_with_400_and_nothing_is_created(sdk, live_server):
    ledger_before = CreditTransaction.objects.count()
    with pytest.raises(BatchCreationError) as caught:
        sdk.create_batch('{"not": "a sequence"', [{"runs": 10}], device_type="EMU_FREE")
    message = str(caught.value)
    assert "400" in message and "sequence_builder" in message and "not valid JSON" in message
    assert Batch.objects.count() == 0 and Job.objects.count() == 0
    assert CreditTransaction.objects.count() == ledger_before
