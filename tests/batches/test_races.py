"""Races with real threads against PostgreSQL: the database decides, exactly once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from backends.models import Device
from batches import runner, scheduler, services
from batches.models import Batch
from jobs.models import Job
from portal import credits
from portal.errors import Conflict, InsufficientCredits
from portal.models import CreditTransaction
from tests.batches.conftest import SEQUENCE, job_spec, jobs_of
from tests.conftest import consumers_paused

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def race(n: int, action: Callable[[int], Any]) -> list[Any]:
    """Run `action(i)` in n threads released together; return each result or exception."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = action(i)
        except Exception as exc:  # noqa: BLE001 - collected and asserted on by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.fixture(autouse=True)
def no_worker_takes_emu_free_jobs() -> Iterator[None]:
    """These tests claim and run jobs themselves: a session worker must not take them first."""
    with consumers_paused("device.EMU_FREE"):
        yield


def queued_device(devices: dict[str, Device], slots: int) -> Device:
    """EMU_FREE in MAINTENANCE, so submissions stay queued until the test lets `advance` race."""
    device = devices["EMU_FREE"]
    device.slots, device.status = slots, Device.Status.MAINTENANCE
    device.save()
    return device


def open_batch(member: Any) -> Batch:
    return services.create_batch(
        member.project,
        member.user,
        sequence_builder=SEQUENCE,
        jobs=[job_spec(5)],
        device_type="EMU_FREE",
        open=True,
        validate=False,
    )


def test_twenty_concurrent_cancels_of_one_job_refund_it_exactly_once(devices, member):
    queued_device(devices, 1)
    batch = services.create_batch(
        member.project, member.user, sequence_builder=SEQUENCE, jobs=[job_spec(40)], device_type="EMU_FREE"
    )
    (job,) = jobs_of(batch)
    balance = credits.balance_of(member.project)

    results = race(20, lambda i: services.cancel_job(Job.objects.get(pk=job.pk), by=member.user))

    won = [r for r in results if isinstance(r, services.CancelReport)]
    lost = [r for r in results if isinstance(r, Conflict)]
    assert len(won) == 1 and len(lost) == 19, results
    assert CreditTransaction.objects.filter(job=job, kind="REFUND").count() == 1
    assert credits.balance_of(member.project) == balance + 40


def test_concurrent_submissions_never_overdraw_and_accepted_ones_are_charged_once(devices, make_member):
    queued_device(devices, 1)
    member = make_member(credits=100)

    def submit(i: int) -> Batch:
        return services.create_batch(
            member.project,
            member.user,
            sequence_builder=SEQUENCE,
            jobs=[job_spec(15), job_spec(15)],
            device_type="EMU_FREE",
            validate=False,
        )

    results = race(12, submit)
    accepted = [r for r in results if isinstance(r, Batch)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert len(accepted) + len(refused) == 12, results
    assert len(accepted) == 3  # 3 x 30 <= 100 < 4 x 30
    assert credits.balance_of(member.project) == 10
    assert Batch.objects.count() == 3 and Job.objects.count() == 6
    for batch in accepted:
        assert CreditTransaction.objects.filter(batch=batch, kind="CHARGE").count() == 2


def test_concurrent_advances_never_give_one_slot_two_batches(devices, member):
    device = queued_device(devices, 1)
    for _ in range(6):
        services.create_batch(
            member.project,
            member.user,
            sequence_builder=SEQUENCE,
            jobs=[job_spec(5)],
            device_type="EMU_FREE",
            validate=False,
        )
    Device.objects.filter(pk=device.pk).update(status=Device.Status.UP)

    for _round in range(3):
        results = race(8, lambda i: scheduler.advance(device.pk))
        assert not [r for r in results if isinstance(r, Exception)], results
        assert Batch.objects.filter(status="RUNNING").count() == 1
        running = Batch.objects.get(status="RUNNING")
        dispatched = Job.objects.filter(dispatched_at__isnull=False, status="PENDING")
        assert [j.batch_id for j in dispatched] == [running.pk]
        # Finish the running batch's job so the next round races for the freed slot.
        runner.execute(str(dispatched.get().pk))


def test_concurrent_job_and_batch_cancels_do_not_deadlock_and_refund_each_job_once(devices, member):
    queued_device(devices, 1)
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=SEQUENCE,
        jobs=[job_spec(10) for _ in range(8)],
        device_type="EMU_FREE",
        validate=False,
    )
    jobs = jobs_of(batch)
    balance = credits.balance_of(member.project)

    def cancel(i: int) -> Any:
        if i == len(jobs):
            return services.cancel_batch(Batch.objects.get(pk=batch.pk), by=member.user)
        return services.cancel_job(jobs[i], by=member.user)

    results = race(len(jobs) + 1, cancel)
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, Conflict)]
    assert not unexpected, unexpected
    assert {j.status for j in jobs_of(batch)} == {"CANCELED"}
    assert CreditTransaction.objects.filter(batch=batch, kind="REFUND").count() == 8
    assert credits.balance_of(member.project) == balance + 80


