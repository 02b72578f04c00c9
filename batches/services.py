"""Batch services: submit, add jobs, close, cancel, rebatch, retry, tags.

The API, the portal and the Celery tasks all call these; they hold the rules.
Validation (pulser deserialize + build) happens before anything is written, so a
refused submission creates and charges nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from pulser import Sequence as PulserSequence

from backends.adapters import Adapter, get_adapter
from backends.models import Device
from backends.sequences import build, check_variables, sequence_cache
from batches import scheduler
from batches.models import (
    COUNTER_FIELDS,
    STATUS_COUNTERS,
    TERMINAL_BATCH_STATUSES,
    WORKLOAD_TAG,
    Batch,
    BatchStatus,
    Priority,
    Workload,
)
from jobs.models import Job, JobStatus
from portal import credits, sql
from portal.bulk import insert_rows, insert_rows_while, writes_while_working
from portal.errors import Conflict, InvalidInput, NotFound
from portal.models import CreditTransaction, Membership, Project


@dataclass(frozen=True)
class JobSpec:
    runs: int
    variables: dict[str, Any] | None
    sequence: str | None = None
    parent_id: UUID | None = None


def check_jobs_count(count: int) -> None:
    if count > settings.MAX_JOBS_PER_BATCH:
        raise InvalidInput(
            f"Too many jobs: {count} given, at most {settings.MAX_JOBS_PER_BATCH} per request.", field="jobs"
        )


def parse_job_specs(raw_jobs: Any, *, first_index: int = 0) -> list[JobSpec]:
    """Shape checks on the `jobs` list the SDK sends, with the job's index in every message."""
    if not isinstance(raw_jobs, list):
        raise InvalidInput("'jobs' must be a list of objects with 'runs' and 'variables'.", field="jobs")
    check_jobs_count(len(raw_jobs))
    specs = []
    for index, raw in enumerate(raw_jobs, start=first_index):
        where = f"Job {index}"
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where}: must be an object with 'runs' and 'variables'.", field="jobs")
        unknown = sorted(set(raw) - {"runs", "variables", "sequence"})
        if unknown:
            raise InvalidInput(f"{where}: unknown field {', '.join(map(repr, unknown))}.", field=unknown[0])
        runs = raw.get("runs")
        if not isinstance(runs, int) or isinstance(runs, bool):
            raise InvalidInput(f"{where}: 'runs' must be a whole number of shots; got {runs!r}.", field="runs")
        if runs < 1 or runs > settings.MAX_RUNS_PER_JOB:
            raise InvalidInput(
                f"{where}: 'runs' must be between 1 and {settings.MAX_RUNS_PER_JOB}; got {runs}.", field="runs"
            )
        variables = raw.get("variables")
        sequence = raw.get("sequence")
        if sequence is not None and not isinstance(sequence, str):
            raise InvalidInput(f"{where}: 'sequence' must be a string (Pulser abstract representation).")
        if sequence and variables:
            raise InvalidInput(f"{where}: a job with its own 'sequence' cannot also set 'variables'.")
        specs.append(JobSpec(runs=runs, variables=variables, sequence=sequence))
    return specs


def _validate_jobs(adapter: Adapter, batch_sequence: str | None, specs: Sequence[JobSpec], first_index: int) -> None:
    """Deserialize each distinct sequence once, build it once per job, ask the adapter."""
    checked: set[str] = set()
    batch_seq: PulserSequence | None = None  # the batch's sequence, once checked: most jobs use it
    for index, spec in enumerate(specs, start=first_index):
        where = f"Job {index}"
        text = spec.sequence or batch_sequence
        if text is None:
            raise InvalidInput(f"{where}: no sequence: give 'sequence_builder' for the batch or a job 'sequence'.")
        if spec.sequence is None and batch_seq is not None:
            seq = batch_seq
        else:
            seq = sequence_cache.get(text, field="sequence" if spec.sequence else "sequence_builder")
            if text not in checked:
                errors = adapter.validate_sequence(seq)
                if errors:
                    raise InvalidInput(" ".join(errors), field="sequence_builder")
                checked.add(text)
            if spec.sequence is None:
                batch_seq = seq
        variables = check_variables(seq, spec.variables, where=where)
        built = build(seq, variables, where=where)
        errors = adapter.validate(built, spec.runs)
        if errors:
            raise InvalidInput(f"{where}: " + " ".join(errors))


