"""Batch endpoints of the Pasqal Cloud API (paths as the SDK calls them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from ninja import Body, Query, Router, Schema
from pydantic import BeforeValidator, Field, WithJsonSchema

from batches import services, sweeps
from batches.filters import filter_batches
from batches.idempotency import idempotent
from batches.models import Batch, BatchStatus, Priority
from jobs.filters import FilterDate, Page, filter_jobs
from jobs.models import JobStatus
from jobs.schemas import JOB_COLUMNS, CancelJobsOut, JobOut, cancel_jobs_json, iso, rows_json
from portal import events
from portal.access import project_for, request_user
from portal.api import ERRORS, check_depth, committed, envelope, ok, release_connection, render
from portal.errors import Conflict, NotFound
from portal.wire import INT_MAX, check_json

router = Router(tags=["batches"])
ACTIVE_STATUSES = (BatchStatus.PENDING, BatchStatus.RUNNING)


class JobIn(Schema):
    runs: int | None = None
    variables: dict[str, Any] | None = None
    sequence: str | None = None


def _count_jobs_first(jobs: Any) -> Any:
    """MAX_JOBS_PER_BATCH before pydantic validates each job: 100,000 jobs cost it 10-20 s of CPU.

    Raises InvalidInput (not a ValueError), which pydantic lets through to the API's handler:
    the same 400 as `parse_job_specs` gives, at once.
    """
    if isinstance(jobs, list):
        services.check_jobs_count(len(jobs))
    return jobs


# The jobs as sent, each checked by `services.parse_job_specs` (whose messages name the job's
# index), not validated a second time as 1,000 JobIn models. The docs still show JobIn.
Jobs = Annotated[
    list[Any],
    BeforeValidator(_count_jobs_first),
    WithJsonSchema({"type": "array", "items": JobIn.model_json_schema()}),
]


class BatchIn(Schema):
    sequence_builder: str | None = None
    jobs: Jobs = []
    open: bool = False
    complete: bool | None = None
    device_type: str | None = None
    project_id: UUID
    webhook: str | None = None
    tags: list[str] | None = None
    configuration: dict[str, Any] | None = None
    backend_configuration: str | None = None
    queue_priority: Literal["LOW", "MEDIUM", "HIGH"] | None = None


class BatchOut(Schema):
    id: str
    open: bool
    complete: bool
    status: str
    device_type: str
    device_status: str | None = None
    project_id: str
    user_id: str
    created_at: str
    updated_at: str
    start_datetime: str | None = None
    end_datetime: str | None = None
    webhook: str | None = None
    tags: list[str] | None = None
    configuration: dict[str, Any] | None = None
    backend_configuration: str | None = None
    parent_id: str | None = None
    queue_priority: str
    jobs_count: int
    jobs_count_per_status: dict[str, int]
    sequence_builder: str | None = None
    jobs: list[JobOut] | None = None


class BatchStatusOut(Schema):
    status: str
    jobs_count_per_status: dict[str, int]


class CancelBatchesIn(Schema):
    batch_ids: list[UUID] = Field(..., max_length=1000)


class CancelBatchesOut(Schema):
    batches: list[BatchOut]
    errors: dict[str, str]


class BatchFilter(Page):
    id: list[UUID] | None = None
    project_id: list[UUID] | None = None
    user_id: list[str] | None = None
    device_type: list[str] | None = None
    status: list[BatchStatus] | None = None
    open: bool | None = None
    queue_priority: list[Literal["LOW", "MEDIUM", "HIGH"]] | None = None
    tag: str | None = None
    start_date: FilterDate | None = None
    end_date: FilterDate | None = None


class RebatchFilter(Schema):
    id: list[UUID] | None = None
    status: list[JobStatus] | None = None
    min_runs: int | None = Field(None, ge=0, le=INT_MAX)
    max_runs: int | None = Field(None, ge=0, le=INT_MAX)
    start_date: FilterDate | None = None
    end_date: FilterDate | None = None


class CancelJobFilter(Schema):
    id: list[UUID] | None = None
    min_runs: int | None = Field(None, ge=0, le=INT_MAX)
    max_runs: int | None = Field(None, ge=0, le=INT_MAX)
    start_date: FilterDate | None = None
    end_date: FilterDate | None = None


def batch_json(batch: Batch, *, with_sequence: bool = False, with_jobs: bool = False) -> dict[str, Any]:
    counts = batch.job_counts
    data: dict[str, Any] = {
        "id": str(batch.pk),
        "open": batch.open,
        "complete": not batch.open,
        "status": batch.status,
        "device_type": batch.device.name,
        "device_status": batch.device.status,
        "project_id": str(batch.project_id),
        "user_id": str(batch.user_id),
        "created_at": iso(batch.created_at),
        "updated_at": iso(batch.updated_at),
        "start_datetime": iso(batch.start_datetime),
        "end_datetime": iso(batch.end_datetime),
        "webhook": batch.webhook,
        "tags": batch.tags,
        "configuration": batch.configuration,
        "backend_configuration": batch.backend_configuration,
        "parent_id": str(batch.parent_id) if batch.parent_id else None,
        "queue_priority": Priority(batch.priority).name,
        "jobs_count": sum(counts.values()),
        "jobs_count_per_status": counts,
    }
    if with_sequence:
        data["sequence_builder"] = batch.sequence_builder
    # Inline the jobs of small batches; the SDK pages through big ones itself (ordered_jobs).
    if with_jobs and sum(counts.values()) <= settings.BATCH_JOBS_INLINE_MAX:
        # Read as a listing reads them: the columns shown, not whole rows with their sequences.
        data["jobs"] = rows_json(batch.jobs.order_by("order").values_list(*JOB_COLUMNS))
    return data


def _full(batch: Batch) -> dict[str, Any]:
    return batch_json(Batch.objects.select_related("device").get(pk=batch.pk), with_sequence=True, with_jobs=True)


def _created(batch: Batch) -> dict[str, Any]:
    """The answer to a new batch, `_full`'s, from what `services.create_batch` wrote.

    Nothing can have moved yet: the scheduler only sees the batch once this request commits.
    Its jobs go in as the schema renders them (`render` would validate 1,000 JobOut again).
    """
    rows = batch.created_jobs or []
    batch.refresh_counters()
    body = render(envelope(BatchOut), ok(batch_json(batch, with_sequence=True)))
    if len(rows) <= settings.BATCH_JOBS_INLINE_MAX:
        body["data"]["jobs"] = rows_json(tuple(r[c] for c in JOB_COLUMNS) for r in rows)
    return body


def check_batch_fields(payload: BatchIn) -> None:
    """Refuse, naming the field, any value that could be stored but not answered back (portal.wire)."""
    fields = ("jobs", "sequence_builder", "device_type", "webhook", "tags", "configuration", "backend_configuration")
    for name in fields:
        check_json(getattr(payload, name), name)


@router.post("/api/v1/batches", response={200: envelope(BatchOut), **ERRORS})
def create_batch(request: HttpRequest, payload: BatchIn) -> Any:
    return idempotent(request, envelope(BatchOut), lambda: _create_batch(request, payload), rendered=True)


def _create_batch(request: HttpRequest, payload: BatchIn) -> dict[str, Any]:
    check_depth(request)
    check_batch_fields(payload)
    project = project_for(request_user(request), payload.project_id)
    is_open = payload.open if payload.complete is None else not payload.complete
    batch = services.create_batch(
        project,
        request_user(request),
        sequence_builder=payload.sequence_builder,
        jobs=payload.jobs,
        device_type=payload.device_type,
        open=is_open,
        tags=payload.tags,
        webhook=payload.webhook,
        configuration=payload.configuration,
        backend_configuration=payload.backend_configuration,
        priority=Priority[payload.queue_priority or "MEDIUM"],
    )
    return _created(batch)


class PriceIn(Schema):
    project_id: UUID
    jobs: Jobs = []
    device_type: str | None = None
    sequence_builder: str | None = None


class PriceOut(Schema):
    device_type: str
    jobs: int
    runs: int
    price: int
    balance: int
    balance_after: int
    spending_cap: int | None = None
    spending_cap_period: str | None = None
    spending_cap_used: int | None = None
    spending_cap_left: int | None = None
    refused: str | None = None


def price_json(q: services.Quote) -> dict[str, Any]:
    return {
        "device_type": q.device,
        "jobs": q.jobs,
        "runs": q.runs,
        "price": q.price,
        "balance": q.balance,
        "balance_after": q.balance_after,
        "spending_cap": q.cap,
        "spending_cap_period": q.cap_period,
        "spending_cap_used": q.cap_used,
        "spending_cap_left": q.cap_left,
        "refused": q.refusal,
    }


@router.post("/api/v1/batches/price", response={200: envelope(PriceOut), **ERRORS})
def price_batch(request: HttpRequest, payload: PriceIn) -> dict[str, Any]:
    """What POST /api/v1/batches (or adding these jobs) would charge now, and what it would leave.
    Nothing is written; `refused` says which 402 the submission would get."""
    check_depth(request)
    for name in ("jobs", "device_type", "sequence_builder"):
        check_json(getattr(payload, name), name)
    user = request_user(request)
    project = project_for(user, payload.project_id)
    q = services.quote(
        project, user, jobs=payload.jobs, device_type=payload.device_type, sequence_builder=payload.sequence_builder
    )
    return ok(price_json(q))


@router.get("/api/v1/batches", response={200: envelope(list[BatchOut], paginated=True), **ERRORS})
def list_batches(request: HttpRequest, filters: Query[BatchFilter]) -> dict[str, Any]:
    for name in ("user_id", "device_type", "tag"):
        check_json(getattr(filters, name), name)  # a NUL in a query parameter: PostgreSQL refuses it
    qs = filter_batches(
        services.batches_for(request_user(request)).select_related("device"),
        ids=filters.id,
        project_ids=filters.project_id,
        user_ids=filters.user_id,
        device_types=filters.device_type,
        statuses=filters.status,
        open=filters.open,
        priorities=[Priority[p] for p in filters.queue_priority or []],
        tag=filters.tag,
        start=filters.start_date,
        end=filters.end_date,
    )
    total = qs.count()
    batches = list(qs.order_by("-created_at")[filters.offset : filters.offset + filters.limit])
    data = [batch_json(b) for b in batches]
    return ok(data, pagination={"total": total, "offset": filters.offset, "end": filters.offset + len(data)})


@router.patch("/api/v1/batches/cancel", response={200: envelope(CancelBatchesOut), **ERRORS})
def cancel_batches(request: HttpRequest, payload: CancelBatchesIn) -> HttpResponse:
    def cancel_each() -> dict[str, Any]:
        canceled, errors = [], {}
        for batch_id in dict.fromkeys(payload.batch_ids):
            try:
                batch = services.get_batch_for(request_user(request), batch_id)
                services.cancel_batch(batch, by=request_user(request))
                canceled.append(batch_json(Batch.objects.select_related("device").get(pk=batch.pk)))
            except (NotFound, Conflict) as exc:
                errors[str(batch_id)] = exc.message
        return ok({"batches": canceled, "errors": errors})

    return committed(envelope(CancelBatchesOut), cancel_each)


@router.get("/api/v2/batches/{batch_id}", response={200: envelope(BatchOut), **ERRORS})
def get_batch(request: HttpRequest, batch_id: UUID) -> dict[str, Any]:
    batch = services.get_batch_for(request_user(request), batch_id)
    return ok(batch_json(batch, with_sequence=True, with_jobs=True))


def _batch_status(user: User, batch_id: UUID) -> tuple[str, dict[str, int]]:
    try:
        batch = services.get_batch_for(user, batch_id)
        return batch.status, batch.job_counts
    finally:
        release_connection()


def _still_running(state: tuple[str, dict[str, int]]) -> bool:
    status, counts = state
    return status in ACTIVE_STATUSES and bool(counts[JobStatus.PENDING] or counts[JobStatus.RUNNING])


def _ended_jobs(state: tuple[str, dict[str, int]]) -> int:
    return sum(count for status, count in state[1].items() if status not in (JobStatus.PENDING, JobStatus.RUNNING))


@router.get("/api/v1/batches/{batch_id}/status", response={200: envelope(BatchStatusOut), **ERRORS})
async def get_batch_status(request: HttpRequest, batch_id: UUID) -> dict[str, Any]:
    """Held (issue 19): while the batch has pending or running jobs, answer when one of them
    ends, the batch ends, or STATUS_HOLD_SECONDS pass, whichever comes first. Async: a held
    request costs no thread."""
    user = request_user(request)
    state = await sync_to_async(_batch_status)(user, batch_id)
    if settings.STATUS_HOLD_SECONDS > 0 and _still_running(state):
        ended = _ended_jobs(state)
        state = await events.hold(
            request,
            batch_id,
            lambda: sync_to_async(_batch_status)(user, batch_id),
            lambda now: not _still_running(now) or _ended_jobs(now) > ended,
        )
    status, counts = state
    return ok({"status": status, "jobs_count_per_status": counts})


@router.patch("/api/v2/batches/{batch_id}/complete", response={200: envelope(BatchOut), **ERRORS})
def close_batch(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    batch = services.get_batch_for(request_user(request), batch_id)
    return committed(envelope(BatchOut), lambda: ok(_full(services.close_batch(batch, by=request_user(request)))))


@router.patch("/api/v2/batches/{batch_id}/cancel", response={200: envelope(BatchOut), **ERRORS})
def cancel_batch(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    batch = services.get_batch_for(request_user(request), batch_id)

    def cancel() -> dict[str, Any]:
        services.cancel_batch(batch, by=request_user(request))
        return ok(_full(batch))

    return committed(envelope(BatchOut), cancel)


@router.post("/api/v2/batches/{batch_id}/jobs", response={200: envelope(BatchOut), **ERRORS})
def add_jobs(request: HttpRequest, batch_id: UUID, jobs: Body[Jobs]) -> Any:
    check_depth(request)
    check_json(jobs, "jobs")
    batch = services.get_batch_for(request_user(request), batch_id)
    return idempotent(
        request,
        envelope(BatchOut),
        lambda: ok(_full(services.add_jobs(batch, jobs, by=request_user(request)))),
    )


@router.patch("/api/v1/batches/{batch_id}/tags", response={200: envelope(BatchOut), **ERRORS})
def set_tags(request: HttpRequest, batch_id: UUID, tags: Body[list[str]]) -> HttpResponse:
    check_json(tags, "tags")
    batch = services.get_batch_for(request_user(request), batch_id)
    return committed(envelope(BatchOut), lambda: ok(_full(services.set_tags(batch, tags))))


@router.post("/api/v1/batches/{batch_id}/rebatch", response={200: envelope(BatchOut), **ERRORS})
def rebatch(request: HttpRequest, batch_id: UUID, filters: Query[RebatchFilter]) -> HttpResponse:
    batch = services.get_batch_for(request_user(request), batch_id)
    jobs = filter_jobs(batch.jobs.all(), filters).order_by("order")
    return committed(envelope(BatchOut), lambda: ok(_full(services.rebatch(batch, jobs, by=request_user(request)))))


@router.patch("/api/v2/batches/{batch_id}/cancel/jobs", response={200: envelope(CancelJobsOut), **ERRORS})
def cancel_jobs(request: HttpRequest, batch_id: UUID, filters: Query[CancelJobFilter]) -> HttpResponse:
    batch = services.get_batch_for(request_user(request), batch_id)

    def cancel() -> dict[str, Any]:
        report, errors = services.cancel_jobs(batch, filter_jobs(batch.jobs.all(), filters), by=request_user(request))
        return ok(cancel_jobs_json(report.canceled, errors))

    return committed(envelope(CancelJobsOut), cancel)


class SweepQuery(Schema):
    observable: Literal["excitation", "mean_excited", "bitstring"] = "mean_excited"
    x: str | None = None
    series: str | None = None
    atom: int = Field(0, ge=0, le=10_000)
    bitstring: str | None = Field(None, max_length=1000)


class SweepPoint(Schema):
    x: float | str | None
    y: float
    err: float
    jobs: int
    shots: int


class SweepSeries(Schema):
    label: str
    points: list[SweepPoint]


class SweepOut(Schema):
    observable: str
    label: str
    x: str | None
    series: str | None
    numeric_x: bool
    finished_jobs: int
    variables: list[str]
    datasets: list[SweepSeries]


@router.get("/api/v1/batches/{batch_id}/sweep", response={200: envelope(SweepOut), **ERRORS})
def get_sweep(request: HttpRequest, batch_id: UUID, query: Query[SweepQuery]) -> dict[str, Any]:
    """An observable of the finished jobs against a variable (and a second one as series), with
    the shots' standard error: computed from the stored counters (`batches.sweeps`)."""
    for name in ("x", "series", "bitstring"):
        check_json(getattr(query, name), name)
    batch = services.get_batch_for(request_user(request), batch_id)
    return ok(
        sweeps.sweep_with_defaults(
            batch,
            observable=query.observable,
            x=query.x,
            series=query.series,
            atom=query.atom,
            bitstring=query.bitstring,
        )
    )
