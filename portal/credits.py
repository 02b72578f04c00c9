"""Credits: grants, charges and refunds, written as append-only ledger rows.

Every function must run inside the caller's transaction: the ledger row and the
balance move together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.db.models import F

from portal.bulk import insert_rows
from portal.errors import InsufficientCredits
from portal.models import CreditTransaction, Project

if TYPE_CHECKING:
    from uuid import UUID

    from django.contrib.auth.models import User

    from batches.models import Batch
    from jobs.models import Job

Kind = CreditTransaction.Kind


def balance_of(project: Project) -> int:
    return Project.objects.values_list("balance", flat=True).get(pk=project.pk)


def grant(project: Project, amount: int, *, by: User | None, reason: str = "") -> CreditTransaction:
    """Add credits (or remove them with a negative ADJUSTMENT through `adjust`)."""
    if amount <= 0:
        raise ValueError("A grant must be a positive number of credits.")
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(balance=F("balance") + amount)
        return CreditTransaction.objects.create(
            project=project, kind=Kind.GRANT, amount=amount, user=by, reason=reason[:300]
        )


def adjust(project: Project, amount: int, *, by: User | None, reason: str) -> CreditTransaction:
    """A staff correction, positive or negative; the balance may not go below zero."""
    with transaction.atomic():
        _move_balance(project, amount)
        return CreditTransaction.objects.create(
            project=project, kind=Kind.ADJUSTMENT, amount=amount, user=by, reason=reason[:300]
        )


def charge_jobs(batch: Batch, prices: Sequence[tuple[UUID, int]], *, by: User | None) -> int:
    """Charge every job (id, price) its price in one step; refuse the whole set if the project cannot pay.

    Raises InsufficientCredits, which the caller lets roll back the jobs it created.
    """
    total = sum(price for _, price in prices)
    if total:
        _move_balance(batch.project, -total)
    user_id = by.pk if by else None
    rows = [
        {
            "project_id": batch.project_id,
            "kind": Kind.CHARGE,
            "amount": -price,
            "job_id": job_id,
            "batch_id": batch.pk,
            "user_id": user_id,
        }
        for job_id, price in prices
        if price
    ]
    insert_rows(CreditTransaction, rows)
    return total


def refund_job(job: Job, *, by: User | None, reason: str) -> int:
    """Give a job's price back, once. Returns the credits refunded (0 if already refunded).

    Only the actor that won the job's transition calls this; the unique constraint on
    (job, REFUND) is the backstop if two ever did.
    """
    if job.price == 0:
        return 0
    try:
        with transaction.atomic():
            CreditTransaction(**_refund_row(job, by=by, reason=reason)).save(force_insert=True)
    except IntegrityError:
        return 0
    Project.objects.filter(pk=job.project_id).update(balance=F("balance") + job.price)
    return int(job.price)


def _refund_row(job: Job, *, by: User | None, reason: str) -> dict[str, Any]:
    return {
        "project_id": job.project_id,
        "kind": Kind.REFUND,
        "amount": job.price,
        "job_id": job.pk,
        "batch_id": job.batch_id,
        "user_id": by.pk if by else None,
        "reason": reason[:300],
    }


def _move_balance(project: Project, delta: int) -> None:
    """Add `delta` to the balance unless it would go negative (one conditional UPDATE)."""
    if delta >= 0:
        Project.objects.filter(pk=project.pk).update(balance=F("balance") + delta)
        return
    updated = Project.objects.filter(pk=project.pk, balance__gte=-delta).update(balance=F("balance") + delta)
    if updated != 1:
        raise InsufficientCredits(price=-delta, balance=balance_of(project), project=project)


def refund_jobs(jobs: Sequence[Job], *, by: User | None, reason: str) -> int:
    """Refund many jobs that the caller has just moved out of PENDING (it won their transition)."""
    paid = [job for job in jobs if job.price]
    if not paid:
        return 0
    total = sum(int(job.price) for job in paid)
    insert_rows(CreditTransaction, [_refund_row(job, by=by, reason=reason) for job in paid])
    Project.objects.filter(pk=paid[0].project_id).update(balance=F("balance") + total)
    return total