def resolve_device(device_type: str | None, sequence_builder: str | None) -> Device:
    """The batch's device; with no `device_type`, the device the sequence was written for."""
    if device_type is None:
        device_type = "EMU_FREE"
        if sequence_builder:
            seq_device = sequence_cache.get(sequence_builder).device
            if Device.objects.filter(name=seq_device.name).exists():
                device_type = seq_device.name
    device = Device.objects.filter(name=device_type).first()
    if device is None:
        names = ", ".join(Device.objects.values_list("name", flat=True))
        raise InvalidInput(f"Unknown device_type '{device_type}'. Available: {names}.", field="device_type")
    return device


def _check_device_accepts_work(device: Device) -> None:
    if device.status == Device.Status.DOWN:
        reason = f": {device.status_reason}" if device.status_reason else ""
        raise InvalidInput(f"Device {device.name} is DOWN{reason}", field="device_type")


def _new_jobs(batch: Batch, specs: Sequence[JobSpec], user: User, start: int) -> list[dict[str, Any]]:
    """The jobs' rows, ready for `insert_rows`: plain dicts, ids made here (1,000 `Job` instances
    cost more than their COPY). With the times `insert_rows` adds, every column a job shows."""
    price = batch.device.price_per_run
    return [
        {
            "id": uuid4(),
            "status": JobStatus.PENDING,
            "errors": None,
            "start_timestamp": None,
            "end_timestamp": None,
            "batch_id": batch.pk,
            "project_id": batch.project_id,
            "user_id": user.pk,
            "order": start + i,
            "runs": spec.runs,
            "variables": spec.variables,
            "sequence": spec.sequence,
            "parent_id": spec.parent_id,
            "price": spec.runs * price,
        }
        for i, spec in enumerate(specs)
    ]


def create_batch(
    project: Project,
    user: User,
    *,
    sequence_builder: str | None,
    jobs: Any,
    device_type: str | None = None,
    open: bool = False,
    tags: list[str] | None = None,
    webhook: str | None = None,
    configuration: dict[str, Any] | None = None,
    backend_configuration: str | None = None,
    priority: int = Priority.MEDIUM,
    parent: Batch | None = None,
    validate: bool = True,
) -> Batch:
    """Validate, then create the batch and its jobs and charge them, all or nothing (402)."""
    from batches.webhooks import check_webhook_url

    specs = jobs if parse_done(jobs) else parse_job_specs(jobs)
    if sequence_builder is None and not specs:
        raise InvalidInput("'sequence_builder' is required (or a 'sequence' on every job).", field="sequence_builder")
    if sequence_builder is not None:
        sequence_cache.get(sequence_builder)
    device = resolve_device(device_type, sequence_builder)
    _check_device_accepts_work(device)
    tags = clean_tags(tags)
    if webhook:
        check_webhook_url(webhook)
    adapter = get_adapter(device)
    if validate:
        config_errors = adapter.validate_configuration(configuration)
        if config_errors:
            raise InvalidInput(" ".join(config_errors), field="configuration")

    def check_jobs() -> None:
        if validate:
            _validate_jobs(adapter, sequence_builder, specs, 0)

    # On PostgreSQL a large submission's jobs are validated (pulser builds, in this process)
    # while the database writes them and their charges (on its own core); a refusal rolls the
    # rows back with the block. Otherwise they are validated first, outside the transaction:
    # SQLite's one write lock is not held while pulser builds.
    overlapped = writes_while_working(2 * len(specs))
    if not overlapped:
        check_jobs()
    with transaction.atomic():
        batch = Batch.objects.create(
            project=project,
            user=user,
            device=device,
            open=open,
            sequence_builder=sequence_builder,
            webhook=webhook or None,
            configuration=configuration,
            backend_configuration=backend_configuration,
            tags=tags,
            priority=priority,
            parent=parent,
            jobs_count=len(specs),
        )
        rows = _new_jobs(batch, specs, user, 0)
        total, charges = credits.charges_for(batch, [(row["id"], row["price"]) for row in rows], by=user)
        if overlapped:
            insert_rows_while(check_jobs, [(Job, rows), (CreditTransaction, charges)])
        else:
            insert_rows(Job, rows)
            insert_rows(CreditTransaction, charges)
        credits.pay(project, total)
        transaction.on_commit(lambda: scheduler.advance(device.pk), robust=True)
    batch.created_jobs = rows
    return batch


