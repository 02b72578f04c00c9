"""Credit usage for the credits page: spending per day by device and by user, top batches.

Spending = charges minus refunds, read from the ledger (the single source of truth).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from portal.models import CreditTransaction, Project

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
