"""Batch services: submit, add jobs, close, cancel, rebatch, retry, tags.

The API, the portal and the Celery tasks all call these; they hold the rules.
Validation (pulser deserialize + build) happens before anything is written, so a
refused submission creates and charges nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from pulser import Sequence as PulserSequence

from backends.adapters import Adapter, get_adapter
from backends.models import Device
from backends.sequences import build, check_variables, sequence_cache
from batches import lifecycle, scheduler
from batches.lifecycle import CancelReport
from batches.models import WORKLOAD_TAG, Batch, BatchStatus, Priority, Workload
from batches.webhooks import check_webhook_url
from jobs.filters import filter_jobs
from jobs.models import Job, JobStatus
from portal import credits, events
from portal.bulk import insert_rows
from portal.errors import Conflict, InvalidInput, NotFound
from portal.models import Project


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


def check_sequence(adapter: Adapter, text: str, *, field: str) -> PulserSequence:
    """The sequence deserialized (once per text, cached) and accepted by the device, else a 400
    naming `field`."""
    seq = sequence_cache.get(text, field=field)
    errors = adapter.validate_sequence(seq)
    if errors:
        raise InvalidInput(" ".join(errors), field=field)
    return seq


def check_job(adapter: Adapter, seq: PulserSequence, spec: JobSpec, *, where: str) -> None:
    """One job's variables declared by the sequence, built by pulser, and accepted by the device."""
    built = build(seq, check_variables(seq, spec.variables, where=where), where=where)
    errors = adapter.validate(built, spec.runs)
    if errors:
        raise InvalidInput(f"{where}: " + " ".join(errors))


def _validate_jobs(adapter: Adapter, batch_sequence: str | None, specs: Sequence[JobSpec], first_index: int) -> None:
    """Each distinct sequence checked once (the batch's is most jobs' one), each job built once."""
    checked: dict[str, PulserSequence] = {}
    for index, spec in enumerate(specs, start=first_index):
        where = f"Job {index}"
        text = spec.sequence or batch_sequence
        if text is None:
            raise InvalidInput(f"{where}: no sequence: give 'sequence_builder' for the batch or a job 'sequence'.")
        if text not in checked:
            checked[text] = check_sequence(adapter, text, field="sequence" if spec.sequence else "sequence_builder")
        check_job(adapter, checked[text], spec, where=where)


def resolve_device(
    name: Any, *, sequence_builder: str | None = None, field: str = "device_type", label: str = "Device"
) -> Device:
    """The device named `name` (a batch's `device_type`, a workload's `backend`), accepting work.

    With no name, the device the sequence was written for if we have it, else EMU_FREE. Unknown
    or DOWN: a 400 naming `field`."""
    if name is None:
        name = "EMU_FREE"
        if sequence_builder:
            seq_device = sequence_cache.get(sequence_builder).device
            if Device.objects.filter(name=seq_device.name).exists():
                name = seq_device.name
    device = Device.objects.filter(name=name).first() if isinstance(name, str) else None
    if device is None:
        names = ", ".join(Device.objects.order_by("name").values_list("name", flat=True))
        raise InvalidInput(f"Unknown {field} {name!r}. Available {field}s: {names}.", field=field)
    if device.status == Device.Status.DOWN:
        reason = f": {device.status_reason}" if device.status_reason else "."
        raise InvalidInput(f"{label} {device.name} is DOWN{reason}", field=field)
    return device


def check_accepts_work(project: Project) -> None:
    """An archived project keeps its history but runs nothing new: no batch, no job, no charge."""
    if project.status != Project.Status.ACTIVE:
        raise Conflict(
            f"Project '{project.name}' is {project.get_status_display().lower()}: it accepts no new batches or jobs.",
            field="project_id",
        )


def _new_jobs(batch: Batch, specs: Sequence[JobSpec], user: User, start: int) -> list[dict[str, Any]]:
    """The jobs' rows, ready for `insert_rows`: plain dicts, ids made here. With the times
    `insert_rows` adds, every column a job shows (the API answers from them)."""
    device = batch.device
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
            "price": credits.job_price(device, spec.runs),
        }
        for i, spec in enumerate(specs)
    ]