def parse_done(jobs: Any) -> bool:
    return isinstance(jobs, list) and all(isinstance(j, JobSpec) for j in jobs) and bool(jobs)


def clean_tags(tags: Any) -> list[str]:
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidInput("'tags' must be a list of strings.", field="tags")
    if len(tags) > 50 or any(len(t) > 100 or not t.strip() for t in tags):
        raise InvalidInput("'tags' takes at most 50 non-empty tags of at most 100 characters.", field="tags")
    # NUL cannot be stored in PostgreSQL's jsonb (a 500 there); no control character is a tag.
    if any(ch < " " or ch == "\x7f" for t in tags for ch in t):
        raise InvalidInput("'tags' may not contain control characters (NUL, newline, tab…).", field="tags")
    return list(dict.fromkeys(t.strip() for t in tags))


def add_jobs(batch: Batch, raw_jobs: Any, *, by: User) -> Batch:
    """Rule 6: jobs are added only to an open batch that is PENDING or RUNNING.

    Rule 4's promise (an added job starts at once) is kept without a full `advance`: a
    RUNNING batch owns its slot, so when none of its earlier jobs is pending or running the
    first new job is sent to the device queue straight from this transaction.
    """
    specs = raw_jobs if parse_done(raw_jobs) else parse_job_specs(raw_jobs, first_index=batch.jobs_count)
    # Early, before the costly validation. A stale `batch` can only be behind the database
    # (states move forward), so a refusal here is right; a pass is re-checked under the lock.
    _check_open(batch)
    _validate_jobs(get_adapter(batch.device), batch.sequence_builder, specs, batch.jobs_count)
    with transaction.atomic():
        # Lock the batch row only (of=self: not the joined device, which advance locks first).
        locked = Batch.objects.select_for_update(of=("self",)).select_related("device", "project").get(pk=batch.pk)
        has_active_job = Job.objects.filter(
            batch_id=batch.pk, status__in=[JobStatus.PENDING, JobStatus.RUNNING]
        ).exists()
        _check_open(locked)
        start = locked.jobs_count
        now = timezone.now()
        device = locked.device
        idle_running = (
            bool(specs)
            and locked.status == BatchStatus.RUNNING
            and device.status == Device.Status.UP
            and not has_active_job
        )
        rows = _new_jobs(locked, specs, by, start)
        if idle_running:
            rows[0]["dispatched_at"], rows[0]["dispatches"] = now, 1  # sent on commit, below
        insert_rows(Job, rows)
        Batch.objects.filter(pk=batch.pk).update(jobs_count=F("jobs_count") + len(specs), last_activity_at=now)
        credits.charge_jobs(locked, [(row["id"], row["price"]) for row in rows], by=by)
        if idle_running:
            first = rows[0]["id"]
            transaction.on_commit(lambda: scheduler.send_jobs([first], device.queue), robust=True)
        else:
            transaction.on_commit(lambda: scheduler.advance(device.pk), robust=True)
    # The locked row, brought up to date in memory: no need to read it back.
    locked.jobs_count, locked.last_activity_at = start + len(specs), now
    return locked


def _check_open(batch: Batch) -> None:
    # The status first: "is TIMED_OUT" tells the user more than "is closed".
    if batch.status not in (BatchStatus.PENDING, BatchStatus.RUNNING):
        raise Conflict(f"Batch {batch.id} is {batch.status}: jobs can no longer be added.")
    if not batch.open:
        raise Conflict(f"Batch {batch.id} is closed: jobs can no longer be added.")


