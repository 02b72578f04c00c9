"""DESIGN.md §2: one test per lifecycle rule, named after it, calling the services directly."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from batches import lifecycle, runner, scheduler, services
from batches.models import Batch, Priority
from jobs.models import Job, JobStatus
from portal import credits
from portal.errors import Conflict
from portal.models import CreditTransaction
from tests.batches.conftest import dispatched, drain, jobs_of, run_dispatched


def refunds_of(batch: Batch) -> int:
    return CreditTransaction.objects.filter(batch=batch, kind="REFUND").count()


def test_rule_1_an_idle_slot_takes_the_oldest_pending_batch_highest_priority_first(submit, emu):
    """Rule 1: a slot takes the oldest PENDING batch (priority, then creation time), only when idle."""
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        old_low = submit(priority=Priority.LOW)
    with time_machine.travel(start + timedelta(seconds=1), tick=False):
        old_medium = submit(priority=Priority.MEDIUM)
    with time_machine.travel(start + timedelta(seconds=2), tick=False):
        new_medium = submit(priority=Priority.MEDIUM)

    scheduler.advance(emu.pk)
    statuses = {b.pk: b.status for b in Batch.objects.all()}
    assert statuses == {old_low.pk: "PENDING", old_medium.pk: "RUNNING", new_medium.pk: "PENDING"}

    # The slot is busy: a newer HIGH batch waits, it does not preempt.
    high = submit(priority=Priority.HIGH)
    scheduler.advance(emu.pk)
    assert Batch.objects.get(pk=high.pk).status == "PENDING"
    assert Batch.objects.filter(status="RUNNING").count() == 1

    # Once idle, the slot takes HIGH, then the older MEDIUM, then LOW.
    order = []
    for _ in range(4):
        running = Batch.objects.get(status="RUNNING")
        order.append(running.pk)
        run_dispatched(emu)
    assert order == [old_medium.pk, high.pk, new_medium.pk, old_low.pk]
    assert set(Batch.objects.values_list("status", flat=True)) == {"DONE"}


def test_rule_1_a_device_that_is_not_up_starts_nothing(submit, emu):
    """Rule 1 (idle slot of an UP device): MAINTENANCE keeps batches queued."""
    emu.status = emu.Status.MAINTENANCE
    emu.save()
    batch = submit()
    scheduler.advance(emu.pk)
    assert Batch.objects.get(pk=batch.pk).status == "PENDING"
    assert dispatched(emu) == []


def test_rule_1_an_emulator_runs_as_many_batches_as_it_has_slots(submit, emu):
    """Rule 1 with `slots` = 2: two batches run at once, the third waits."""
    emu.slots = 2
    emu.save()
    batches = [submit() for _ in range(3)]
    scheduler.advance(emu.pk)
    assert [Batch.objects.get(pk=b.pk).status for b in batches] == ["RUNNING", "RUNNING", "PENDING"]
    assert len(dispatched(emu)) == 2


def test_rule_2_jobs_of_a_batch_run_one_at_a_time_in_submission_order(submit, emu):
    """Rule 2: one job at a time per batch, in submission order; a stale message cannot jump the queue."""
    batch = submit(3)
    first, second, third = jobs_of(batch)
    scheduler.advance(emu.pk)
    assert dispatched(emu) == [first]

    # A message for the third job (duplicated, stale) is refused while earlier jobs wait.
    runner.execute(str(third.pk))
    assert Job.objects.get(pk=third.pk).status == "PENDING"

    # While the first job runs, nothing else of the batch may start.
    owner = "test-worker"
    assert runner.claim(str(first.pk), owner) is not None
    scheduler.advance(emu.pk)
    assert dispatched(emu) == []
    assert runner.claim(str(second.pk), "another-worker") is None
    Job.objects.filter(pk=first.pk).update(status=JobStatus.PENDING, lease_owner="", dispatched_at=None)

    drain(emu)
    jobs = jobs_of(batch)
    assert [j.status for j in jobs] == ["DONE"] * 3
    starts = [j.start_timestamp for j in jobs]
    ends = [j.end_timestamp for j in jobs]
    assert starts == sorted(starts)  # type: ignore[type-var]  # DONE jobs have timestamps
    assert all(ends[i] <= starts[i + 1] for i in range(2)), "two jobs of one batch overlapped"  # type: ignore[operator]  # DONE jobs have timestamps


def test_rule_3_a_closed_batch_is_done_when_every_job_is_terminal_then_the_slot_moves_on(submit, emu):
    """Rule 3: DONE when closed and all jobs terminal (DONE, ERROR or CANCELED); the next batch starts."""
    first = submit(2)
    second = submit(1)
    scheduler.advance(emu.pk)
    a, b = jobs_of(first)
    services.cancel_job(b, by=None)  # a canceled job is terminal too
    runner.execute(str(a.pk))
    assert Batch.objects.get(pk=first.pk).status == "DONE"
    assert Batch.objects.get(pk=first.pk).end_datetime is not None
    assert Batch.objects.get(pk=second.pk).status == "RUNNING"
    assert dispatched(emu) == jobs_of(second)


def test_rule_3_an_open_batch_is_not_done_until_closed(submit, emu):
    """Rule 3: an open batch whose jobs are all done stays RUNNING; `close` makes it DONE."""
    batch = submit(1, open=True)
    drain(emu)
    assert Batch.objects.get(pk=batch.pk).status == "RUNNING"
    services.close_batch(batch, by=None)
    assert Batch.objects.get(pk=batch.pk).status == "DONE"


def test_rule_4_an_open_batch_keeps_its_slot_with_no_job_left_and_an_added_job_starts_at_once(
    submit, emu, member, django_capture_on_commit_callbacks
):
    """Rule 4: a RUNNING open batch keeps the slot while idle; a job added later is dispatched at once."""
    open_batch = submit(1, open=True)
    waiting = submit(1)
    drain(emu)
    assert Batch.objects.get(pk=open_batch.pk).status == "RUNNING"
    assert Batch.objects.get(pk=waiting.pk).status == "PENDING"

    with django_capture_on_commit_callbacks(execute=True):
        services.add_jobs(
            open_batch, [{"runs": 5, "variables": {"omega_max": 2.0, "qubits": {"q0": 1}}}], by=member.user
        )
    added = jobs_of(open_batch)[-1]
    assert dispatched(emu) == [added], "the added job was not sent to the device right away"
    run_dispatched(emu)
    assert Job.objects.get(pk=added.pk).status == "DONE"
    assert Batch.objects.get(pk=waiting.pk).status == "PENDING"


def test_rule_5_an_idle_open_batch_times_out_and_frees_its_slot(submit, emu, member):
    """Rule 5: no job pending or running for OPEN_BATCH_TIMEOUT -> TIMED_OUT; the next batch starts."""
    open_batch = submit(1, open=True)
    waiting = submit(1)
    drain(emu)
    assert Batch.objects.get(pk=open_batch.pk).status == "RUNNING"

    with time_machine.travel(timezone.now() + timedelta(seconds=settings.OPEN_BATCH_TIMEOUT - 5)):
        scheduler.advance(emu.pk)
        assert Batch.objects.get(pk=open_batch.pk).status == "RUNNING"
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.OPEN_BATCH_TIMEOUT + 5)):
        scheduler.advance(emu.pk)
    timed_out = Batch.objects.get(pk=open_batch.pk)
    assert timed_out.status == "TIMED_OUT" and not timed_out.open
    assert jobs_of(timed_out)[0].status == "DONE", "a finished job keeps its result"
    assert Batch.objects.get(pk=waiting.pk).status == "RUNNING"
    with pytest.raises(Conflict, match="TIMED_OUT"):
        services.add_jobs(
            timed_out, [{"runs": 1, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}], by=member.user
        )


def test_rule_5_activity_resets_the_open_batch_timeout(submit, emu, member):
    """Rule 5: the clock counts from the last job added or ended, not from the batch's start."""
    open_batch = submit(1, open=True)
    drain(emu)
    later = timezone.now() + timedelta(seconds=settings.OPEN_BATCH_TIMEOUT - 10)
    with time_machine.travel(later):
        services.add_jobs(
            open_batch, [{"runs": 1, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}], by=member.user
        )
        drain(emu)
    with time_machine.travel(later + timedelta(seconds=20)):
        scheduler.advance(emu.pk)
        assert Batch.objects.get(pk=open_batch.pk).status == "RUNNING"


