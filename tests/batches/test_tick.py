"""The periodic tick: leases, downed devices, idle open batches, lost messages."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from django.conf import settings
from django.utils import timezone

from backends.models import Device
from batches import lifecycle, runner, scheduler, services, tasks
from batches.models import Batch
from jobs.models import Job, JobStatus
from portal import credits
from portal.models import CreditTransaction
from tests.batches.conftest import dispatched, jobs_of, run_dispatched


def after_lease(seconds: float = 1) -> time_machine.travel:
    return time_machine.travel(timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS + seconds))


def test_tick_requeues_a_job_whose_lease_expired_and_it_runs_again(submit, emu):
    batch = submit(1)
    scheduler.advance(emu.pk)
    (job,) = jobs_of(batch)
    assert runner.claim(str(job.pk), "dead-worker") is not None  # then the worker "dies"

    tasks.tick()
    assert Job.objects.get(pk=job.pk).status == "RUNNING", "a live lease is left alone"
    with after_lease():
        tasks.tick()
        requeued = Job.objects.get(pk=job.pk)
        assert (requeued.status, requeued.lease_owner, requeued.attempts) == ("PENDING", "", 1)
        assert dispatched(emu) == [requeued], "the tick re-sent the job"
        # The dead worker's late answer is fenced out.
        assert not lifecycle.end_job(requeued, "dead-worker", JobStatus.DONE)
        run_dispatched(emu)
    done = Job.objects.get(pk=job.pk)
    assert (done.status, done.attempts) == ("DONE", 2)
    assert Batch.objects.get(pk=batch.pk).status == "DONE"
    assert not CreditTransaction.objects.filter(job=job, kind="REFUND").exists()


def test_tick_gives_up_after_max_attempts_with_error_and_refund(submit, emu, member):
    batch = submit(1, runs=30)
    scheduler.advance(emu.pk)
    (job,) = jobs_of(batch)
    balance = credits.balance_of(member.project)
    now = timezone.now()
    for attempt in range(1, settings.JOB_MAX_ATTEMPTS + 1):
        claimed_at = now + attempt * timedelta(seconds=settings.JOB_LEASE_SECONDS * 2)
        with time_machine.travel(claimed_at, tick=False):
            assert runner.claim(str(job.pk), f"worker-{attempt}") is not None
        with time_machine.travel(claimed_at + timedelta(seconds=settings.JOB_LEASE_SECONDS + 1), tick=False):
            assert scheduler.reap_expired_leases() == 1
    failed = Job.objects.get(pk=job.pk)
    assert failed.status == "ERROR" and failed.attempts == settings.JOB_MAX_ATTEMPTS
    assert "stopped responding" in failed.errors[0]  # type: ignore[index]  # an ERROR job has errors
    assert credits.balance_of(member.project) == balance + 30
    scheduler.advance(emu.pk)
    assert Batch.objects.get(pk=batch.pk).status == "DONE"


def test_tick_does_not_requeue_a_job_whose_lease_was_renewed(submit, emu):
    batch = submit(1)
    scheduler.advance(emu.pk)
    (job,) = jobs_of(batch)
    runner.claim(str(job.pk), "alive")
    with after_lease():
        assert lifecycle.renew_lease(str(job.pk), "alive")
        assert scheduler.reap_expired_leases() == 0
    assert Job.objects.get(pk=job.pk).status == "RUNNING"


def test_an_expired_job_of_a_canceled_batch_ends_error_and_refunded_not_stuck_pending(submit, emu, member):
    batch = submit(2, runs=12)
    scheduler.advance(emu.pk)
    first, _ = jobs_of(batch)
    runner.claim(str(first.pk), "dead-worker")
    services.cancel_batch(batch, by=member.user)
    balance = credits.balance_of(member.project)
    with after_lease():
        tasks.tick()
    assert Job.objects.get(pk=first.pk).status == "ERROR"
    assert credits.balance_of(member.project) == balance + 12
    assert not Job.objects.filter(batch=batch, status__in=["PENDING", "RUNNING"]).exists()


def test_tick_times_out_idle_open_batches(submit, emu):
    batch = submit(1, open=True)
    scheduler.advance(emu.pk)
    run_dispatched(emu)
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.OPEN_BATCH_TIMEOUT + 1)):
        tasks.tick()
    assert Batch.objects.get(pk=batch.pk).status == "TIMED_OUT"


def test_tick_resends_a_dispatched_job_whose_message_was_lost(submit, emu):
    batch = submit(1)
    scheduler.advance(emu.pk)
    (job,) = jobs_of(batch)
    first_sent = Job.objects.get(pk=job.pk).dispatched_at
    tasks.tick()
    assert Job.objects.get(pk=job.pk).dispatched_at == first_sent, "not re-sent too early"
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.JOB_REDISPATCH_SECONDS + 1)):
        tasks.tick()
        assert Job.objects.get(pk=job.pk).dispatched_at > first_sent  # type: ignore[operator]  # dispatched by now


def test_tick_backs_off_resending_a_job_nobody_claims(submit, emu):
    """Each re-send of an unclaimed job waits twice as long: a message queued behind busy
    workers is not duplicated every JOB_REDISPATCH_SECONDS."""
    batch = submit(1)
    scheduler.advance(emu.pk)
    (job,) = jobs_of(batch)
    start, wait = timezone.now(), settings.JOB_REDISPATCH_SECONDS

    def tick_at(seconds: float) -> int:
        with time_machine.travel(start + timedelta(seconds=seconds)):
            tasks.tick()
        return Job.objects.get(pk=job.pk).dispatches

    assert Job.objects.get(pk=job.pk).dispatches == 1
    assert tick_at(wait + 1) == 2  # first re-send after JOB_REDISPATCH_SECONDS
    assert tick_at(2 * wait + 2) == 2, "the second re-send waits 2× as long"
    assert tick_at(3 * wait + 2) == 3
    assert tick_at(6 * wait + 2) == 3, "the third waits 4×"
    assert tick_at(7 * wait + 3) == 4


def test_redispatch_delay_doubles_up_to_its_cap(settings):
    settings.JOB_REDISPATCH_SECONDS, settings.JOB_REDISPATCH_MAX_SECONDS = 30, 600
    delays = [scheduler.redispatch_delay(n).total_seconds() for n in range(8)]
    assert delays == [30, 30, 60, 120, 240, 480, 600, 600]
    assert scheduler.redispatch_delay(10**6).total_seconds() == 600


def test_a_requeued_job_is_sent_again_at_once(submit, emu):
    """A job whose lease expired starts its back-off afresh: it is sent on the reaping tick."""
    batch = submit(1)
    scheduler.advance(emu.pk)
    (job,) = jobs_of(batch)
    Job.objects.filter(pk=job.pk).update(dispatches=5)
    assert runner.claim(str(job.pk), "dead-worker") is not None
    with after_lease():
        tasks.tick()
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING and job.dispatches == 1 and job.dispatched_at is not None


def test_tick_fails_batches_on_a_device_down_too_long_and_refunds_pending_jobs(submit, emu, member):
    running = submit(2, runs=5)
    queued = submit(1, runs=5)
    scheduler.advance(emu.pk)
    balance = credits.balance_of(member.project)
    Device.objects.filter(pk=emu.pk).update(status="DOWN", status_reason="cryostat", status_changed_at=timezone.now())

    tasks.tick()
    assert Batch.objects.get(pk=running.pk).status == "RUNNING", "not down for long enough yet"
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.DEVICE_DOWN_FAIL_AFTER + 1)):
        tasks.tick()
    for batch in (running, queued):
        assert Batch.objects.get(pk=batch.pk).status == "ERROR"
        assert {j.status for j in jobs_of(batch)} == {"ERROR"}
        assert "down since" in jobs_of(batch)[0].errors[0]  # type: ignore[index]  # an ERROR job has errors
    assert credits.balance_of(member.project) == balance + 15