def retry_job(job: Job, *, by: User) -> Batch:
    """Rule 10: append a copy of `job` to its open batch, remembering which job it retries."""
    spec = JobSpec(runs=job.runs, variables=job.variables, sequence=job.sequence, parent_id=job.pk)
    return add_jobs(job.batch, [spec], by=by)


def close_batch(batch: Batch, *, by: User | None) -> Batch:
    """Rule 6: closing is idempotent; the batch ends DONE once its jobs are terminal."""
    Batch.objects.filter(pk=batch.pk, open=True).update(open=False, last_activity_at=timezone.now())
    scheduler.advance(batch.device_id)
    return Batch.objects.get(pk=batch.pk)


@dataclass
class CancelReport:
    canceled: list[Job]
    refunded: int


def cancel_job(job: Job, *, by: User | None) -> CancelReport:
    """Rule 7: only a PENDING job can be canceled; it is refunded once."""
    with transaction.atomic():
        # Batch before job (the lock order of cancel_batch and the reaper): no deadlock.
        device_id = Batch.objects.select_for_update().filter(pk=job.batch_id).values_list("device_id", flat=True).get()
        won = Job.objects.filter(pk=job.pk, status=JobStatus.PENDING).update(
            status=JobStatus.CANCELED, end_timestamp=timezone.now(), dispatched_at=None
        )
        if not won:
            current = Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
            raise Conflict(f"Job {job.id} is {current}: only a PENDING job can be canceled.")
        refunded = credits.refund_job(job, by=by, reason="Job canceled.")
        Batch.objects.filter(pk=job.batch_id).update(last_activity_at=timezone.now())
        transaction.on_commit(lambda: scheduler.advance(device_id), robust=True)
    job.refresh_from_db()
    return CancelReport(canceled=[job], refunded=refunded)


def cancel_pending_jobs(
    batch: Batch, *, by: User | None, reason: str, only: QuerySet[Job] | None = None
) -> CancelReport:
    """Cancel and refund the batch's PENDING jobs (all, or those in `only`). Caller holds a transaction."""
    pending = (only if only is not None else batch.jobs.all()).filter(status=JobStatus.PENDING)
    # Lock the rows: a worker's conditional PENDING->RUNNING waits, then finds them CANCELED.
    jobs = list(pending.select_for_update().order_by("order"))
    if not jobs:
        return CancelReport(canceled=[], refunded=0)
    now = timezone.now()
    Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.PENDING).update(
        status=JobStatus.CANCELED, end_timestamp=now, dispatched_at=None
    )
    refunded = credits.refund_jobs(jobs, by=by, reason=reason)
    for job in jobs:
        job.status, job.end_timestamp = JobStatus.CANCELED, now
    return CancelReport(canceled=jobs, refunded=refunded)


def cancel_batch(batch: Batch, *, by: User | None) -> CancelReport:
    """Rule 8: PENDING leaves the queue; RUNNING cancels pending jobs, a running job finishes."""
    with transaction.atomic():
        won = Batch.objects.filter(pk=batch.pk, status__in=[BatchStatus.PENDING, BatchStatus.RUNNING]).update(
            status=BatchStatus.CANCELED, end_datetime=timezone.now(), open=False
        )
        if not won:
            current = Batch.objects.values_list("status", flat=True).get(pk=batch.pk)
            raise Conflict(f"Batch {batch.id} is {current}: it can no longer be canceled.")
        report = cancel_pending_jobs(batch, by=by, reason="Batch canceled.")
        device_id = batch.device_id
        transaction.on_commit(lambda: scheduler.advance(device_id), robust=True)
        scheduler._notify(batch.pk)
    return report