def test_rule_5_a_timed_out_batch_cancels_and_refunds_its_pending_jobs(submit, emu, member):
    """Rule 5: pending jobs of a batch that times out are canceled and refunded, once."""
    batch = submit(2, open=True)
    scheduler.advance(emu.pk)
    balance = credits.balance_of(member.project)
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.OPEN_BATCH_TIMEOUT + 1)):
        from django.db import transaction

        with transaction.atomic():
            assert lifecycle.time_out_batch(batch.pk)
            assert not lifecycle.time_out_batch(batch.pk), "a second time-out must lose"
    assert [j.status for j in jobs_of(batch)] == ["CANCELED", "CANCELED"]
    assert credits.balance_of(member.project) == balance + 20
    assert refunds_of(batch) == 2


def test_rule_5_a_job_added_after_the_idle_check_is_not_timed_out(submit, emu, member):
    """Rule 5 under a race: add_jobs committing between advance's idle check and its UPDATE wins."""
    batch = submit(1, open=True)
    drain(emu)
    future = timezone.now() + timedelta(seconds=settings.OPEN_BATCH_TIMEOUT + 5)
    with time_machine.travel(future):
        idle_since = timezone.now() - timedelta(seconds=settings.OPEN_BATCH_TIMEOUT)
        services.add_jobs(batch, [{"runs": 1, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}], by=member.user)
        from django.db import transaction

        with transaction.atomic():
            assert not lifecycle.time_out_batch(batch.pk, idle_since=idle_since)
    assert Batch.objects.get(pk=batch.pk).status == "RUNNING"
    assert jobs_of(batch)[-1].status == "PENDING"


