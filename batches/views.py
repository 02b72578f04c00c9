"""Batch pages: thin views over the batch services (the same functions the API calls)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.functional import cached_property
from django.views.decorators.http import require_POST

from backends.models import Device
from batches import services, workloads
from batches.models import Batch, BatchStatus
from batches.progress import outcome
from batches.queue import read_queue
from jobs.downloads import results_zip_response
from jobs.filters import counted_statuses, filter_jobs
from jobs.models import JobStatus
from portal.access import current_project_for, request_user
from portal.errors import NotFound, TweezerError
from portal.forms import AddJobsForm, BatchFilterForm, JobFilterForm, NewBatchForm, in_physicist_words

JOBS_PER_PAGE = 50
POLL_FIRST, POLL_MAX = 2, 20


def _batch(request: HttpRequest, batch_id: UUID) -> Batch:
    try:
        return services.get_batch_for(request_user(request), batch_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@login_required
def batch_list(request: HttpRequest) -> HttpResponse:
    project, _ = current_project_for(request)
    if project is None:
        return render(request, "batches/list.html", {"page": None, "rows": [], "form": BatchFilterForm()})
    form = BatchFilterForm(request.GET or None)
    # `project` comes from the user's memberships; filtering on it alone lets the database
    # walk the (project, -created_at) index instead of joining memberships for every row.
    batches = (
        Batch.objects.filter(project=project)
        .select_related("device", "user")
        .defer("sequence_builder", "configuration", "backend_configuration", "webhook")
    )
    batches = form.apply(batches) if request.GET else batches.order_by("-created_at", "-pk")
    page = CappedPaginator(batches, 25).get_page(request.GET.get("page"))
    rows = _with_counts(list(page.object_list))
    context = {"page": page, "rows": rows, "form": form, "filter_query": _without(request.GET, "page")}
    return render(request, "batches/list.html", context)


# The columns of the batch page's job rows (batches/partials/_jobs.html), read as dicts: no
# job's own sequence or errors (they can be large).
JOB_ROW_FIELDS = (
    "id", "order", "status", "runs", "variables", "parent_id", "price",
    "start_timestamp", "end_timestamp", "result_path",
)  # fmt: skip


class KnownCountPaginator(Paginator):
    """A paginator told its count by a caller that already knows it."""

    capped = False  # as CappedPaginator's, for portal/_pager.html

    def __init__(self, object_list: Any, per_page: int, *, count: int | None = None) -> None:
        super().__init__(object_list, per_page)
        if count is not None:
            self.__dict__["count"] = count  # `count` is a cached_property: this is its cached value


def _count_from(counts: dict[str, int], job_filter: Any) -> int | None:
    """The number of matching jobs from the batch's per-status counts, when the filter allows
    (`counted_statuses`): the page reads them anyway, and the paginator's COUNT(*) over every
    job of the batch (10,000 rows for a large one) is spared."""
    statuses = counted_statuses(job_filter)
    return None if statuses is None else sum(counts.get(status, 0) for status in statuses)


class CappedPaginator(Paginator):
    """Counts at most COUNT_CAP rows: an exact COUNT(*) of 100,000 batches costs more than the page."""

    COUNT_CAP = 10_000

    @cached_property
    def count(self) -> int:
        # object_list is always a QuerySet here (stubs: any sliceable sequence)
        return int(self.object_list.order_by()[: self.COUNT_CAP + 1].count())  # type: ignore[attr-defined]

    @property
    def capped(self) -> bool:
        return self.count > self.COUNT_CAP


def _with_counts(batches: list[Batch]) -> list[dict[str, Any]]:
    """Job counts per status for one page of batches, from their rows (Batch.job_counts).
    Statuses with no job are left out, the others in order."""
    rows = []
    for b in batches:
        counts = b.job_counts
        rows.append({"batch": b, "counts": {s: n for s, n in counts.items() if n}, **_progress(counts, b.jobs_count)})
    return rows


def _progress(counts: dict[str, int], total: int) -> dict[str, Any]:
    return outcome(counts, total)


def queue_position(batch: Batch, now: datetime) -> dict[str, Any] | None:
    """Where a PENDING batch waits in its device's queue, when it should start (a p10-p90 band
    from the work ahead, batches/queue.py) and what holds the queue."""
    if batch.status != BatchStatus.PENDING:
        return None
    mine = next((e for e in read_queue(batch.device, now=now) if e.batch.id == batch.pk), None)
    if mine is None:  # started or canceled since the batch was read
        return None
    eta = None
    if mine.start is not None:
        eta = {
            "p10": mine.start[0] - now,
            "p90": mine.start[1] - now,
            "jobs_ahead": mine.jobs_ahead,
            "runs_ahead": mine.runs_ahead,
            "seconds_per_run": mine.seconds_per_run,
        }
    return {
        "position": mine.position,
        "eta": eta,
        "device_status": batch.device.status,
        "slots": batch.device.slots,
        "blockers": mine.blockers,
    }


def open_state(batch: Batch, now: datetime) -> dict[str, Any] | None:
    """An open batch still taking jobs: how many it has to run, or, idle and owning a slot,
    when it times out (rule 5) unless a job is added."""
    if not batch.open or batch.is_terminal:
        return None
    busy = batch.pending_jobs + batch.running_jobs
    deadline = None
    if batch.status == BatchStatus.RUNNING and not busy:
        deadline = batch.last_activity_at + timedelta(seconds=settings.OPEN_BATCH_TIMEOUT)
    return {"busy": busy, "deadline": deadline, "left": max(deadline - now, timedelta()) if deadline else None}


def timed_out(batch: Batch) -> dict[str, Any] | None:
    """Why and when a TIMED_OUT batch ended: idle since its last activity, for OPEN_BATCH_TIMEOUT."""
    if batch.status != BatchStatus.TIMED_OUT:
        return None
    return {
        "at": batch.end_datetime,
        "idle_since": batch.last_activity_at,
        "timeout": timedelta(seconds=settings.OPEN_BATCH_TIMEOUT),
    }


def _poll_interval(request: HttpRequest, fingerprint: str) -> int:
    """Poll every 2 s; back off (×2, up to 20 s) while nothing changes, reset on change."""
    try:
        previous = int(request.GET.get("poll", POLL_FIRST))
    except ValueError:
        previous = POLL_FIRST
    if request.GET.get("fp") == fingerprint:
        return min(max(previous, POLL_FIRST) * 2, POLL_MAX)
    return POLL_FIRST


@login_required
def batch_detail(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    return _render_detail(request, _batch(request, batch_id))


def _render_detail(request: HttpRequest, batch: Batch, add_form: AddJobsForm | None = None) -> HttpResponse:
    form = JobFilterForm(request.GET or None)
    # The batch was read at the start of this request, its counters with it (Batch.job_counts).
    counts, spent = batch.job_counts, batch.credits_spent
    now = timezone.now()
    job_filter = form.as_filter()
    jobs = filter_jobs(batch.jobs.all(), job_filter).order_by("order").values(*JOB_ROW_FIELDS)
    filter_query = _without(request.GET, "page", "poll", "fp", "fk")
    paginator = KnownCountPaginator(jobs, JOBS_PER_PAGE, count=_count_from(counts, job_filter))
    page = paginator.get_page(request.GET.get("page"))
    fingerprint = hashlib.sha1(
        repr((batch.status, batch.open, sorted(counts.items()))).encode(), usedforsecurity=False
    ).hexdigest()[:12]
    poll = _poll_interval(request, fingerprint)
    forms_key = f"{batch.status}-{int(batch.open)}"
    live_query = request.GET.copy()
    live_query.update({"poll": str(poll), "fp": fingerprint, "fk": forms_key})
    for key in ("poll", "fp", "fk"):
        live_query.setlist(key, live_query.getlist(key)[-1:])
    context = {
        "batch": batch,
        "jobs": page,
        "counts": counts,
        "form": form,
        "queue": queue_position(batch, now),
        "open_state": open_state(batch, now),
        "timed_out": timed_out(batch),
        "has_results": counts.get(JobStatus.DONE, 0) > 0,
        "poll": poll,
        "live_url": f"{request.path}?{live_query.urlencode()}",
        "filter_query": filter_query,
        "can_retry": batch.open and batch.status in (BatchStatus.PENDING, BatchStatus.RUNNING),
        "spent": spent,
        **_progress(counts, batch.jobs_count),
    }
    context["add_form"] = add_form or AddJobsForm()
    if request.htmx:  # type: ignore[attr-defined]  # set by django_htmx's HtmxMiddleware
        context["forms_changed"] = request.GET.get("fk") != forms_key
        return render(request, "batches/partials/_live.html", context)
    context["workload_id"] = workloads.workload_id_of(batch)
    return render(request, "batches/detail.html", context)


def _without(query: Any, *keys: str) -> str:
    copy = query.copy()
    for key in keys:
        copy.pop(key, None)
    return str(copy.urlencode())


def _back(batch: Batch) -> HttpResponse:
    return redirect("batches:detail", batch.pk)


def _report_cancel(request: HttpRequest, report: services.CancelReport, skipped: int = 0, prefix: str = "") -> None:
    text = f"{prefix}{_plural(len(report.canceled), 'job')} canceled, {_plural(report.refunded, 'credit')} refunded."
    if skipped:
        text += f" {_plural(skipped, 'job')} skipped: only PENDING jobs can be canceled."
    messages.success(request, text)


@login_required
@require_POST
def cancel_batch(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    batch = _batch(request, batch_id)
    try:
        report = services.cancel_batch(batch, by=request_user(request))
    except TweezerError as exc:
        messages.error(request, exc.message)
    else:
        _report_cancel(request, report, prefix="Batch canceled: ")
    return _back(batch)


@login_required
@require_POST
def close_batch(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    batch = _batch(request, batch_id)
    was_open = batch.open
    batch = services.close_batch(batch, by=request_user(request))
    if was_open:
        messages.success(request, f"Batch closed: no more jobs can be added. It is {batch.status}.")
    else:
        messages.info(request, "The batch was already closed.")
    return _back(batch)


@login_required
@require_POST
def add_jobs(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    """Rule 6 from the portal: the same service and checks as the API's add-jobs."""
    batch = _batch(request, batch_id)
    form = AddJobsForm(request.POST)
    if form.is_valid():
        try:
            updated = services.add_jobs(batch, form.read(), by=request_user(request))
        except TweezerError as exc:
            form.add_error(None, exc.message)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            added = updated.jobs_count - batch.jobs_count
            messages.success(request, f"{_plural(added, 'job')} added to the batch.")
            return _back(batch)
    # The typed jobs stay in the form, with the reason, on the batch page.
    return _render_detail(request, batch, add_form=form)