def cancel_jobs(batch: Batch, jobs: QuerySet[Job], *, by: User | None) -> tuple[CancelReport, dict[str, str]]:
    """Cancel the PENDING jobs among `jobs`; the others are reported with the reason."""
    errors = {
        str(pk): f"Job {pk} is {status}: only a PENDING job can be canceled."
        for pk, status in jobs.exclude(status=JobStatus.PENDING).values_list("pk", "status")
    }
    with transaction.atomic():
        Batch.objects.select_for_update().filter(pk=batch.pk).values_list("pk", flat=True).first()
        report = cancel_pending_jobs(batch, by=by, reason="Job canceled.", only=jobs)
        if report.canceled:
            Batch.objects.filter(pk=batch.pk).update(last_activity_at=timezone.now())
        device_id = batch.device_id
        transaction.on_commit(lambda: scheduler.advance(device_id), robust=True)
    return report, errors


def rebatch(batch: Batch, jobs: Iterable[Job] | None = None, *, by: User, filters: Any = None) -> Batch:
    """Rule 9: a new closed batch, `parent` = `batch`, with copies of the matching jobs, charged anew.

    `filters` is the SDK's RebatchFilters shape (id, status, min_runs, max_runs,
    start_date, end_date; any object with those attributes); without it or `jobs`,
    every job of the batch is copied, in submission order.
    """
    from jobs.filters import filter_jobs

    if batch.open:
        raise Conflict(f"Batch {batch.id} is still open: close it before rebatching its jobs.")
    if jobs is None:
        selected = batch.jobs.all()
        if filters is not None:
            selected = filter_jobs(selected, _RebatchFilters.of(filters))
        jobs = selected.order_by("order")
    specs = [JobSpec(runs=j.runs, variables=j.variables, sequence=j.sequence) for j in jobs]
    if not specs:
        raise InvalidInput("No job of this batch matches the filters: nothing to rebatch.")
    tags = batch.tags
    if Workload.objects.filter(batch=batch).exists():
        # The copy is an ordinary batch: it must not look like the workload it came from.
        tags = [tag for tag in tags or [] if tag != WORKLOAD_TAG]
    return create_batch(
        batch.project,
        by,
        sequence_builder=batch.sequence_builder,
        jobs=specs,
        device_type=batch.device.name,
        tags=tags,
        webhook=batch.webhook,
        configuration=batch.configuration,
        backend_configuration=batch.backend_configuration,
        priority=batch.priority,
        parent=batch,
        validate=False,
    )


@dataclass
class _RebatchFilters:
    """The subset of job filters rebatch takes; missing attributes mean "any"."""

    id: list[Any] | None = None
    status: list[str] | None = None
    min_runs: int | None = None
    max_runs: int | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None

    @classmethod
    def of(cls, filters: Any) -> _RebatchFilters:
        get = filters.get if isinstance(filters, dict) else lambda name: getattr(filters, name, None)
        return cls(**{name: get(name) for name in cls.__dataclass_fields__})


def set_tags(batch: Batch, tags: Any) -> Batch:
    Batch.objects.filter(pk=batch.pk).update(tags=clean_tags(tags), updated_at=timezone.now())
    return Batch.objects.get(pk=batch.pk)


def jobs_count_per_status(batch: Batch) -> dict[str, int]:
    return counts_and_spent(batch)[0]


# Kept on the batch row by the database (batches.models.COUNTER_FIELDS): read fresh, not from
# the instance, which may be older than the row.
_COUNTERS_SQL = (
    f"SELECT {', '.join(sql.column(Batch, name, 'b') for name in COUNTER_FIELDS)}"
    f" FROM {Batch._meta.db_table} b WHERE b.id = %s"
)


def counts_and_spent(batch: Batch) -> tuple[dict[str, int], int]:
    """The batch's jobs per status (every status, 0 if none) and the credits its charges minus
    refunds took (`spent_on`): one row, whatever the number of jobs."""
    *counts, total = sql.fetch(_COUNTERS_SQL, [sql.param(Batch, "id", batch.pk)], [None] * len(COUNTER_FIELDS))[0]
    return dict(zip(STATUS_COUNTERS, map(int, counts), strict=True)), int(total)


def spent_on(batch: Batch) -> int:
    """Credits the batch's charges took, minus its refunds."""
    return counts_and_spent(batch)[1]


