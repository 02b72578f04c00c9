"""Issue 21 pages of a batch that are not its page: the sweep plot and its CSV, and the exports
of a filtered selection of jobs (one batch's, or the whole filtered batches list's)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_POST

from batches import services, sweeps
from batches.models import Batch
from jobs.downloads import results_zip_response
from jobs.filters import filter_jobs
from jobs.models import Job
from portal.access import current_project_for, request_user
from portal.errors import NotFound, TweezerError
from portal.forms import BatchFilterForm, JobFilterForm, jobs_from_table
from portal.middleware import json_depth_ok
from portal.wire import check_json


def _batch(request: HttpRequest, batch_id: UUID) -> Batch:
    try:
        return services.get_batch_for(request_user(request), batch_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def _int(value: str | None, default: int = 0) -> int:
    try:
        return max(int(value or default), 0)
    except ValueError:
        return default


@login_required
def sweep(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    """The sweep plot: a page of its own, or (HTMX) the chart and its pickers alone, so the
    batch page can include it with one line."""
    batch = _batch(request, batch_id)
    params: dict[str, Any] = {
        "observable": request.GET.get("observable") or "mean_excited",
        "x": request.GET.get("x") or None,
        "series": request.GET.get("series") or None,
        "atom": _int(request.GET.get("atom")),
        "bitstring": (request.GET.get("bitstring") or "").strip() or None,
    }
    error = None
    try:
        data = sweeps.sweep_with_defaults(batch, **params)
    except TweezerError as exc:
        error = exc.message
        data = sweeps.sweep_with_defaults(batch)
    context: dict[str, Any] = {
        "batch": batch,
        "sweep": data,
        "sweep_json": json.dumps(data),
        "params": params,
        "error": error,
        "observables": sweeps.OBSERVABLES,
        "csv_query": request.GET.urlencode(),
    }
    template = "batches/partials/_sweep.html" if request.htmx else "batches/sweep.html"  # type: ignore[attr-defined]  # django_htmx
    return render(request, template, context)


class _Echo:
    def write(self, value: str) -> str:
        return value


@login_required
def sweep_csv(request: HttpRequest, batch_id: UUID) -> StreamingHttpResponse:
    """One row per job (variables, runs, status, observables), streamed as the results are read."""
    batch = _batch(request, batch_id)
    try:
        bitstring = sweeps.check_bitstring((request.GET.get("bitstring") or "").strip() or None)
    except TweezerError as exc:
        raise Http404(exc.message) from exc
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        for row in sweeps.csv_rows(batch, bitstring=bitstring):
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="sweep-{str(batch.pk)[:8]}.csv"'
    return response


# --- exports of a filtered selection -----------------------------------------------------------
# Plain GET links carrying the page's filters: the same link exports the same selection again
# (re-issued from the page at any time), behind the portal's login like every page.


@login_required
def export_batches(request: HttpRequest) -> StreamingHttpResponse:
    """Every job of every batch the batches list shows with these filters (all pages)."""
    project, _ = current_project_for(request)
    if project is None:
        raise Http404("You are not a member of any project.")
    batches = BatchFilterForm(request.GET or None).apply(Batch.objects.filter(project=project))
    jobs = Job.objects.filter(project=project, batch__in=batches.order_by().values("pk"))
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    return results_zip_response(jobs, filename=f"export-{str(project.pk)[:8]}-{stamp}.zip", per_batch=True)


@login_required
def export_jobs(request: HttpRequest, batch_id: UUID) -> StreamingHttpResponse:
    """The batch's jobs that its page shows with these filters (all pages)."""
    batch = _batch(request, batch_id)
    jobs = filter_jobs(batch.jobs.all(), JobFilterForm(request.GET or None).as_filter())
    return results_zip_response(jobs, batch_id=batch.pk, filename=f"batch-{str(batch.pk)[:8]}-export.zip")


# --- the price before the button ----------------------------------------------------------------


def _typed_jobs(request: HttpRequest) -> Any:
    """The jobs as the new-batch form reads them: an uploaded JSON file, else the text (JSON or a table)."""
    upload = request.FILES.get("jobs")
    raw = upload.read().decode("utf-8", errors="replace") if upload else request.POST.get("jobs_text") or ""
    if not raw.strip():
        return None
    if raw.lstrip().startswith(("[", "{")):
        if not json_depth_ok(raw, settings.MAX_JSON_DEPTH):
            raise TweezerError(f"The jobs are nested deeper than {settings.MAX_JSON_DEPTH} levels.")
        try:
            jobs = json.loads(raw)
        except ValueError as exc:
            raise TweezerError(f"The jobs are not valid JSON: {exc}") from exc
    else:
        jobs = jobs_from_table(raw)
    check_json(jobs, "jobs")
    return jobs


@login_required
@require_POST
def price(request: HttpRequest) -> HttpResponse:
    """The price of the jobs typed in a new-batch (or, with `batch`, an add-jobs) form and the
    balance after it, live (HTMX, on every change): `services.quote`, the charge's own arithmetic."""
    project, _ = current_project_for(request)
    if project is None:
        raise Http404("You are not a member of any project.")
    device_type = request.POST.get("device_type") or None
    batch_id = request.POST.get("batch") or request.GET.get("batch")  # an add-jobs form: ?batch=<id>
    if batch_id:
        try:
            batch = _batch(request, UUID(batch_id))
        except ValueError as exc:
            raise Http404("No such batch.") from exc
        project, device_type = batch.project, batch.device.name
    context: dict[str, Any] = {"quote": None, "error": None}
    try:
        jobs = _typed_jobs(request)
        if jobs is not None:
            context["quote"] = services.quote(project, request_user(request), jobs=jobs, device_type=device_type)
    except TweezerError as exc:
        context["error"] = exc.message
    except Exception:  # noqa: BLE001 - a half-typed table: no price yet, the submit button says why
        context["error"] = "The jobs cannot be read yet."
    return render(request, "batches/partials/_price.html", context)
