"""Credit usage for the credits page: spending per day by device and by user, top batches.

Spending = charges minus refunds, read from the ledger (the single source of truth).
"""

from __future__ import annotations

import math
import uuid
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import CharField, Count, Max, Min, QuerySet, Sum
from django.db.models.functions import Cast, Coalesce, TruncDate
from django.utils import timezone

from portal.models import CreditTransaction, Membership, Project, SpendingCap

SPEND_KINDS = [CreditTransaction.Kind.CHARGE, CreditTransaction.Kind.REFUND]


def spending(project: Project, *, user: Any = None, days: int = 30) -> QuerySet[CreditTransaction]:
    since = timezone.now() - timedelta(days=days)
    qs = CreditTransaction.objects.filter(project=project, kind__in=SPEND_KINDS, created_at__gte=since)
    if user is not None:
        qs = qs.filter(job__user=user)
    return qs


def daily_chart(qs: QuerySet[CreditTransaction], split: str, *, days: int = 30) -> dict[str, Any]:
    """Stacked bars: one label per day, one dataset per device (or user)."""
    rows = (
        qs.annotate(day=TruncDate("created_at"))
        .values("day", split)
        .annotate(spent=Sum("amount"))
        .order_by("day", split)
    )
    today = timezone.localdate()
    labels = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    series: dict[str, dict[date, int]] = {}
    for row in rows:
        series.setdefault(str(row[split] or "—"), {})[row["day"]] = -int(row["spent"] or 0)
    return {
        "labels": [d.strftime("%b %d") for d in labels],
        "datasets": [{"label": name, "data": [by_day.get(d, 0) for d in labels]} for name, by_day in series.items()],
        "stacked": True,
        "unit": "credits",
        "total": sum(sum(v.values()) for v in series.values()),
    }


def top_batches(qs: QuerySet[CreditTransaction], limit: int = 10) -> list[dict[str, Any]]:
    rows = (
        qs.filter(batch__isnull=False)
        .values("batch_id", "batch__device__name", "batch__user__username", "batch__created_at", "batch__status")
        .annotate(spent=Sum("amount"))
        .order_by("spent")[:limit]
    )
    return [{**row, "spent": -int(row["spent"] or 0)} for row in rows if row["spent"]]


# --- issue 21: forecast, usage for any range, members, the grouped ledger -----------------------


