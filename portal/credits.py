"""Credits: grants, charges and refunds, written as append-only ledger rows.

Every function must run inside the caller's transaction: the ledger row and the
balance move together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from portal.bulk import insert_rows
from portal.errors import InsufficientCredits, InvalidInput, NotFound, SpendingCapExceeded
from portal.models import CreditTransaction, Project, SpendingCap

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from django.contrib.auth.models import User

    from backends.models import Device
    from batches.models import Batch
    from jobs.models import Job

Kind = CreditTransaction.Kind
MAX_CAP = 2**63 - 1  # SpendingCap.amount is a BigIntegerField


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


def job_price(device: Device, runs: int) -> int:
    """What one job of `runs` shots costs on `device`: the only price rule (charge and estimate)."""
    return int(runs) * int(device.price_per_run)


def price_of(device: Device, runs: Sequence[int]) -> int:
    """What a submission of jobs with these runs costs: the sum `charge_jobs` would charge."""
    return sum(job_price(device, r) for r in runs)


def charge_jobs(batch: Batch, prices: Sequence[tuple[UUID, int]], *, by: User | None) -> int:
    """Charge every job (id, price) its price in one step; refuse the whole set if the project cannot
    pay or if it would take the submitter past their spending cap.

    Raises InsufficientCredits or SpendingCapExceeded, which the caller lets roll back the jobs it
    created. Must run in the caller's transaction: the cap's row lock is held until it commits.
    """
    total = sum(price for _, price in prices)
    if total and by is not None:
        _check_cap(batch.project, by, total)
    if total:
        _move_balance(batch.project, -total)
    user_id = by.pk if by else None
    action = uuid4()
    rows = [
        {
            "project_id": batch.project_id,
            "kind": Kind.CHARGE,
            "amount": -price,
            "job_id": job_id,
            "batch_id": batch.pk,
            "user_id": user_id,
            "action": action,
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
    action = uuid4()
    insert_rows(CreditTransaction, [{**_refund_row(job, by=by, reason=reason), "action": action} for job in paid])
    Project.objects.filter(pk=paid[0].project_id).update(balance=F("balance") + total)
    return total


# --- spending caps -----------------------------------------------------------------------------


def period_start(period: str, *, now: datetime | None = None) -> datetime | None:
    """Where a cap's period starts: the first of the current month (local time), or never (TOTAL)."""
    if period != SpendingCap.Period.MONTH:
        return None
    local = timezone.localtime(now)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def spent_by(project: Project, user: User, *, since: datetime | None = None) -> int:
    """Credits `user` spent in `project` (their jobs' charges minus those jobs' refunds), from the ledger.

    Refunds count against the submitter whoever canceled: the job was theirs."""
    rows = CreditTransaction.objects.filter(project=project, kind__in=[Kind.CHARGE, Kind.REFUND]).filter(
        Q(job__user=user) | Q(job__isnull=True, user=user)
    )
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    return -int(rows.aggregate(s=Sum("amount"))["s"] or 0)


def cap_of(project: Project, user: User) -> SpendingCap | None:
    return SpendingCap.objects.filter(project=project, user=user).first()


def cap_usage(cap: SpendingCap) -> int:
    return spent_by(cap.project, cap.user, since=period_start(cap.period))


def _check_cap(project: Project, user: User, price: int) -> None:
    """Refuse `price` if it takes `user` past their cap in `project`.

    The cap row is locked (SELECT … FOR UPDATE) before the ledger is summed: a concurrent
    submission by the same member waits here until this one commits or rolls back, then sums a
    ledger that includes this one's charges (READ COMMITTED takes a fresh snapshot per statement).
    """
    cap = SpendingCap.objects.select_for_update().filter(project=project, user=user).first()
    if cap is None:
        return
    used = spent_by(project, user, since=period_start(cap.period))
    if used + price > cap.amount:
        raise SpendingCapExceeded(cap=cap.amount, period=cap.period, used=used, price=price, project=project)


def set_cap(project: Project, user: User, amount: int | None, period: str, *, by: User | None) -> SpendingCap | None:
    """Set (or with `amount` None, remove) a member's cap; who may is the caller's check (project
    ADMINs in the portal and the API, staff in the Django admin).

    Refused: a user who is not a member of the project (NotFound, `user_id`), an amount below 0 or
    beyond the column's 64 bits (`amount`), a period other than MONTH or TOTAL (`period`)."""
    if not project.memberships.filter(user=user).exists():
        raise NotFound(f"User {user.pk} is not a member of project '{project.name}'.", field="user_id")
    if amount is None:
        SpendingCap.objects.filter(project=project, user=user).delete()
        return None
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_CAP:
        raise InvalidInput(f"A spending cap ('amount') is a whole number of credits, 0 to {MAX_CAP:,}.", field="amount")
    if period not in SpendingCap.Period.values:
        raise InvalidInput(f"A spending cap's 'period' is MONTH or TOTAL, not {str(period)[:20]!r}.", field="period")
    cap, _ = SpendingCap.objects.update_or_create(
        project=project, user=user, defaults={"amount": amount, "period": period, "set_by": by}
    )
    return cap