@login_required
def device_queue(request: HttpRequest, device_name: str) -> HttpResponse:
    """A device's running and waiting batches in the order they run, with the batch page's estimates.
    Other projects' batches show as such: their place in the queue, not their ids."""
    device = Device.objects.filter(name=device_name, is_public=True).first()
    if device is None:
        raise Http404(f"No device {device_name}.")
    project, _ = current_project_for(request)
    now = timezone.now()
    estimates = read_queue(device, now=now)
    rows = [
        {
            "estimate": e,
            "mine": project is not None and e.batch.project_id == project.pk,
            "starts_in": tuple(t - now for t in e.start) if e.start and e.position else None,
            "ends_in": tuple(max(t - now, timedelta()) for t in e.end) if e.end else None,
        }
        for e in estimates
    ]
    blockers = next((e.blockers for e in estimates if e.position), [])
    context = {"device": device, "rows": rows, "now": now, "blockers": blockers}
    return render(request, "batches/queue.html", context)


def _selected(request: HttpRequest, batch: Batch) -> Any:
    """The jobs ticked on the page, or, with "all matching", every job the page's filters match
    (the selection then spans pages)."""
    if request.POST.get("all_matching") == "1":
        return filter_jobs(batch.jobs.all(), JobFilterForm(request.POST).as_filter())
    ids = []
    for raw in request.POST.getlist("job"):
        try:
            ids.append(UUID(raw))
        except ValueError:
            continue
    return batch.jobs.filter(pk__in=ids)


