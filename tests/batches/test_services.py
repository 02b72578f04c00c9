"""Batch services beyond the numbered rules: conflicts, rebatch filters, retry, refunds by cause."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest
import time_machine
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from batches import lifecycle, runner, scheduler, services
from batches.models import Batch
from jobs.models import Job, JobStatus
from portal import credits
from portal.errors import Conflict, InvalidInput, NotFound
from portal.models import CreditTransaction
from tests.batches.conftest import SEQUENCE, drain, job_spec, jobs_of


def test_cancel_of_a_terminal_job_or_batch_is_a_409_conflict_with_a_clear_message(submit, emu, member, client):
    batch = submit(1)
    drain(emu)
    (job,) = jobs_of(batch)
    with pytest.raises(Conflict) as caught:
        services.cancel_job(job, by=member.user)
    assert caught.value.status_code == 409
    assert caught.value.message == f"Job {job.pk} is DONE: only a PENDING job can be canceled."

    auth = {"HTTP_AUTHORIZATION": f"Bearer {member.token}"}
    response = client.patch(f"/core/api/v2/jobs/{job.pk}/cancel", **auth)
    assert response.status_code == 409
    assert "DONE: only a PENDING job can be canceled" in response.json()["message"]
    response = client.patch(f"/core/api/v2/batches/{batch.pk}/cancel", **auth)
    assert response.status_code == 409
    assert "DONE: it can no longer be canceled" in response.json()["message"]
    assert Batch.objects.get(pk=batch.pk).status == "DONE"
    assert Job.objects.get(pk=job.pk).status == "DONE"


def test_cancel_jobs_cancels_the_pending_ones_and_reports_the_others(submit, emu, member):
    batch = submit(3)
    scheduler.advance(emu.pk)
    first, second, third = jobs_of(batch)
    runner.claim(str(first.pk), "w")
    report, errors = services.cancel_jobs(batch, batch.jobs.all(), by=member.user)
    assert sorted(j.pk for j in report.canceled) == sorted([second.pk, third.pk])
    assert errors == {str(first.pk): f"Job {first.pk} is RUNNING: only a PENDING job can be canceled."}
    assert report.refunded == 20


def test_counts_and_spent_agree_with_the_jobs_and_the_ledger(submit, emu, member):
    """The counters kept on the batch row, against the ORM's own aggregates of its jobs and ledger."""
    batch = submit(4, open=True)
    other = submit(2)  # another batch's jobs and charges must not count
    scheduler.advance(emu.pk)
    first, second, third, _ = jobs_of(batch)
    runner.claim(str(first.pk), "w")
    services.cancel_job(third, by=member.user)  # refunded
    batch.refresh_counters()
    other.refresh_counters()
    counts, spent = batch.job_counts, batch.credits_spent
    assert counts == {"PENDING": 2, "RUNNING": 1, "DONE": 0, "ERROR": 0, "CANCELED": 1}
    ledger = CreditTransaction.objects.filter(batch=batch).aggregate(s=Sum("amount"))["s"]
    assert spent == -ledger == 30
    assert (other.job_counts, other.credits_spent) == (
        {"PENDING": 2, "RUNNING": 0, "DONE": 0, "ERROR": 0, "CANCELED": 0},
        20,
    )
    assert counts == {s: batch.jobs.filter(status=s).count() for s in JobStatus.values}


def test_a_closed_batch_is_done_in_the_transaction_that_ends_its_last_job(submit, emu, member):
    """Rule 3 without waiting for the next `advance`: the worker's end of the last job ends the batch."""
    closed, still_open, two = submit(1), submit(1, open=True), submit(2)
    emu.slots = 3
    emu.save(update_fields=["slots"])
    scheduler.advance(emu.pk)
    for batch in (closed, still_open, two):
        job = jobs_of(batch)[0]
        claimed = runner.claim(str(job.pk), "w")
        assert claimed is not None
        assert lifecycle.end_job(claimed, "w", JobStatus.DONE)
    statuses = dict(Batch.objects.values_list("pk", "status"))
    assert statuses[closed.pk] == "DONE" and Batch.objects.get(pk=closed.pk).end_datetime is not None
    assert statuses[still_open.pk] == "RUNNING"  # an open batch waits for more jobs (rule 5)
    assert statuses[two.pk] == "RUNNING"  # a job is still pending
    assert not lifecycle.finish_batch(closed.pk, now=timezone.now())  # once only


def test_get_batch_for_finds_only_the_batches_of_the_users_projects(submit, member, make_member):
    """Every batch endpoint starts here: another project's batch, or a malformed id, is a 404."""
    batch = submit(2, open=True)
    got = services.get_batch_for(member.user, batch.pk)
    with CaptureQueriesContext(connection) as queries:
        names = (got.device.name, got.project.name, got.user.username)  # no query: joined
    assert not queries.captured_queries and got.pk == batch.pk and names[2] == member.user.username
    stranger = make_member()
    for user, key in ((stranger.user, batch.pk), (member.user, "not-a-uuid"), (member.user, uuid4())):
        with pytest.raises(NotFound):
            services.get_batch_for(user, key)