def burn_down(project: Project, *, days: int = 30, rate_days: int = 14, horizon: int = 90) -> dict[str, Any]:
    """The balance at the end of each of the last `days` days, and where it goes at the recent rate.

    The past is read back from the current balance (the cached ledger sum) minus each day's net
    movement after it; the rate is the net spending (charges minus refunds) of the last
    `rate_days` days. `runs_out` is the date the balance reaches 0 at that rate (None if
    nothing is spent, or if it is beyond `horizon` days: the chart stops there)."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(first, time.min))
    moved = dict(
        CreditTransaction.objects.filter(project=project, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values_list("day")
        .annotate(total=Sum("amount"))
        .values_list("day", "total")
    )
    balance = int(Project.objects.values_list("balance", flat=True).get(pk=project.pk))
    history: list[int] = []
    level = balance
    for n in range(days):  # backwards from today: the end-of-day balance, then undo that day
        day = today - timedelta(days=n)
        history.append(level)
        level -= int(moved.get(day, 0) or 0)
    history.reverse()
    rate_since = timezone.now() - timedelta(days=rate_days)
    spent = -int(
        CreditTransaction.objects.filter(project=project, kind__in=SPEND_KINDS, created_at__gte=rate_since).aggregate(
            s=Sum("amount")
        )["s"]
        or 0
    )
    per_day = spent / rate_days if spent > 0 else 0.0
    runs_out = None
    ahead = 0
    if per_day > 0:
        days_left = balance / per_day
        if days_left <= horizon:
            runs_out = today + timedelta(days=math.ceil(days_left))
        ahead = min(math.ceil(days_left), horizon)
    labels = [first + timedelta(days=n) for n in range(days + ahead)]
    forecast: list[int | None] = [None] * (days - 1) + [balance]
    forecast += [max(round(balance - per_day * n), 0) for n in range(1, ahead + 1)]
    return {
        "labels": [d.strftime("%b %d") for d in labels],
        "balance": history + [None] * ahead,
        "forecast": forecast,
        "current": balance,
        "per_day": round(per_day, 1),
        "rate_days": rate_days,
        "runs_out": runs_out,
        "horizon": horizon,
    }


def usage_between(project: Project, start: date, end: date) -> dict[str, Any]:
    """Net spending per user and per device (and per user × device) between two dates, inclusive."""
    rows = CreditTransaction.objects.filter(
        project=project,
        kind__in=SPEND_KINDS,
        created_at__gte=timezone.make_aware(datetime.combine(start, time.min)),
        created_at__lt=timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min)),
    )
    pairs = (
        rows.values("job__user__username", "batch__device__name")
        .annotate(spent=Sum("amount"))
        .order_by("job__user__username", "batch__device__name")
    )
    by_user: dict[str, int] = {}
    by_device: dict[str, int] = {}
    table = []
    for row in pairs:
        user, device, spent = row["job__user__username"] or "—", row["batch__device__name"] or "—", -int(row["spent"])
        by_user[user] = by_user.get(user, 0) + spent
        by_device[device] = by_device.get(device, 0) + spent
        table.append({"user": user, "device": device, "spent": spent})
    return {
        "start": start,
        "end": end,
        "rows": table,
        "by_user": sorted(by_user.items(), key=lambda kv: -kv[1]),
        "by_device": sorted(by_device.items(), key=lambda kv: -kv[1]),
        "total": sum(by_user.values()),
    }


def grouped_ledger(qs: QuerySet[CreditTransaction]) -> QuerySet[Any, Any]:
    """Ledger rows as the actions that wrote them: the charges of one submission, the refunds of
    one cancel (rows sharing `action`); any other row is a line of its own.

    Each group: key (the action, else the row's id), kind, batch_id, user__username, reason,
    created_at, jobs (rows), amount (sum). Newest first."""
    key = Coalesce(Cast("action", CharField()), Cast("id", CharField()))
    return (
        qs.order_by()
        .annotate(key=key)
        .values("key", "kind", "batch_id", "user__username", "reason")
        .annotate(jobs=Count("id"), amount=Sum("amount"), created_at=Max("created_at"), first_id=Min("id"))
        .order_by("-created_at", "-first_id")
    )


def describe_group(group: dict[str, Any]) -> str:
    """One line for a ledger group: "30 jobs refunded, 6,000 credits"."""
    n, amount, kind = int(group["jobs"]), abs(int(group["amount"] or 0)), group["kind"]
    jobs = f"{n:,} job{'' if n == 1 else 's'}"
    if kind == CreditTransaction.Kind.CHARGE:
        return f"{jobs} charged, {amount:,} credits"
    if kind == CreditTransaction.Kind.REFUND:
        return f"{jobs} refunded, {amount:,} credits"
    if kind == CreditTransaction.Kind.GRANT:
        return f"Grant of {amount:,} credits"
    return f"Adjustment of {int(group['amount'] or 0):+,} credits"


def group_rows(project: Project, key: str) -> QuerySet[CreditTransaction]:
    """The ledger rows (one per job) behind one `grouped_ledger` line, for its expanded view."""
    rows = CreditTransaction.objects.filter(project=project).select_related("job")
    if key.isdigit() and len(key) < 20:
        return rows.filter(pk=int(key))
    try:
        return rows.filter(action=uuid.UUID(key))
    except ValueError:
        return rows.none()


def members(project: Project) -> list[dict[str, Any]]:
    """Every member with their role, spending this month and in total, and their cap if any."""
    month = timezone.localtime().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spend = CreditTransaction.objects.filter(project=project, kind__in=SPEND_KINDS)
    total = dict(spend.values_list("job__user_id").annotate(s=Sum("amount")).values_list("job__user_id", "s"))
    this_month = dict(
        spend.filter(created_at__gte=month)
        .values_list("job__user_id")
        .annotate(s=Sum("amount"))
        .values_list("job__user_id", "s")
    )
    caps = {cap.user_id: cap for cap in SpendingCap.objects.filter(project=project)}
    rows = []
    for m in Membership.objects.filter(project=project).select_related("user").order_by("user__username"):
        cap = caps.get(m.user_id)
        month_spent, total_spent = -int(this_month.get(m.user_id) or 0), -int(total.get(m.user_id) or 0)
        used = None if cap is None else month_spent if cap.period == SpendingCap.Period.MONTH else total_spent
        rows.append(
            {
                "user": m.user,
                "role": m.role,
                "month": month_spent,
                "total": total_spent,
                "cap": cap,
                "cap_used": used,
                "cap_left": None if cap is None or used is None else max(cap.amount - used, 0),
            }
        )
    return rows
