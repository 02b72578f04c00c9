"""DESIGN.md §3: prices, charges, the 402 refusal, refunds exactly once, the ledger."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.db.models import Sum

from batches import services
from batches.models import Batch
from jobs.models import Job
from portal import credits
from portal.errors import InsufficientCredits
from portal.models import CreditTransaction, Project
from tests.sequences import seed_mappable_sequence

SEQUENCE = seed_mappable_sequence()


def _jobs(*runs: int) -> list[dict[str, object]]:
    return [{"runs": r, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}} for r in runs]


def test_jobs_are_charged_runs_times_device_price_in_the_submitting_transaction(devices, make_member):
    member = make_member(credits=1000)
    # EMU_FREE: always UP (EMU_SV is DOWN on a machine without the optional emulators).
    devices["EMU_FREE"].price_per_run = 3
    devices["EMU_FREE"].save()
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=SEQUENCE,
        jobs=_jobs(10, 25),
        device_type="EMU_FREE",
        validate=False,
    )
    charges = CreditTransaction.objects.filter(batch=batch, kind="CHARGE").order_by("amount")
    assert [c.amount for c in charges] == [-75, -30]
    assert all(c.user == member.user and c.job_id for c in charges)
    assert [j.price for j in Job.objects.filter(batch=batch).order_by("order")] == [30, 75]
    assert credits.balance_of(member.project) == 1000 - 105 == ledger_sum(member.project)


def test_a_submission_the_project_cannot_pay_is_refused_whole_with_402_and_nothing_created(devices, make_member):
    member = make_member(credits=50)
    with pytest.raises(InsufficientCredits) as caught:
        services.create_batch(
            member.project, member.user, sequence_builder=SEQUENCE, jobs=_jobs(30, 30), device_type="EMU_FREE"
        )
    assert caught.value.status_code == 402
    assert "costs 60 credits" in caught.value.message and "has 50" in caught.value.message
    assert not Batch.objects.exists() and not Job.objects.exists()
    assert credits.balance_of(member.project) == 50
    assert list(CreditTransaction.objects.values_list("kind", flat=True)) == ["GRANT"]


def test_add_jobs_beyond_the_balance_is_refused_whole(devices, make_member):
    member = make_member(credits=25)
    batch = services.create_batch(
        member.project, member.user, sequence_builder=SEQUENCE, jobs=_jobs(20), device_type="EMU_FREE", open=True
    )
    with pytest.raises(InsufficientCredits):
        services.add_jobs(batch, _jobs(3, 3), by=member.user)
    assert Job.objects.filter(batch=batch).count() == 1
    assert Batch.objects.get(pk=batch.pk).jobs_count == 1
    assert credits.balance_of(member.project) == 5


def test_the_database_forbids_a_second_charge_or_refund_for_one_job(devices, make_member):
    member = make_member()
    batch = services.create_batch(
        member.project, member.user, sequence_builder=SEQUENCE, jobs=_jobs(5), device_type="EMU_FREE"
    )
    job = Job.objects.get(batch=batch)
    for kind in ("CHARGE", "REFUND"):
        if kind == "REFUND":
            services.cancel_job(job, by=member.user)
        with pytest.raises(IntegrityError), transaction.atomic():
            CreditTransaction.objects.create(project=member.project, kind=kind, amount=5, job=job, batch=batch)
    # refund_job itself is idempotent on top of the constraint.
    assert credits.refund_job(job, by=None, reason="again") == 0
    assert credits.balance_of(member.project) == ledger_sum(member.project)


def test_grant_and_adjust_record_kind_reason_and_user_and_never_overdraw(make_member):
    member = make_member(credits=0)
    credits.grant(member.project, 40, by=member.user, reason="teaching")
    credits.adjust(member.project, -15, by=member.user, reason="typo")
    with pytest.raises(InsufficientCredits):
        credits.adjust(member.project, -100, by=member.user, reason="too much")
    with pytest.raises(ValueError):
        credits.grant(member.project, 0, by=None)
    rows = list(CreditTransaction.objects.order_by("id").values_list("kind", "amount", "reason", "user"))
    assert rows == [("GRANT", 40, "teaching", member.user.pk), ("ADJUSTMENT", -15, "typo", member.user.pk)]
    assert credits.balance_of(member.project) == 25


def test_staff_grant_credits_in_the_django_admin(admin_client, make_member):
    member = make_member(credits=0)
    response = admin_client.post(
        "/admin/portal/credittransaction/add/",
        {"project": member.project.pk, "kind": "GRANT", "amount": 500, "reason": "new grant"},
    )
    assert response.status_code == 302, response.content[:500]
    grant = CreditTransaction.objects.get(project=member.project)
    assert (grant.kind, grant.amount, grant.reason, grant.user.is_staff) == ("GRANT", 500, "new grant", True)  # type: ignore[union-attr]
    assert credits.balance_of(member.project) == 500


def test_admin_adjustment_below_zero_is_refused_with_a_message(admin_client, make_member):
    member = make_member(credits=100)
    response = admin_client.post(
        "/admin/portal/credittransaction/add/",
        {"project": member.project.pk, "kind": "ADJUSTMENT", "amount": -500, "reason": "too much"},
        follow=True,
    )
    assert response.status_code == 200
    assert "Not enough credits" in response.content.decode()
    assert credits.balance_of(member.project) == 100
    assert not CreditTransaction.objects.filter(project=member.project, kind="ADJUSTMENT").exists()


def ledger_sum(project: Project) -> int:
    return int(project.transactions.aggregate(total=Sum("amount"))["total"] or 0)
