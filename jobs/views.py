"""Job pages and the portal's results download."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from jobs.filters import jobs_for
from jobs.models import Job
from jobs.results import open_result, read_result


def _job(request: HttpRequest, job_id: UUID) -> Job:
    job = jobs_for(request.user).select_related("batch", "batch__device").filter(pk=job_id).first()
    if job is None:
        raise Http404(f"Job {job_id} not found.")
    return job


@login_required
def job_detail(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = _job(request, job_id)
    result = read_result(job) if job.result_path else None
    top = sorted((result or {}).get("counter", {}).items(), key=lambda kv: -kv[1])[:16]
    return render(request, "jobs/detail.html", {"job": job, "result": result, "top": top})


@login_required
def download_result(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = _job(request, job_id)
    if not job.result_path:
        raise Http404("This job has no results yet.")
    return FileResponse(
        open_result(job), as_attachment=True, filename=f"job-{job.pk}.json", content_type="application/json"
    )
