"""Job endpoints of the Pasqal Cloud API, and the signed results file."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signing
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from ninja import Query, Router

from batches import services
from jobs.filters import JobFilter, count_jobs, filter_jobs, jobs_for, page
from jobs.models import Job, JobStatus
from jobs.results import open_result, unsign_job
from jobs.schemas import (
    JOB_COLUMNS,
    JobOut,
    JobStatusOut,
    ResultsLinkOut,
    absolute_results_url,
    job_json,
    rows_json,
)
from portal import events
from portal.access import request_user
from portal.api import ERRORS, committed, envelope, json_response, ok, release_connection
from portal.errors import NotFound

router = Router(tags=["jobs"])
results_router = Router(tags=["results"], auth=None)


def get_job_for(user: Any, job_id: UUID) -> Job:
    job = jobs_for(user).select_related("batch", "batch__device").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"Job {job_id} not found.")
    return job


@router.get("/api/v2/jobs", response={200: envelope(list[JobOut], paginated=True), **ERRORS})
def list_jobs(request: HttpRequest, filters: Query[JobFilter]) -> HttpResponse:
    qs = filter_jobs(jobs_for(request.user), filters)
    rows, pagination = page(qs, filters, JOB_COLUMNS, lambda: count_jobs(request.user, qs, filters))
    # Rendered here from plain rows, not validated again by ninja against JobOut: the body is
    # the schema's (tests/api checks it against the OpenAPI document).
    return json_response(ok(rows_json(rows), pagination=pagination))


@router.get("/api/v2/jobs/{job_id}", response={200: envelope(JobOut), **ERRORS})
def get_job(request: HttpRequest, job_id: UUID) -> dict[str, Any]:
    return ok(job_json(get_job_for(request.user, job_id), with_sequence=True))


def _job_status(user: Any, job_id: UUID) -> tuple[str, UUID]:
    try:
        row = jobs_for(user).filter(pk=job_id).values_list("status", "batch_id").first()
    finally:
        release_connection()
    if row is None:
        raise NotFound(f"Job {job_id} not found.")
    return row


def _job_running(state: tuple[str, UUID]) -> bool:
    return state[0] in (JobStatus.PENDING, JobStatus.RUNNING)


@router.get("/api/v1/jobs/{job_id}/status", response={200: envelope(JobStatusOut), **ERRORS})
async def get_job_status(request: HttpRequest, job_id: UUID) -> dict[str, Any]:
    """Held like the batch's status (issue 19): a pending or running job answers when it ends
    (its batch's events wake it), or after STATUS_HOLD_SECONDS."""
    user = request.user
    state = await sync_to_async(_job_status)(user, job_id)
    if settings.STATUS_HOLD_SECONDS > 0 and _job_running(state):
        state = await events.hold(
            request, state[1], lambda: sync_to_async(_job_status)(user, job_id), lambda now: not _job_running(now)
        )
    return ok({"status": state[0]})


@router.patch("/api/v2/jobs/{job_id}/cancel", response={200: envelope(JobOut), **ERRORS})
def cancel_job(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = get_job_for(request.user, job_id)
    return committed(
        envelope(JobOut), lambda: ok(job_json(services.cancel_job(job, by=request_user(request)).canceled[0]))
    )


@router.get("/api/v1/jobs/{job_id}/results_link", response={200: envelope(ResultsLinkOut), **ERRORS})
def results_link(request: HttpRequest, job_id: UUID) -> dict[str, Any]:
    job = get_job_for(request.user, job_id)
    return ok({"results_link": absolute_results_url(request, job) if job.result_path else None})


@results_router.get("/results/{token}", url_name="results_file", include_in_schema=False)
def results_file(request: HttpRequest, token: str) -> Any:
    """The self-authorising results link: the signature is the permission, and it expires."""
    try:
        job_id = unsign_job(token)
    except signing.SignatureExpired:
        return JsonResponse({"status": "fail", "code": 403, "message": "This results link has expired."}, status=403)
    except signing.BadSignature:
        return JsonResponse({"status": "fail", "code": 404, "message": "Unknown results link."}, status=404)
    job = Job.objects.filter(pk=job_id).exclude(result_path="").first()
    if job is None:
        return JsonResponse({"status": "fail", "code": 404, "message": "No results for this job."}, status=404)
    return FileResponse(open_result(job), content_type="application/json")
