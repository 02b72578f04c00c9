"""Workload endpoints of the Pasqal Cloud API (SDK create_workload / get_workload / cancel_workload).

Thin: the rules are in `batches/workloads.py`; a workload's work is done by its one-job batch.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema
from pydantic import Field

from batches import workloads
from batches.idempotency import idempotent
from batches.models import Workload
from jobs.models import JobStatus
from jobs.schemas import absolute_results_url, iso
from portal.access import project_for, request_user
from portal.api import ERRORS, committed, envelope, ok, parse_body
from portal.wire import check_json

router = Router(tags=["workloads"])

CONFIG_DOC = (
    "For `workload_type` 'pulser': `sequence` (str, required: Sequence.to_abstract_repr()), "
    "`runs` (int, required: shots), `variables` (object, optional: the sequence's declared variables, "
    "and `qubits` for a mappable register), `configuration` (object, optional: emulator options, as a "
    "batch's `configuration`). Other keys are refused."
)


class WorkloadIn(Schema):
    workload_type: str = Field(..., description="Supported: 'pulser'.", examples=["pulser"])
    backend: str = Field(..., description="A device type: EMU_FREE, EMU_SV, EMU_MPS, FRESNEL…", examples=["EMU_FREE"])
    config: dict[str, Any] = Field(
        ..., description=CONFIG_DOC, examples=[{"sequence": "<abstract repr>", "runs": 100, "variables": {"x": 1}}]
    )
    project_id: UUID


class WorkloadOut(Schema):
    id: str
    project_id: str
    user_id: str
    batch_id: str = Field(..., description="The one-job batch that runs the workload (tagged 'workload').")
    status: str = Field(..., description="PENDING, RUNNING, DONE, ERROR or CANCELED.")
    backend: str
    workload_type: str
    config: dict[str, Any]
    created_at: str
    updated_at: str
    errors: list[str] | None = None
    start_timestamp: str | None = None
    end_timestamp: str | None = None
    result_link: str | None = Field(
        None, description="When DONE: a signed, expiring URL of `{counter, raw, serialised_results}` (no token)."
    )


def workload_json(request: HttpRequest, workload: Workload) -> dict[str, Any]:
    job = workloads.workload_job(workload)
    status = workloads.workload_status(workload, job)
    done = status == JobStatus.DONE and bool(job.result_path)
    return {
        "id": str(workload.pk),
        "project_id": str(workload.project_id),
        "user_id": str(workload.user_id),
        "batch_id": str(workload.batch_id),
        "status": status,
        "backend": workload.batch.device.name,
        "workload_type": workload.workload_type,
        "config": workloads.workload_config(workload),
        "created_at": iso(workload.created_at),
        "updated_at": iso(max(workload.updated_at, job.updated_at, workload.batch.updated_at)),
        "errors": job.errors,
        "start_timestamp": iso(job.start_timestamp),
        "end_timestamp": iso(job.end_timestamp),
        # The SDK downloads this while parsing the response: only a link that answers.
        "result_link": absolute_results_url(request, job) if done else None,
    }


@router.post("/api/v1/workloads", response={200: envelope(WorkloadOut), **ERRORS})
def create_workload(request: HttpRequest, payload: WorkloadIn) -> Any:
    def create() -> dict[str, Any]:
        raw = parse_body(request)  # the depth check; `config` exactly as sent
        for name in ("workload_type", "backend", "config"):
            check_json(raw.get(name), name)
        workload = workloads.create_workload(
            project_for(request_user(request), payload.project_id),
            request_user(request),
            workload_type=payload.workload_type,
            backend=payload.backend,
            config=raw.get("config"),
        )
        return ok(workload_json(request, workloads.reload(workload)))

    return idempotent(request, envelope(WorkloadOut), create)


@router.get("/api/v2/workloads/{workload_id}", response={200: envelope(WorkloadOut), **ERRORS})
def get_workload(request: HttpRequest, workload_id: UUID) -> dict[str, Any]:
    return ok(workload_json(request, workloads.get_workload_for(request_user(request), workload_id)))


@router.put("/api/v1/workloads/{workload_id}/cancel", response={200: envelope(WorkloadOut), **ERRORS})
def cancel_workload(request: HttpRequest, workload_id: UUID) -> HttpResponse:
    workload = workloads.get_workload_for(request_user(request), workload_id)
    return committed(
        envelope(WorkloadOut),
        lambda: ok(workload_json(request, workloads.cancel_workload(workload, by=request_user(request)))),
    )