@dataclass(frozen=True)
class Quote:
    """What a would-be submission costs and what it leaves: the price `charge_jobs` would charge."""

    device: str
    jobs: int
    runs: int
    price: int
    balance: int
    cap: int | None = None
    cap_period: str | None = None
    cap_used: int | None = None

    @property
    def balance_after(self) -> int:
        return self.balance - self.price

    @property
    def cap_left(self) -> int | None:
        return None if self.cap is None or self.cap_used is None else self.cap - self.cap_used

    @property
    def refusal(self) -> str | None:
        """Why the submission would be refused with a 402 now (None if it would be charged)."""
        if self.cap_left is not None and self.price > self.cap_left:
            return "spending_cap"
        if self.price > self.balance:
            return "insufficient_credits"
        return None


def quote(
    project: Project, user: User, *, jobs: Any, device_type: str | None = None, sequence_builder: str | None = None
) -> Quote:
    """Price a submission without writing anything: the jobs' shapes checked as `create_batch`
    checks them, the device resolved the same way, each job priced by `credits.job_price`.

    Not validated by pulser: the price depends on runs and device only, and an estimate must
    answer while the user types. An archived project is refused as its submission would be."""
    check_accepts_work(project)
    specs = jobs if parse_done(jobs) else parse_job_specs(jobs)
    device = resolve_device(device_type, sequence_builder=sequence_builder)
    runs = [spec.runs for spec in specs]
    cap = credits.cap_of(project, user)
    return Quote(
        device=device.name,
        jobs=len(specs),
        runs=sum(runs),
        price=credits.price_of(device, runs),
        balance=credits.balance_of(project),
        cap=cap.amount if cap else None,
        cap_period=cap.period if cap else None,
        cap_used=credits.cap_usage(cap) if cap else None,
    )


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
    """Validate, then create the batch and its jobs and charge them, all or nothing (402).

    Validation (pulser builds) runs before the transaction: SQLite's one write lock is not held
    meanwhile, and a refused submission has written nothing."""
    check_accepts_work(project)
    specs = jobs if parse_done(jobs) else parse_job_specs(jobs)
    if sequence_builder is None and not specs:
        raise InvalidInput("'sequence_builder' is required (or a 'sequence' on every job).", field="sequence_builder")
    if sequence_builder is not None:
        sequence_cache.get(sequence_builder)
    device = resolve_device(device_type, sequence_builder=sequence_builder)
    tags = clean_tags(tags)
    if webhook:
        check_webhook_url(webhook)
    adapter = get_adapter(device)
    if validate:
        config_errors = adapter.validate_configuration(configuration)
        if config_errors:
            raise InvalidInput(" ".join(config_errors), field="configuration")
        _validate_jobs(adapter, sequence_builder, specs, 0)
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
        credits.charge_jobs(batch, [(row["id"], row["price"]) for row in rows], by=user)
        insert_rows(Job, rows)
        transaction.on_commit(lambda: scheduler.advance(device.pk), robust=True)
        events.batch_changed(batch.pk)
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
    check_accepts_work(batch.project)
    specs = raw_jobs if parse_done(raw_jobs) else parse_job_specs(raw_jobs, first_index=batch.jobs_count)
    # Early, before the costly validation. A stale `batch` can only be behind the database
    # (states move forward), so a refusal here is right; a pass is re-checked under the lock.
    _check_open(batch)
    _validate_jobs(get_adapter(batch.device), batch.sequence_builder, specs, batch.jobs_count)
    with transaction.atomic():
        locked = lifecycle.lock_batch(batch.pk)
        assert locked is not None  # batches are never deleted while open
        # These are the caller's: a batch never changes device, project, owner or sequence
        # (the lock does not read the sequence).
        locked.device, locked.project, locked.user = batch.device, batch.project, batch.user
        locked.sequence_builder = batch.sequence_builder
        _check_open(locked)
        has_active_job = bool(locked.pending_jobs or locked.running_jobs)
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
        # The job is sent before the waiters are told: on commit, hooks run in this order.
        if idle_running:
            first = rows[0]["id"]
            transaction.on_commit(lambda: scheduler.send_jobs([first], device.queue), robust=True)
        else:
            transaction.on_commit(lambda: scheduler.advance(device.pk), robust=True)
        events.batch_changed(batch.pk)
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
    lifecycle.close_batch(batch.pk)
    scheduler.advance(batch.device_id)
    return Batch.objects.select_related("device", "project", "user").get(pk=batch.pk)