def test_concurrent_claims_of_one_job_start_it_once(devices, member):
    device = queued_device(devices, 1)
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=SEQUENCE,
        jobs=[job_spec(5)],
        device_type="EMU_FREE",
        validate=False,
    )
    Device.objects.filter(pk=device.pk).update(status=Device.Status.UP)
    scheduler.advance(device.pk)
    (job,) = jobs_of(batch)
    results = race(10, lambda i: runner.claim(str(job.pk), f"worker-{i}"))
    assert len([r for r in results if isinstance(r, Job)]) == 1, results
    assert Job.objects.get(pk=job.pk).attempts == 1


def test_add_jobs_racing_close_either_lands_before_the_close_or_is_refused(devices, member):
    queued_device(devices, 1)
    batch = open_batch(member)

    def act(i: int) -> Any:
        fresh = Batch.objects.get(pk=batch.pk)
        if i == 0:
            return services.close_batch(fresh, by=member.user)
        return services.add_jobs(fresh, [job_spec(5)], by=member.user)

    results = race(6, act)
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, Conflict)]
    assert not unexpected, unexpected
    added = sum(1 for r in results[1:] if isinstance(r, Batch))
    final = Batch.objects.get(pk=batch.pk)
    assert not final.open
    assert final.jobs_count == 1 + added == Job.objects.filter(batch=batch).count()
    assert [j.order for j in jobs_of(final)] == list(range(final.jobs_count))


def test_a_batch_canceled_while_jobs_are_added_ends_after_every_job_it_holds(devices, member):
    """Issue 17.10: a cancel that waited for a racing add_jobs stamps its end after those jobs' creation."""
    queued_device(devices, 1)
    for _ in range(3):  # a few rounds: the interleaving differs each time
        batch = open_batch(member)

        def act(i: int, batch: Batch = batch) -> Any:
            fresh = Batch.objects.select_related("device").get(pk=batch.pk)
            if i == 0:
                return services.cancel_batch(fresh, by=member.user)
            return services.add_jobs(fresh, [job_spec(5)], by=member.user)

        results = race(6, act)
        unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, Conflict)]
        assert not unexpected, unexpected
        final = Batch.objects.get(pk=batch.pk)
        assert final.status == "CANCELED" and final.end_datetime is not None
        newest = max(Job.objects.filter(batch=batch).values_list("created_at", flat=True))
        assert final.end_datetime >= newest
        assert set(Job.objects.filter(batch=batch).values_list("status", flat=True)) == {"CANCELED"}


def test_concurrent_submissions_by_a_capped_member_never_pass_the_cap(devices, make_member):
    """Issue 21.4: 12 threads each submit 30 credits under a 100-credit cap: exactly 3 pass."""
    from portal.errors import SpendingCapExceeded

    queued_device(devices, 1)
    capped = make_member(credits=100_000, role="MEMBER")
    credits.set_cap(capped.project, capped.user, 100, "MONTH", by=None)

    def submit(_: int) -> Batch:
        return services.create_batch(
            capped.project,
            capped.user,
            sequence_builder=SEQUENCE,
            jobs=[job_spec(10), job_spec(20)],
            device_type="EMU_FREE",
            validate=False,
        )

    results = race(12, submit)
    assert all(isinstance(r, Batch | SpendingCapExceeded) for r in results), results
    assert sum(isinstance(r, Batch) for r in results) == 3
    assert credits.cap_usage(capped.project.spending_caps.get()) == 90
    assert credits.balance_of(capped.project) == 100_000 - 90
