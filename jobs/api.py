"""Job endpoints of the Pasqal Cloud API, and the signed results file."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core import signing
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from ninja import Query, Router, Schema

from batches import services
from jobs.filters import JobFilter, count_jobs, filter_jobs, jobs_for, page
from jobs.models import Job
from jobs.results import open_result, sign_job, unsign_job
from portal.access import request_user
from portal.api import ERRORS, committed, envelope, json_response, ok
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


def iso(value: datetime | None) -> str | None:
    """A time as the API shows it (ISO 8601, or null)."""
    return value.isoformat() if value else None


# What a job shows (JobOut without `sequence`): Job attributes, and the columns a listing reads.
JOB_COLUMNS = (
    "id", "batch_id", "project_id", "user_id", "status", "runs", "variables", "errors",
    "created_at", "updated_at", "start_timestamp", "end_timestamp", "parent_id", "order",
)  # fmt: skip


def row_json(row: tuple[Any, ...]) -> dict[str, Any]:
    """JobOut of one `JOB_COLUMNS` row, in JobOut's field order, without its sequence."""
    data = rows_json([row])[0]
    del data["sequence"]
    return data


def rows_json(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """JobOut of many `JOB_COLUMNS` rows, each with `"sequence": None` (lists leave it out).

    A page's or a submission's rows share their batch, project and user, and a submission's
    one creation time: each such value is converted to text once (1,000 jobs: ~6 → ~2 ms).
    """
    text: dict[Any, str | None] = {}  # UUID → str, time → ISO 8601
    jobs = []
    for row in rows:
        (
            pk,
            batch_id,
            project_id,
            user_id,
            status,
            runs,
            variables,
            errors,
            created,
            updated,
            start,
            end,
            parent,
            order,
        ) = row
        jobs.append(
            {
                "id": str(pk),
                "batch_id": text.get(batch_id) or text.setdefault(batch_id, str(batch_id)),
                "project_id": text.get(project_id) or text.setdefault(project_id, str(project_id)),
                "user_id": text.get(user_id) or text.setdefault(user_id, str(user_id)),
                "status": status,
                "runs": runs,
                "variables": variables,
                "errors": errors,
                "created_at": text.get(created) or text.setdefault(created, iso(created)),
                "updated_at": text.get(updated) or text.setdefault(updated, iso(updated)),
                "start_timestamp": iso(start),
                "end_timestamp": iso(end),
                "parent_id": str(parent) if parent else None,
                "creation_order": order,
                "sequence": None,
            }
        )
    return jobs


def job_json(job: Job, *, with_sequence: bool = False) -> dict[str, Any]:
    data = row_json(tuple(getattr(job, name) for name in JOB_COLUMNS))
    if with_sequence:
        data["sequence"] = job.sequence
    return data


def get_job_for(user: Any, job_id: UUID) -> Job:
    job = jobs_for(user).select_related("batch", "batch__device").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"Job {job_id} not found.")
    return job


@router.get("/api/v2/jobs", response={200: envelope(list[JobOut], paginated=True), **ERRORS})
def list_jobs(request: HttpRequest, filters: Query[JobFilter]) -> HttpResponse:
    qs = filter_jobs(jobs_for(request.user), filters)
    rows, pagination = page(qs, filters, JOB_COLUMNS, lambda: count_jobs(request.user, qs, filters))
    # Rendered here, not validated by ninja against JobOut: for 100 plain rows that validation
    # was a third of a cheap request (RESULTS.md §3). The body is the schema's (tests/api).
    return json_response(ok(rows_json(rows), pagination=pagination))


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
def cancel_job(request: HttpRequest, job_id: UUID) -> HttpResponse:
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
