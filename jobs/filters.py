"""The SDK's JobFilters and PaginationParams, as a queryset filter and a page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from django.db.models import Q, QuerySet
from ninja import Schema
from pydantic import AfterValidator, Field

from jobs.models import Job, JobStatus
from portal.models import Membership


def _utc_if_naive(value: datetime) -> datetime:
    """The SDK sends `datetime.isoformat()`: naive dates carry no offset; read them as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# A filter date: ISO 8601 with or without an offset (naive = UTC).
FilterDate = Annotated[datetime, AfterValidator(_utc_if_naive)]


class Page(Schema):
    offset: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=100)


class JobFilter(Page):
    id: list[UUID] | None = None
    project_id: list[UUID] | None = None
    user_id: list[str] | None = None
    batch_id: list[UUID] | None = None
    status: list[JobStatus] | None = None
    min_runs: int | None = Field(None, ge=0)
    max_runs: int | None = Field(None, ge=0)
    errors: bool | None = None
    start_date: FilterDate | None = None
    end_date: FilterDate | None = None
    order_by: Literal["creation_order", "created_at"] | None = None
    order_by_direction: Literal["ASC", "DESC"] | None = None


def jobs_for(user: Any) -> QuerySet[Job]:
    """Jobs of the user's projects; the starting point of every job lookup."""
    # A semi-join on the user's project ids, not a join through projects and memberships:
    # PostgreSQL can then walk an index in page order and stop after one page (bench/listing.py).
    return Job.objects.filter(project_id__in=Membership.objects.filter(user=user).values("project_id"))


def filter_jobs(qs: QuerySet[Job], f: Any) -> QuerySet[Job]:
    """AND across keys, membership within a list (the SDK's semantics)."""
    if f.id:
        qs = qs.filter(pk__in=f.id)
    if getattr(f, "project_id", None):
        qs = qs.filter(project_id__in=f.project_id)
    if getattr(f, "user_id", None):
        qs = qs.filter(user_id__in=[u for u in f.user_id if str(u).isdigit()])
    if getattr(f, "batch_id", None):
        qs = qs.filter(batch_id__in=f.batch_id)
    if getattr(f, "status", None):
        qs = qs.filter(status__in=f.status)
    if f.min_runs is not None:
        qs = qs.filter(runs__gte=f.min_runs)
    if f.max_runs is not None:
        qs = qs.filter(runs__lte=f.max_runs)
    if getattr(f, "errors", None) is not None:
        with_errors = Q(errors__isnull=False) & ~Q(errors=[])
        qs = qs.filter(with_errors) if f.errors else qs.exclude(with_errors)
    if f.start_date:
        qs = qs.filter(created_at__gte=f.start_date)
    if f.end_date:
        qs = qs.filter(created_at__lte=f.end_date)
    return qs


def ordered(qs: QuerySet[Job], f: Any) -> QuerySet[Job]:
    """Newest first by default; `order_by=creation_order&order_by_direction=ASC` for ordered_jobs."""
    ascending = getattr(f, "order_by_direction", None) == "ASC"
    if getattr(f, "order_by", None) == "creation_order" and getattr(f, "batch_id", None):
        fields = ["batch_id", "order"]
    else:
        fields = ["created_at", "order"]
    return qs.order_by(*(fields if ascending else [f"-{name}" for name in fields]))


def page(qs: QuerySet[Job], f: Any) -> tuple[list[Job], dict[str, int]]:
    total = qs.count()
    items = list(ordered(qs, f)[f.offset : f.offset + f.limit])
    return items, {"total": total, "offset": f.offset, "end": f.offset + len(items)}