def jobs_in_order(batch: Batch, fields: tuple[str, ...], offset: int, limit: int) -> list[dict[str, Any]]:
    """`fields` of the batch's jobs number `offset` to `offset + limit - 1` in submission order,
    as a queryset's `.values(*fields)` gives them. The batch page's rows when no filter is set:
    SQL, as the counts above, because the page asks at every poll while its jobs move."""
    query, model_fields = _jobs_in_order_sql(fields)
    rows = sql.fetch(query, [sql.param(Job, "batch", batch.pk), limit, offset], model_fields)
    return [dict(zip(fields, row, strict=True)) for row in rows]


@functools.cache
def _jobs_in_order_sql(fields: tuple[str, ...]) -> tuple[str, list[Any]]:
    selected = ", ".join(sql.column(Job, name, "j") for name in fields)
    order = sql.column(Job, "order", "j")
    query = f"SELECT {selected} FROM {Job._meta.db_table} j WHERE j.batch_id = %s ORDER BY {order} LIMIT %s OFFSET %s"
    return query, [Job._meta.get_field(name) for name in fields]


def batches_for(user: User) -> QuerySet[Batch]:
    return Batch.objects.filter(project__memberships__user=user)


def get_batch_for(user: User, batch_id: UUID | str) -> Batch:
    """A batch of one of the user's projects, with its device, project and submitter, else
    NotFound (404, never 403: ids don't leak)."""
    try:
        found = sql.fetch(_BATCH_FOR_SQL, [sql.param(Batch, "id", batch_id), user.pk], _BATCH_FOR_FIELDS)
    except ValidationError:  # not a UUID: no such batch, said the same way
        found = []
    if not found:
        raise NotFound(f"Batch {batch_id} not found.")
    return _batch_with_relations(found[0])


# Every batch endpoint and page starts here (the SDK polls it): SQL, because Django took longer
# to build this four-table select than PostgreSQL takes to answer it.
_RELATED = {"device": (Device, "d"), "project": (Project, "p"), "user": (User, "u")}  # field: (model, alias)
_BATCH_COLUMNS, _BATCH_FIELDS = sql.columns(Batch, "b")
_RELATED_COLUMNS = {name: sql.columns(model, alias) for name, (model, alias) in _RELATED.items()}
_BATCH_FOR_FIELDS = _BATCH_FIELDS + [f for _, fields in _RELATED_COLUMNS.values() for f in fields]
_BATCH_FOR_SQL = (
    f"SELECT {_BATCH_COLUMNS}, {', '.join(cols for cols, _ in _RELATED_COLUMNS.values())}"
    f" FROM {Batch._meta.db_table} b"
    f" JOIN {Device._meta.db_table} d ON d.id = b.device_id"
    f" JOIN {Project._meta.db_table} p ON p.id = b.project_id"
    f" JOIN {User._meta.db_table} u ON u.id = b.user_id"
    f" WHERE b.id = %s AND EXISTS (SELECT 1 FROM {Membership._meta.db_table} m"
    "  WHERE m.project_id = b.project_id AND m.user_id = %s)"
)


def _batch_with_relations(values: list[Any]) -> Batch:
    batch: Batch = sql.instance(Batch, _BATCH_FIELDS, values[: len(_BATCH_FIELDS)])
    at = len(_BATCH_FIELDS)
    for name, (model, _) in _RELATED.items():
        fields = _RELATED_COLUMNS[name][1]
        related = sql.instance(model, fields, values[at : at + len(fields)])
        Batch._meta.get_field(name).set_cached_value(batch, related)  # type: ignore[union-attr]
        at += len(fields)
    return batch


def is_terminal(status: str) -> bool:
    return status in TERMINAL_BATCH_STATUSES


def has_tag(tag: str) -> Q:
    """Batches carrying `tag` (JSON containment; SQLite has none: match the quoted string)."""
    if connection.features.supports_json_field_contains:
        return Q(tags__contains=[tag])
    return Q(tags__icontains=json.dumps(tag))


def created_between(qs: QuerySet[Any], start: datetime | None, end: datetime | None) -> QuerySet[Any]:
    if start:
        qs = qs.filter(created_at__gte=start)
    if end:
        qs = qs.filter(created_at__lte=end)
    return qs