def _rebatch_source(submit, emu):
    """A closed batch of 4 DONE/ERROR jobs with runs 10, 20, 30, 40 created a day apart."""
    start = timezone.now() - timedelta(days=10)
    with time_machine.travel(start, tick=False):
        batch = submit(1, runs=10)
    for day, runs in ((1, 20), (2, 30), (3, 40)):
        with time_machine.travel(start + timedelta(days=day), tick=False):
            Job.objects.create(
                batch=batch,
                project=batch.project,
                user=batch.user,
                order=day,
                runs=runs,
                variables=job_spec(runs)["variables"],
                price=0,
            )
    Batch.objects.filter(pk=batch.pk).update(jobs_count=4)
    drain(emu)
    Job.objects.filter(batch=batch, runs=30).update(status=JobStatus.ERROR)
    return batch, start


@pytest.mark.parametrize(
    ("filters", "expected_runs"),
    [
        (None, [10, 20, 30, 40]),
        ({"min_runs": 20, "max_runs": 30}, [20, 30]),
        ({"status": ["ERROR"]}, [30]),
        ({"status": ["DONE"], "min_runs": 25}, [40]),
        ("dates", [20, 30]),
        ("ids", [10, 40]),
    ],
)
def test_rebatch_copies_only_the_jobs_matching_the_filters(submit, emu, member, filters, expected_runs):
    batch, start = _rebatch_source(submit, emu)
    if filters == "dates":
        filters = {"start_date": start + timedelta(hours=12), "end_date": start + timedelta(days=2, hours=1)}
    elif filters == "ids":
        filters = {"id": [j.pk for j in jobs_of(batch) if j.runs in (10, 40)]}
    child = services.rebatch(batch, by=member.user, filters=filters)
    assert [j.runs for j in jobs_of(child)] == expected_runs
    assert child.parent_id == batch.pk
    assert CreditTransaction.objects.filter(batch=child, kind="CHARGE").count() == len(expected_runs)


def test_rebatch_with_no_matching_job_is_refused_and_creates_nothing(submit, emu, member):
    batch, _ = _rebatch_source(submit, emu)
    before = Batch.objects.count()
    with pytest.raises(InvalidInput, match="No job of this batch matches"):
        services.rebatch(batch, by=member.user, filters={"min_runs": 1000})
    assert Batch.objects.count() == before


def test_a_plain_add_jobs_from_the_sdk_retry_has_no_parent(submit, emu, member):
    """Rule 10: the SDK's batch.retry arrives as an add-jobs that does not name the job."""
    batch = submit(1, open=True)
    services.add_jobs(batch, [job_spec(10)], by=member.user)
    assert jobs_of(batch)[-1].parent_id is None


def test_a_platform_error_is_refunded_but_a_user_error_is_not(submit, emu, member, devices, settings):
    # User error caught only at run time: a variable the sequence does not declare.
    bad = services.create_batch(
        member.project,
        member.user,
        sequence_builder=SEQUENCE,
        device_type="EMU_FREE",
        jobs=[{"runs": 10, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}, "nonsense": 3}}],
        validate=False,
    )
    drain(emu)
    (job,) = jobs_of(bad)
    assert job.status == "ERROR" and job.errors
    assert not CreditTransaction.objects.filter(job=job, kind="REFUND").exists()

    # Platform failure: the QPU was reported UP but its endpoint does not answer.
    settings.QPU_URL = "http://127.0.0.1:9"
    qpu = devices["FRESNEL"]
    qpu.status = qpu.Status.UP
    qpu.save()
    from tests.sequences import analog_sequence

    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=analog_sequence(2),
        device_type="FRESNEL",
        jobs=[{"runs": 3, "variables": {"omega_max": 1.0}}],
        validate=False,
    )
    balance = credits.balance_of(member.project)
    drain(qpu)
    (job,) = jobs_of(batch)
    assert job.status == "ERROR"
    refund = CreditTransaction.objects.get(job=job, kind="REFUND")
    assert refund.amount == 3 * qpu.price_per_run and refund.user is None
    assert credits.balance_of(member.project) == balance + refund.amount


def test_a_worker_runs_the_next_jobs_of_its_batch_itself_in_order(submit, emu):
    """No broker hop between the jobs of a batch: one run_job message runs them all, in order."""
    batch = submit(3)
    scheduler.advance(emu.pk)
    (first,) = [j for j in jobs_of(batch) if j.dispatched_at]
    runner.execute(str(first.pk))
    jobs = jobs_of(batch)
    assert [j.status for j in jobs] == ["DONE"] * 3
    assert [j.attempts for j in jobs] == [1, 1, 1]
    assert all(jobs[i].end_timestamp <= jobs[i + 1].start_timestamp for i in range(2))  # type: ignore[operator]  # DONE jobs have timestamps
    assert Batch.objects.get(pk=batch.pk).status == "DONE"