def test_rule_6_jobs_are_added_only_to_an_open_pending_or_running_batch_and_close_is_idempotent(submit, emu, member):
    """Rule 6: add_jobs needs an open PENDING/RUNNING batch; closing twice is harmless."""
    extra = [{"runs": 3, "variables": {"omega_max": 1.5, "qubits": {"q0": 1}}}]
    queued = submit(1, open=True)
    assert Batch.objects.get(pk=queued.pk).status == "PENDING"
    services.add_jobs(queued, extra, by=member.user)  # PENDING: accepted
    scheduler.advance(emu.pk)
    services.add_jobs(queued, extra, by=member.user)  # RUNNING: accepted
    assert Batch.objects.get(pk=queued.pk).jobs_count == 3
    assert [j.order for j in jobs_of(queued)] == [0, 1, 2]

    closed = submit(1)
    with pytest.raises(Conflict, match="closed"):
        services.add_jobs(closed, extra, by=member.user)

    services.close_batch(queued, by=member.user)
    services.close_batch(queued, by=member.user)
    assert not Batch.objects.get(pk=queued.pk).open
    with pytest.raises(Conflict, match="closed"):
        services.add_jobs(queued, extra, by=member.user)
    assert Batch.objects.get(pk=queued.pk).jobs_count == 3


def test_rule_7_only_a_pending_job_can_be_canceled_and_it_is_refunded(submit, emu, member):
    """Rule 7: PENDING -> CANCELED + refund of runs x price; any other status is a Conflict."""
    batch = submit(2, runs=25)
    first, second = jobs_of(batch)
    balance = credits.balance_of(member.project)
    report = services.cancel_job(second, by=member.user)
    assert report.refunded == 25 and Job.objects.get(pk=second.pk).status == "CANCELED"
    assert credits.balance_of(member.project) == balance + 25
    refund = CreditTransaction.objects.get(job=second, kind="REFUND")
    assert (refund.amount, refund.user, refund.batch_id) == (25, member.user, batch.pk)

    with pytest.raises(Conflict, match="CANCELED: only a PENDING job can be canceled"):
        services.cancel_job(second, by=member.user)
    drain(emu)
    with pytest.raises(Conflict, match="DONE: only a PENDING job can be canceled"):
        services.cancel_job(first, by=member.user)
    assert credits.balance_of(member.project) == balance + 25


def test_rule_8_canceling_a_pending_batch_removes_it_from_the_queue_and_refunds_all(submit, emu, member):
    """Rule 8: a queued batch and all its jobs end CANCELED, every job refunded."""
    running = submit(1)
    queued = submit(3, runs=7)
    scheduler.advance(emu.pk)
    balance = credits.balance_of(member.project)
    report = services.cancel_batch(queued, by=member.user)
    assert report.refunded == 21 and len(report.canceled) == 3
    assert Batch.objects.get(pk=queued.pk).status == "CANCELED"
    assert {j.status for j in jobs_of(queued)} == {"CANCELED"}
    assert credits.balance_of(member.project) == balance + 21
    drain(emu)
    assert Batch.objects.get(pk=running.pk).status == "DONE"
    assert {j.status for j in jobs_of(queued)} == {"CANCELED"}, "a canceled batch never ran"


