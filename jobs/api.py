"""Job endpoints of the Pasqal Cloud API, and the signed results file."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core import signing
from django.http import FileResponse, HttpRequest, JsonResponse
from django.urls import reverse
from ninja import Query, Router, Schema

from batches import services
from jobs.filters import JobFilter, filter_jobs, jobs_for, page
from jobs.models import Job
from jobs.results import open_result, sign_job, unsign_job
from portal.access import request_user
from portal.api import ERRORS, committed, envelope, ok
from portal.errors import NotFound

router = Router(tags=["jobs"])
results_router = Router(tags=["results"], auth=None)


class JobOut(Schema):
    id: str
    batch_id: str
    project_id: str
    user_id: str
    status: str
    runs: int | None
    variables: dict[str, Any] | None = None
    errors: list[str] | None = None
    created_at: str
    updated_at: str
    start_timestamp: str | None = None
    end_timestamp: str | None = None
    parent_id: str | None = None
    creation_order: int
    sequence: str | None = None


class JobStatusOut(Schema):
    status: str


class ResultsLinkOut(Schema):
    results_link: str | None


class CancelJobsOut(Schema):
    jobs: list[JobOut]
    errors: dict[str, str]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_json(job: Job, *, with_sequence: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(job.pk),
        "batch_id": str(job.batch_id),
        "project_id": str(job.project_id),
        "user_id": str(job.user_id),
        "status": job.status,
        "runs": job.runs,
        "variables": job.variables,
        "errors": job.errors,
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "start_timestamp": _iso(job.start_timestamp),
        "end_timestamp": _iso(job.end_timestamp),
        "parent_id": str(job.parent_id) if job.parent_id else None,
        "creation_order": job.order,
    }
    if with_sequence:
        data["sequence"] = job.sequence
    return data


def get_job_for(user: Any, job_id: UUID) -> Job:
    job = jobs_for(user).select_related("batch", "batch__device").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"Job {job_id} not found.")
    return job


@router.get("/api/v2/jobs", response={200: envelope(list[JobOut], paginated=True), **ERRORS})
def list_jobs(request: HttpRequest, filters: Query[JobFilter]) -> dict[str, Any]:
    qs = filter_jobs(jobs_for(request.user), filters)
    items, pagination = page(qs, filters)
    return ok([job_json(j) for j in items], pagination=pagination)


@router.get("/api/v2/jobs/{job_id}", response={200: envelope(JobOut), **ERRORS})
def get_job(request: HttpRequest, job_id: UUID) -> dict[str, Any]:
    return ok(job_json(get_job_for(request.user, job_id), with_sequence=True))


@router.get("/api/v1/jobs/{job_id}/status", response={200: envelope(JobStatusOut), **ERRORS})
def get_job_status(request: HttpRequest, job_id: UUID) -> dict[str, Any]:
    status = jobs_for(request.user).filter(pk=job_id).values_list("status", flat=True).first()
    if status is None:
        raise NotFound(f"Job {job_id} not found.")
    return ok({"status": status})


@router.patch("/api/v2/jobs/{job_id}/cancel", response={200: envelope(JobOut), **ERRORS})
def cancel_job(request: HttpRequest, job_id: UUID) -> dict[str, Any]:
    job = get_job_for(request.user, job_id)
    return committed(
        envelope(JobOut), lambda: ok(job_json(services.cancel_job(job, by=request_user(request)).canceled[0]))
    )


@router.get("/api/v1/jobs/{job_id}/results_link", response={200: envelope(ResultsLinkOut), **ERRORS})
def results_link(request: HttpRequest, job_id: UUID) -> dict[str, Any]:
    job = get_job_for(request.user, job_id)
    return ok({"results_link": absolute_results_url(request, job) if job.result_path else None})


def absolute_results_url(request: HttpRequest, job: Job) -> str:
    path = reverse("api:results_file", kwargs={"token": sign_job(job)})
    if settings.SITE_URL:
        return settings.SITE_URL.rstrip("/") + path
    return request.build_absolute_uri(path)


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


def cancel_jobs_json(canceled: list[Job], errors: dict[str, str]) -> dict[str, Any]:
    return {"jobs": [job_json(j) for j in canceled], "errors": errors}


__all__ = ["CancelJobsOut", "JobOut", "cancel_jobs_json", "job_json", "results_router", "router"]
