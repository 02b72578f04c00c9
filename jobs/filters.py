"""The SDK's JobFilters and PaginationParams, as a queryset filter, an exact total and a page."""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import UTC, datetime
from functools import reduce
from typing import Annotated, Any, Literal
from uuid import UUID

from django.db.models import F, Q, QuerySet, Sum
from ninja import Schema
from pydantic import AfterValidator, Field

from batches.models import STATUS_COUNTERS, Batch
from jobs.models import Job, JobStatus
from portal.models import Membership
from portal.wire import INT_MAX, int64_ids


def _utc_if_naive(value: datetime) -> datetime:
    """The SDK sends `datetime.isoformat()`: naive dates carry no offset; read them as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# A filter date: ISO 8601 with or without an offset (naive = UTC).
FilterDate = Annotated[datetime, AfterValidator(_utc_if_naive)]


class Page(Schema):
    offset: int = Field(0, ge=0, le=INT_MAX - 100)  # offset + limit must stay a 64-bit integer
    limit: int = Field(100, ge=1, le=100)


class JobFilter(Page):
    id: list[UUID] | None = None
    project_id: list[UUID] | None = None
    user_id: list[str] | None = None
    batch_id: list[UUID] | None = None
    status: list[JobStatus] | None = None
    min_runs: int | None = Field(None, ge=0, le=INT_MAX)
    max_runs: int | None = Field(None, ge=0, le=INT_MAX)
    errors: bool | None = None
    start_date: FilterDate | None = None
    end_date: FilterDate | None = None
    order_by: Literal["creation_order", "created_at"] | None = None
    order_by_direction: Literal["ASC", "DESC"] | None = None


def jobs_for(user: Any) -> QuerySet[Job]:
    """Jobs of the user's projects; the starting point of every job lookup."""
    # A semi-join on the user's project ids, not a join through projects and memberships:
    # PostgreSQL can then walk an index in page order and stop after one page
    return Job.objects.filter(project_id__in=Membership.objects.filter(user=user).values("project_id"))


def filter_jobs(qs: QuerySet[Job], f: Any) -> QuerySet[Job]:
    """AND across keys, membership within a list (the SDK's semantics)."""
    if f.id:
        qs = qs.filter(pk__in=f.id)
    if getattr(f, "project_id", None):
        qs = qs.filter(project_id__in=f.project_id)
    if getattr(f, "user_id", None):
        qs = qs.filter(user_id__in=int64_ids([str(u) for u in f.user_id]))
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


# Filters that select whole batches: with only these, `total` is a sum of `Batch.jobs_count`.
BATCH_LEVEL_FILTERS = frozenset({"project_id", "batch_id"})
# With `status` too, `total` is a sum of the batches' per-status counters (batches.models).
COUNTED_FILTERS = BATCH_LEVEL_FILTERS | {"status"}
# Not filters: how the page is cut and ordered.
_NOT_FILTERS = frozenset({"offset", "limit", "order_by", "order_by_direction"})


# Filters on the keys of the listing indexes (jobs.models: job_created_project_id, job_project_created_id).
_LISTING_INDEX_FILTERS = frozenset({"project_id", "start_date", "end_date"})


def _filters_only_on(f: Any, allowed: frozenset[str]) -> bool:
    """No filter of `f` is set but those in `allowed`: `f` is a JobFilter (any field added to it
    later counts) or the portal's filter (a namespace: every attribute counts)."""
    fields = getattr(type(f), "model_fields", None) or vars(f)
    return all(getattr(f, name) in (None, []) for name in fields if name not in _NOT_FILTERS | allowed)


def counted_statuses(f: Any) -> list[str] | None:
    """The statuses whose per-batch counters add up to the number of jobs `f` selects in the
    batches it selects; None when another filter is set and only a COUNT(*) can tell. The one
    rule behind the API's totals (`count_jobs`) and the batch page's paginator."""
    if not _filters_only_on(f, COUNTED_FILTERS):
        return None
    return sorted(set(f.status)) if getattr(f, "status", None) else list(STATUS_COUNTERS)


def _only_batch_level(f: Any) -> bool:
    return _filters_only_on(f, BATCH_LEVEL_FILTERS)


def _in_listing_index(f: Any) -> bool:
    """Filtered on the index's keys only (so in created_at order, the index's)."""
    return _filters_only_on(f, _LISTING_INDEX_FILTERS)


def batches_holding(user: Any, f: Any) -> QuerySet[Batch] | None:
    """The batches whose counters add up to `filter_jobs(jobs_for(user), f).count()`, or None.

    None unless `counted_statuses` allows (every filter set is a batch-level one, project_id or
    batch_id, or `status`): any other field, including one added later, gets the exact
    COUNT(*). Exact because
    `jobs_count` is maintained with the jobs (create_batch, add_jobs — retry and rebatch go
    through these) in the same transaction, and so are the per-status counters (database
    triggers, batches/migrations/0004); a job's project is its batch's, and jobs are never
    deleted but with their batch; tests/conftest.py checks both after every test.
    """
    if counted_statuses(f) is None:
        return None
    batches = Batch.objects.filter(project_id__in=Membership.objects.filter(user=user).values("project_id"))
    if f.project_id:
        batches = batches.filter(project_id__in=f.project_id)
    if f.batch_id:
        batches = batches.filter(pk__in=f.batch_id)
    return batches


def count_jobs(user: Any, qs: QuerySet[Job], f: Any) -> int:
    """`qs.count()`, read from the batches' counters when the filter allows:
    `jobs_count`, or with `status` the counters of those statuses: `GET /jobs?status=DONE` at
    1M jobs reads 10,000 batch rows instead of counting 200,000 jobs."""
    batches, statuses = batches_holding(user, f), counted_statuses(f)
    if batches is None or statuses is None:
        return qs.count()
    # Every status: one column, `jobs_count`, their sum (tests/conftest.py checks it after each test).
    columns = ["jobs_count"] if len(statuses) == len(STATUS_COUNTERS) else [STATUS_COUNTERS[s] for s in statuses]
    counted = Sum(reduce(operator.add, (F(column) for column in columns)))
    return int(batches.aggregate(n=counted)["n"] or 0)


def page(
    qs: QuerySet[Job], f: Any, fields: tuple[str, ...], total: Callable[[], int]
) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    """One page of `fields` rows, and the pagination block; `total()` is called only when needed.

    A short page that is not past the end is the last one: total = offset + rows, exactly.
    The SDK's `Batch.ordered_jobs` (one batch, creation order ascending, `offset=end`) is
    paged by key: a batch's `order`s are 0…jobs_count-1, so position `offset` is
    `order = offset`, found in the (batch, order) index instead of skipping `offset` rows.
    """
    qs = ordered(qs, f)
    by_key = (
        f.order_by == "creation_order"
        and f.order_by_direction == "ASC"
        and len(f.batch_id or ()) == 1
        and _only_batch_level(f)
    )
    if by_key:
        window = qs.filter(order__gte=f.offset)[: f.limit]
    elif f.offset and _in_listing_index(f):
        # A deferred join: the offset is skipped in the index (project, created_at, order, id
        # are its keys: an index-only scan), and only the page's rows are read from the table.
        ids = qs.values("pk")[f.offset : f.offset + f.limit]
        window = Job.objects.filter(pk__in=ids).order_by(*qs.query.order_by)
    else:
        window = qs[f.offset : f.offset + f.limit]
    rows = list(window.values_list(*fields))
    n = f.offset + len(rows) if len(rows) < f.limit and (rows or not f.offset) else total()
    return rows, {"total": n, "offset": f.offset, "end": f.offset + len(rows)}
