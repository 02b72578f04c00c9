"""Golden test: what the real SDK sends (method, path, query, decoded body) for each call.

The SDK's `requests.Session.send` is wrapped (the request still goes to live_server) to record
every request. The recording, with ids/dates/sequences normalised, must equal
tests/sdk/golden/pasqal-cloud-<version>.json (regenerate with UPDATE_GOLDEN=1 after reading the
diff), and our parser must accept exactly that: every request answered 2xx, and every query
key and body key the SDK sends is a parameter our OpenAPI document declares (none ignored).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from django.test import Client
from pasqal_cloud._version import __version__ as SDK_VERSION
from pasqal_cloud.device.configuration import EmuFreeConfig
from pasqal_cloud.utils.constants import BatchStatus, JobStatus
from pasqal_cloud.utils.filters import (
    BatchFilters,
    CancelJobFilters,
    JobFilters,
    PaginationParams,
    RebatchFilters,
)

from backends.models import Device
from tests.sdk.helpers import omega_sequence

GOLDEN = Path(__file__).parent / "golden" / f"pasqal-cloud-{SDK_VERSION}.json"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d)?$")


def _norm(value: Any) -> Any:
    if isinstance(value, dict):
        return {_norm(k): _norm(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) == 2 and value[0] == "user_id":  # a query pair: user ids are database integers
            return ["user_id", "<user id>"]
        return [_norm(v) for v in value]
    if isinstance(value, str):
        if value.startswith("{") and len(value) > 200:
            return "<json document>"  # a pulser sequence or emulation config
        if DATE.match(value):
            return "<date+offset>" if value[-6] in "+-" else "<naive date>"
        return UUID.sub("<uuid>", value)
    return value


@pytest.fixture
def recorded(monkeypatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    send = requests.Session.send

    def recording_send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        body: Any = request.body
        if isinstance(body, bytes) and request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if isinstance(body, bytes):
            body = body.decode()
        url = urlsplit(request.url or "")
        response = send(self, request, **kwargs)
        calls.append(
            {
                "method": request.method,
                "path": url.path,
                "query": parse_qsl(url.query, keep_blank_values=True),
                "gzip": request.headers.get("Content-Encoding") == "gzip",
                "content_type": request.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
                "status": response.status_code,
            }
        )
        return response

    monkeypatch.setattr(requests.Session, "send", recording_send)
    return calls


def _sdk_calls(sdk: Any, member: Any) -> None:
    """One of each SDK call (no worker: EMU_FREE is parked, so jobs wait in the queue)."""
    sdk.webhook = "http://127.0.0.1:9/hook"
    day = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    naive = datetime(2999, 1, 3)
    closed = sdk.create_batch(
        omega_sequence(),
        [{"runs": 10, "variables": {"omega_max": 1.0}}, {"runs": 20, "variables": {"omega_max": 2.0}}],
        device_type="EMU_FREE",
        configuration=EmuFreeConfig(with_noise=True),
        backend_configuration='{"observables": [], "padding": "' + "x" * 200 + '"}',
        tags=["a", "b"],
    )
    opened = sdk.create_batch(omega_sequence(), [], open=True, device_type="EMU_FREE")
    sdk.add_jobs(opened.id, [{"runs": 5, "variables": {"omega_max": 3.0}}])
    opened.refresh()
    opened.retry(opened.ordered_jobs[0])
    sdk.get_batch(closed.id)
    if hasattr(sdk, "get_batch_status"):  # pasqal-cloud >= 0.24
        sdk.get_batch_status(closed.id)
    sdk.set_batch_tags(closed.id, ["c"])
    sdk.get_batches(
        filters=BatchFilters(
            id=[closed.id],
            project_id=[str(member.project_id)],
            user_id=[str(member.user_id)],
            device_type=["EMU_FREE"],
            status=[BatchStatus.PENDING, BatchStatus.DONE],
            open=False,
            queue_priority="MEDIUM",  # type: ignore[arg-type]  # the SDK accepts the plain string too
            tag="c",
            start_date=day,
            end_date=naive,
        ),
        pagination_params=PaginationParams(offset=0, limit=10),
    )
    sdk.get_jobs(
        filters=JobFilters(
            id=[j.id for j in closed.ordered_jobs],
            project_id=[str(member.project_id)],
            user_id=[str(member.user_id)],
            batch_id=[closed.id],
            status=[JobStatus.ERROR, JobStatus.PENDING],
            min_runs=1,
            max_runs=100,
            errors=False,
            start_date=day,
            end_date=naive,
        ),
        pagination_params=PaginationParams(offset=0, limit=40),
    )
    job = sdk.get_job(closed.ordered_jobs[0].id)
    if hasattr(sdk, "get_job_status"):  # pasqal-cloud >= 0.24
        sdk.get_job_status(job.id)
    assert job.full_result is None  # no result yet: results_link is null
    sdk.cancel_job(job.id)
    sdk.cancel_jobs(
        opened.id,
        CancelJobFilters(id=[opened.ordered_jobs[0].id], min_runs=1, max_runs=9, start_date=day, end_date=naive),
    )
    sdk.close_batch(opened.id)
    sdk.rebatch(
        closed.id,
        RebatchFilters(
            id=[job.id], status=[JobStatus.CANCELED], min_runs=1, max_runs=99, start_date=day, end_date=naive
        ),
    )
    sdk.rebatch(closed.id)
    closed.cancel()
    sdk.cancel_batches([opened.id])
    sdk.get_device_specs_dict()
    if hasattr(sdk, "get_all_projects"):
        sdk.get_all_projects()
    workload = sdk.create_workload(
        "pulser", "EMU_FREE", {"sequence": omega_sequence(), "runs": 10, "variables": {"omega_max": 1.0}}
    )
    sdk.get_workload(workload.id)
    sdk.cancel_workload(workload.id)


def _operation(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, operations in schema["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return operations[method.lower()]
    raise AssertionError(f"{method} {path} is not in the OpenAPI document")


def _body_fields(schema: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    content = operation["requestBody"]["content"]["application/json"]["schema"]
    if content.get("type") == "array":
        content = content["items"]
    if "$ref" in content:
        content = schema["components"]["schemas"][content["$ref"].rsplit("/", 1)[1]]
    return set(content.get("properties", {}))


def test_the_sdk_sends_what_the_golden_file_says_and_we_accept_all_of_it(sdk, member, devices, recorded):
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    _sdk_calls(sdk, member)
    calls = [
        {**call, "path": call["path"].removeprefix(urlsplit(sdk._client.endpoints.core).path)} for call in recorded
    ]

    # Our parser accepts exactly what was sent.
    document = Client().get("/api/openapi.json").json()
    for call in calls:
        assert call["status"] < 300, call
        path = call["path"] if call["path"].startswith("/account") else "/core" + call["path"]
        operation = _operation(document, call["method"], path)
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert {key for key, _ in call["query"]} <= declared, (path, call["query"], declared)
        if isinstance(call["body"], dict):
            assert set(call["body"]) <= _body_fields(document, operation), (path, call["body"])
        elif isinstance(call["body"], list) and call["body"] and isinstance(call["body"][0], dict):
            assert set().union(*call["body"]) <= _body_fields(document, operation), (path, call["body"])

    golden = _norm([{k: v for k, v in call.items() if k != "status"} for call in calls])
    golden = json.loads(json.dumps(golden))  # tuples -> lists, as stored
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
    assert GOLDEN.exists(), f"no golden file for this SDK: run with UPDATE_GOLDEN=1 to record {GOLDEN.name}"
    assert golden == json.loads(GOLDEN.read_text())