def test_rule_8_canceling_a_running_batch_lets_the_running_job_finish_then_frees_the_slot(submit, emu, member):
    """Rule 8: pending jobs canceled and refunded; the running job keeps its result; slot freed after it."""
    batch = submit(3, runs=10)
    waiting = submit(1)
    scheduler.advance(emu.pk)
    first, *rest = jobs_of(batch)
    owner = "worker-a"
    job = runner.claim(str(first.pk), owner)
    assert job is not None

    report = services.cancel_batch(batch, by=member.user)
    assert sorted(j.pk for j in report.canceled) == sorted(j.pk for j in rest)
    assert Batch.objects.get(pk=batch.pk).status == "CANCELED"
    scheduler.advance(emu.pk)
    assert Batch.objects.get(pk=waiting.pk).status == "PENDING", "the slot is held until the running job ends"

    result = runner._run(job)
    from jobs.results import store_result

    Job.objects.filter(pk=job.pk).update(result_path=store_result(job, result.as_json()))
    assert lifecycle.end_job(job, owner, JobStatus.DONE)
    scheduler.advance(emu.pk)
    assert Job.objects.get(pk=first.pk).status == "DONE" and Job.objects.get(pk=first.pk).result_path
    assert not CreditTransaction.objects.filter(job=first, kind="REFUND").exists()
    assert Batch.objects.get(pk=batch.pk).status == "CANCELED"
    assert Batch.objects.get(pk=waiting.pk).status == "RUNNING"
    assert refunds_of(batch) == 2


def test_rule_9_rebatch_makes_a_closed_child_batch_of_the_matching_jobs_charged_anew(submit, emu, member):
    """Rule 9: rebatch of a closed batch -> new closed batch, parent = old, copies of matching jobs, charged."""
    batch = submit(3, runs=10)
    drain(emu)
    balance = credits.balance_of(member.project)
    child = services.rebatch(batch, by=member.user, filters={"min_runs": 10})
    assert child.parent_id == batch.pk and not child.open and child.pk != batch.pk
    copies = jobs_of(child)
    originals = jobs_of(batch)
    assert [(j.runs, j.variables) for j in copies] == [(j.runs, j.variables) for j in originals]
    assert {j.status for j in copies} == {"PENDING"}
    assert credits.balance_of(member.project) == balance - 30
    assert CreditTransaction.objects.filter(batch=child, kind="CHARGE").count() == 3

    open_batch = submit(1, open=True)
    with pytest.raises(Conflict, match="still open"):
        services.rebatch(open_batch, by=member.user)


def test_rule_10_retry_appends_a_copy_of_the_job_with_parent_set(submit, emu, member):
    """Rule 10: retry on an open batch appends a copy whose parent is the retried job; charged anew."""
    batch = submit(2, open=True)
    drain(emu)
    original = jobs_of(batch)[1]
    balance = credits.balance_of(member.project)
    services.retry_job(original, by=member.user)
    copy = jobs_of(batch)[-1]
    assert (copy.order, copy.parent_id, copy.runs, copy.variables) == (
        2,
        original.pk,
        original.runs,
        original.variables,
    )
    assert copy.status == "PENDING"
    assert credits.balance_of(member.project) == balance - original.runs

    services.close_batch(batch, by=member.user)
    with pytest.raises(Conflict, match="closed"):
        services.retry_job(original, by=member.user)


def test_rule_11_terminal_states_never_change(submit, emu, member):
    """Rule 11: every transition is conditional; nothing moves a DONE/CANCELED job or batch."""
    batch = submit(2)
    first, second = jobs_of(batch)
    services.cancel_job(second, by=member.user)
    drain(emu)
    assert Batch.objects.get(pk=batch.pk).status == "DONE"

    assert runner.claim(str(second.pk), "late-worker") is None, "a canceled job never starts"
    assert not lifecycle.end_job(Job.objects.get(pk=first.pk), "", JobStatus.ERROR, refund=True)
    assert not lifecycle.finish_batch(batch.pk)
    assert not lifecycle.time_out_batch(batch.pk)
    with pytest.raises(Conflict, match="DONE: it can no longer be canceled"):
        services.cancel_batch(batch, by=member.user)
    with pytest.raises(Conflict, match="jobs can no longer be added"):
        services.add_jobs(batch, [{"runs": 1, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}], by=member.user)
    services.close_batch(batch, by=member.user)
    runner.execute(str(first.pk))

    assert [j.status for j in jobs_of(batch)] == ["DONE", "CANCELED"]
    batch.refresh_from_db()
    assert batch.status == "DONE"
    assert CreditTransaction.objects.filter(batch=batch, kind="REFUND").count() == 1


