"""What a job looks like on the wire (the SDK's JobOut), for the job and batch endpoints alike."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from ninja import Schema

from jobs.models import Job
from jobs.results import sign_job


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
    one creation time: each such value is converted to text once.
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


def absolute_results_url(request: HttpRequest, job: Job) -> str:
    path = reverse("api:results_file", kwargs={"token": sign_job(job)})
    if settings.SITE_URL:
        return settings.SITE_URL.rstrip("/") + path
    return request.build_absolute_uri(path)


def cancel_jobs_json(canceled: list[Job], errors: dict[str, str]) -> dict[str, Any]:
    return {"jobs": [job_json(j) for j in canceled], "errors": errors}