def cancel_job(job: Job, *, by: User | None) -> CancelReport:
    """Rule 7: only a PENDING job can be canceled; it is refunded once."""
    with transaction.atomic():
        lifecycle.lock_batch(job.batch_id)
        report = lifecycle.stop_pending_jobs(
            job.batch_id, JobStatus.CANCELED, by=by, reason="Job canceled.", only=Job.objects.filter(pk=job.pk)
        )
        if not report.canceled:
            current = Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
            raise Conflict(f"Job {job.id} is {current}: only a PENDING job can be canceled.")
        device_id = Batch.objects.values_list("device_id", flat=True).get(pk=job.batch_id)
        transaction.on_commit(lambda: scheduler.advance(device_id), robust=True)
    job.refresh_from_db()
    return report


def cancel_batch(batch: Batch, *, by: User | None) -> CancelReport:
    """Rule 8: PENDING leaves the queue; RUNNING cancels pending jobs, a running job finishes."""
    with transaction.atomic():
        report = lifecycle.cancel_batch(batch, by=by)
        if report is None:
            current = Batch.objects.values_list("status", flat=True).get(pk=batch.pk)
            raise Conflict(f"Batch {batch.id} is {current}: it can no longer be canceled.")
        device_id = batch.device_id
        transaction.on_commit(lambda: scheduler.advance(device_id), robust=True)
    return report


def cancel_jobs(batch: Batch, jobs: QuerySet[Job], *, by: User | None) -> tuple[CancelReport, dict[str, str]]:
    """Cancel the PENDING jobs among `jobs`; the others are reported with the reason."""
    errors = {
        str(pk): f"Job {pk} is {status}: only a PENDING job can be canceled."
        for pk, status in jobs.exclude(status=JobStatus.PENDING).values_list("pk", "status")
    }
    with transaction.atomic():
        lifecycle.lock_batch(batch.pk)
        report = lifecycle.stop_pending_jobs(batch.pk, JobStatus.CANCELED, by=by, reason="Job canceled.", only=jobs)
        device_id = batch.device_id
        transaction.on_commit(lambda: scheduler.advance(device_id), robust=True)
    return report, errors


def rebatch(batch: Batch, jobs: Iterable[Job] | None = None, *, by: User, filters: Any = None) -> Batch:
    """Rule 9: a new closed batch, `parent` = `batch`, with copies of the matching jobs, charged anew.

    `filters` is the SDK's RebatchFilters shape (id, status, min_runs, max_runs,
    start_date, end_date; any object with those attributes); without it or `jobs`,
    every job of the batch is copied, in submission order.
    """
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
    return Batch.objects.select_related("device", "project", "user").get(pk=batch.pk)


def batches_for(user: User) -> QuerySet[Batch]:
    """Batches of the user's projects; the starting point of every batch lookup."""
    return Batch.objects.filter(project__memberships__user=user)


def get_batch_for(user: User, batch_id: UUID | str) -> Batch:
    """A batch of one of the user's projects, with its device, project and submitter, else
    NotFound (404, never 403: ids don't leak)."""
    try:
        batch = batches_for(user).select_related("device", "project", "user").filter(pk=batch_id).first()
    except ValidationError:  # not a UUID: no such batch, said the same way
        batch = None
    if batch is None:
        raise NotFound(f"Batch {batch_id} not found.")
    return batch