@login_required
@require_POST
def cancel_jobs(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    batch = _batch(request, batch_id)
    selected = _selected(request, batch)
    if not selected.exists():
        messages.error(request, "Select at least one job to cancel.")
        return _back(batch)
    report, errors = services.cancel_jobs(batch, selected, by=request_user(request))
    _report_cancel(request, report, skipped=len(errors))
    return _back(batch)


@login_required
@require_POST
def retry_job(request: HttpRequest, batch_id: UUID, job_id: UUID) -> HttpResponse:
    batch = _batch(request, batch_id)
    job = batch.jobs.select_related("batch__device").filter(pk=job_id).first()
    if job is None:
        raise Http404(f"Job {job_id} not found.")
    try:
        updated = services.retry_job(job, by=request_user(request))
    except TweezerError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Job #{job.order} retried as job #{updated.jobs_count - 1}, charged {job.price} credits."
        )
    return _back(batch)


@login_required
@require_POST
def rebatch(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    batch = _batch(request, batch_id)
    form = JobFilterForm(request.POST)
    jobs = filter_jobs(batch.jobs.all(), form.as_filter()).order_by("order")
    try:
        new = services.rebatch(batch, jobs, by=request_user(request))
    except TweezerError as exc:
        messages.error(request, exc.message)
        return _back(batch)
    new.refresh_counters()
    charged = new.credits_spent
    messages.success(
        request,
        f"Rebatched {_plural(new.jobs_count, 'job')} of batch {str(batch.pk)[:8]} "
        f"into this new batch, charged {_plural(charged, 'credit')}.",
    )
    return redirect("batches:detail", new.pk)


@login_required
def download_results(request: HttpRequest, batch_id: UUID) -> HttpResponseBase:
    """GET: the results of every job that has some; POST: the selected jobs."""
    batch = _batch(request, batch_id)
    short = str(batch.pk)[:8]
    if request.method == "POST":
        selected = _selected(request, batch)
        if not selected.exists():
            messages.error(request, "Select at least one job to download.")
            return _back(batch)
        return results_zip_response(selected, batch_id=batch.pk, filename=f"batch-{short}-selected.zip")
    # Whatever finished can be downloaded, whatever the batch's status (a canceled or timed-out
    # batch keeps the results of its DONE jobs); the manifest lists the others with their status.
    batch.refresh_counters()
    if not batch.done_jobs:
        messages.error(request, "No job of this batch has finished with results yet.")
        return _back(batch)
    return results_zip_response(batch.jobs.all(), batch_id=batch.pk, filename=f"batch-{short}-results.zip")


@login_required
def new_batch(request: HttpRequest) -> HttpResponse:
    project, _ = current_project_for(request)
    if project is None:
        raise Http404("You are not a member of any project.")
    form = NewBatchForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            sequence, jobs = form.read()
            batch = services.create_batch(
                project,
                request_user(request),
                sequence_builder=sequence,
                jobs=jobs,
                device_type=form.cleaned_data["device_type"].name,
                open=form.cleaned_data["open"],
                tags=form.tag_list(),
            )
        except TweezerError as exc:
            form.add_error(None, in_physicist_words(exc.message))
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            batch.refresh_counters()
            messages.success(
                request,
                f"Batch created with {_plural(batch.jobs_count, 'job')}, "
                f"charged {_plural(batch.credits_spent, 'credit')}.",
            )
            return redirect("batches:detail", batch.pk)
    return render(request, "batches/new.html", {"form": form, "project": project})