def test_rule_2_a_job_ending_hands_its_worker_the_batch_next_job_in_order(submit, emu):
    """Rule 2 in the worker's chain: ending a job claims the batch's next pending job, in order,
    in the same transaction; the last job ending claims nothing and ends the closed batch."""
    batch = submit(3)
    scheduler.advance(emu.pk)
    first, second, third = jobs_of(batch)
    job = runner.claim(str(first.pk), "w1")
    assert job is not None

    ending = lifecycle.end_job(job, "w1", JobStatus.DONE, claim_next_for="w2")
    assert ending and ending.next_job is not None and ending.next_job.pk == second.pk
    assert Job.objects.filter(pk=second.pk).values_list("status", "lease_owner").get() == ("RUNNING", "w2")
    assert Job.objects.get(pk=third.pk).status == "PENDING", "one job of a batch at a time"
    assert not runner.claim(str(third.pk), "w3"), "not its turn while the second runs"

    ending = lifecycle.end_job(ending.next_job, "w2", JobStatus.ERROR, errors=["bad"], claim_next_for="w3")
    assert ending.next_job is not None and ending.next_job.pk == third.pk, "a failed job does not stop the batch"
    last = lifecycle.end_job(ending.next_job, "w3", JobStatus.DONE, claim_next_for="w4")
    assert last and last.next_job is None and not last.idle_open, "its slot moves on: the queue decides"
    assert Batch.objects.get(pk=batch.pk).status == "DONE"


def test_a_job_ending_in_a_canceled_batch_claims_nothing(submit, emu, member):
    batch = submit(3)
    scheduler.advance(emu.pk)
    first, *_ = jobs_of(batch)
    job = runner.claim(str(first.pk), "w1")
    assert job is not None
    services.cancel_batch(batch, by=member.user)

    ending = lifecycle.end_job(job, "w1", JobStatus.DONE, claim_next_for="w2")
    assert ending and ending.next_job is None and not ending.idle_open, "its slot moves on: the queue decides"
    assert not Job.objects.filter(batch=batch, status="RUNNING").exists()


def test_rule_4_an_open_batch_whose_job_ends_keeps_its_slot_and_the_queue_waits(submit, emu):
    """The worker then leaves the queue alone (`Ending.idle_open`): nothing has moved."""
    open_batch, waiting = submit(1, open=True), submit(1)
    scheduler.advance(emu.pk)  # the open batch takes the only slot
    job = runner.claim(str(jobs_of(open_batch)[0].pk), "w1")
    assert job is not None

    ending = lifecycle.end_job(job, "w1", JobStatus.DONE, claim_next_for="w2")
    assert ending and ending.next_job is None and ending.idle_open
    assert Batch.objects.get(pk=open_batch.pk).status == "RUNNING"
    scheduler.advance(emu.pk)
    assert Batch.objects.get(pk=waiting.pk).status == "PENDING", "the open batch still holds the slot"


def test_an_open_batch_closed_before_its_job_ends_gives_its_slot_to_the_next_batch(submit, emu, member):
    """The worker that ends the job ends the batch and runs the queue: the waiting batch starts."""
    open_batch, waiting = submit(1, open=True), submit(1)
    scheduler.advance(emu.pk)
    services.close_batch(open_batch, by=member.user)  # its job has not run yet: the batch still runs
    assert Batch.objects.get(pk=open_batch.pk).status == "RUNNING"

    runner.execute(str(jobs_of(open_batch)[0].pk))
    assert Batch.objects.get(pk=open_batch.pk).status == "DONE"
    assert Batch.objects.get(pk=waiting.pk).status == "RUNNING"
    assert [job.batch_id for job in dispatched(emu)] == [waiting.pk]


def test_a_worker_that_lost_its_job_neither_ends_it_nor_claims_the_next(submit, emu):
    batch = submit(2)
    scheduler.advance(emu.pk)
    first, second = jobs_of(batch)
    assert runner.claim(str(first.pk), "w1") is not None

    ending = lifecycle.end_job(Job.objects.get(pk=first.pk), "someone-else", JobStatus.DONE, claim_next_for="w2")
    assert not ending and ending.next_job is None
    assert Job.objects.get(pk=second.pk).status == "PENDING"
