"""Issue 17: every write endpoint, fed extreme numbers and hostile strings (hypothesis), never
answers 5xx, and a refusal (4xx) leaves the database exactly as it was: rows, statuses, ledger.

In-process (Django's test client): a few hundred requests run in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batches import services, workloads
from batches.models import Batch, Workload
from jobs.models import Job
from portal.models import CreditTransaction, Project
from tests.sequences import analog_sequence

pytestmark = pytest.mark.django_db

SEQUENCE = analog_sequence(2)

# Values at and past every edge the platform has: 64-bit integers, doubles, text.
HOSTILE: list[Any] = [
    2**63 - 1,
    -(2**63),
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    10**399,
    1e30,
    2e19,
    1e308,
    -1e308,
    5e-324,
    float("inf"),
    float("-inf"),
    float("nan"),
    "inf",
    "nan",
    "NaN",
    "Infinity",
    "1e30",
    "\x00",
    "a\x00b",
    "\ud800",
    "ok\udfff",
    "",
    " ",
    "x" * 10_000,
    "é" * 600,
    None,
    True,
    [],
    {},
    [1e30],
    {"\x00": 1},
    {"\ud800": 1},
    0,
    -1,
    0.5,
]
hostile = st.sampled_from(HOSTILE)
# As a URL carries them: query parameters and path segments.
hostile_text = st.sampled_from(
    [quote(str(v), errors="surrogatepass") for v in HOSTILE if not isinstance(v, dict | list) and v != ""]
    + ["%00", "%ED%A0%80", "9223372036854775808", "1e999", "-0", "00000000-0000-0000-0000-000000000000"]
)

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _state() -> tuple[Any, ...]:
    """What any write could change: rows, statuses, flags, tags, counters and the ledger."""
    return (
        tuple(Batch.objects.order_by("pk").values_list("pk", "status", "open", "tags", "jobs_count", "webhook")),
        tuple(Job.objects.order_by("pk").values_list("pk", "status", "runs")),
        tuple(CreditTransaction.objects.order_by("pk").values_list("pk", "kind", "amount")),
        tuple(Workload.objects.order_by("pk").values_list("pk")),
        tuple(Project.objects.order_by("pk").values_list("pk", "balance")),
    )


def _checked(send: Callable[[], Any]) -> Any:
    before = _state()
    response = send()
    assert response.status_code < 500, (response.status_code, response.content[:500])
    if response.status_code >= 400:
        assert _state() == before, response.content[:500]
        if response.get("Content-Type", "").startswith("application/json"):
            body = response.json()
            assert body["status"] == "fail" and 10 < len(body["message"]) < 2000, body
    return response


def _put(container: Any, path: list[Any], value: Any) -> Any:
    """`container` with `value` at `path` (a copy: the base body is reused)."""
    copy = json.loads(json.dumps(container))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def _send_json(api: Client, method: str, path: str, body: Any) -> Any:
    # json.dumps writes NaN and Infinity as the bare tokens a hostile client would send.
    data = json.dumps(body) if body is not None else ""
    return api.generic(method, path, data, content_type="application/json")


@pytest.fixture
def api(member: Any, devices: Any) -> Client:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {member.token}")
    client.member = member  # type: ignore[attr-defined]  # test-only attribute
    return client


def _batch(member: Any, *, open: bool = True, runs: int = 3) -> Batch:
    return services.create_batch(
        member.project,
        member.user,
        sequence_builder=SEQUENCE,
        jobs=[{"runs": runs, "variables": {"omega_max": 1.0}}],
        device_type="EMU_FREE",
        open=open,
    )


def _valid_batch_body(member: Any) -> dict[str, Any]:
    return {
        "sequence_builder": SEQUENCE,
        "jobs": [{"runs": 3, "variables": {"omega_max": 1.0}}],
        "device_type": "EMU_FREE",
        "project_id": str(member.project_id),
        "configuration": {"with_noise": False},
        "tags": ["fuzz"],
    }


BATCH_PLACES: list[list[Any]] = [
    ["jobs", 0, "runs"],
    ["jobs", 0, "variables", "omega_max"],
    ["jobs", 0, "variables", "extra"],
    ["jobs", 0, "variables"],
    ["jobs", 0, "sequence"],
    ["jobs", 0],
    ["configuration", "with_noise"],
    ["configuration", "dt"],
    ["configuration"],
    ["backend_configuration"],
    ["webhook"],
    ["tags", 0],
    ["tags"],
    ["device_type"],
    ["sequence_builder"],
    ["queue_priority"],
    ["open"],
    ["complete"],
    ["project_id"],
]


@FUZZ
@given(place=st.sampled_from(BATCH_PLACES), value=hostile)
def test_create_batch_never_answers_5xx_and_a_refusal_changes_nothing(api, place, value):
    _checked(lambda: _send_json(api, "POST", "/core/api/v1/batches", _put(_valid_batch_body(api.member), place, value)))


@FUZZ
@given(place=st.sampled_from([[0, "runs"], [0, "variables", "omega_max"], [0, "variables"], [0]]), value=hostile)
def test_add_jobs_never_answers_5xx_and_a_refusal_changes_nothing(api, place, value):
    batch = _batch(api.member)
    jobs = _put([{"runs": 7, "variables": {"omega_max": 1.0}}], place, value)
    _checked(lambda: _send_json(api, "POST", f"/core/api/v2/batches/{batch.pk}/jobs", jobs))


@FUZZ
@given(value=hostile, wrap=st.booleans())
def test_set_tags_never_answers_5xx_and_a_refusal_changes_nothing(api, value, wrap):
    batch = _batch(api.member)
    _checked(lambda: _send_json(api, "PATCH", f"/core/api/v1/batches/{batch.pk}/tags", [value] if wrap else value))


@FUZZ
@given(
    action=st.sampled_from(["cancel", "complete", "cancel/jobs", "rebatch", "job-cancel"]),
    name=st.sampled_from(["id", "status", "min_runs", "max_runs", "start_date", "end_date", "batch"]),
    value=hostile_text,
)
def test_batch_and_job_actions_never_answer_5xx_on_hostile_ids_or_filters(api, action, name, value):
    batch = _batch(api.member, open=action != "complete")
    target = value if name == "batch" else str(batch.pk)
    query = "" if name == "batch" else f"?{name}={value}"
    if action == "rebatch":
        services.close_batch(batch, by=api.member.user)
        response = _checked(lambda: api.post(f"/core/api/v1/batches/{target}/rebatch{query}"))
    elif action == "job-cancel":
        job = value if name == "batch" else str(batch.jobs.get().pk)
        response = _checked(lambda: api.patch(f"/core/api/v2/jobs/{job}/cancel"))
    else:
        response = _checked(lambda: api.patch(f"/core/api/v2/batches/{target}/{action}{query}"))
    assert response.status_code != 404 or name == "batch" or action == "job-cancel", response.content[:300]


@FUZZ
@given(value=hostile)
def test_cancel_many_batches_never_answers_5xx_and_a_refusal_changes_nothing(api, value):
    batch = _batch(api.member)
    _checked(lambda: _send_json(api, "PATCH", "/core/api/v1/batches/cancel", {"batch_ids": [str(batch.pk), value]}))


WORKLOAD_PLACES: list[list[Any]] = [
    ["config", "runs"],
    ["config", "variables", "omega_max"],
    ["config", "variables"],
    ["config", "configuration", "dt"],
    ["config", "configuration"],
    ["config", "sequence"],
    ["config", "extra"],
    ["config"],
    ["backend"],
    ["workload_type"],
    ["project_id"],
]


@FUZZ
@given(place=st.sampled_from(WORKLOAD_PLACES), value=hostile)
def test_create_workload_never_answers_5xx_and_a_refusal_changes_nothing(api, place, value):
    body = {
        "workload_type": "pulser",
        "backend": "EMU_FREE",
        "project_id": str(api.member.project_id),
        "config": {
            "sequence": SEQUENCE,
            "runs": 3,
            "variables": {"omega_max": 1.0},
            "configuration": {"with_noise": False},
        },
    }
    _checked(lambda: _send_json(api, "POST", "/core/api/v1/workloads", _put(body, place, value)))


@FUZZ
@given(value=hostile_text)
def test_cancel_workload_never_answers_5xx_on_a_hostile_id(api, value):
    workload = workloads.create_workload(
        api.member.project,
        api.member.user,
        workload_type="pulser",
        backend="EMU_FREE",
        config={"sequence": SEQUENCE, "runs": 3, "variables": {"omega_max": 1.0}},
    )
    _checked(lambda: api.put(f"/core/api/v1/workloads/{value}/cancel"))
    _checked(lambda: api.put(f"/core/api/v1/workloads/{workload.pk}/cancel?reason={value}"))


@FUZZ
@given(value=hostile, as_table=st.booleans(), deep=st.integers(min_value=0, max_value=3))
def test_the_portal_new_batch_form_never_answers_5xx_and_a_refusal_changes_nothing(
    member, devices, client, value, as_table, deep
):
    client.force_login(User.objects.get(pk=member.user_id))
    if as_table:
        jobs = f"runs,omega_max\n3,{json.dumps(value).replace(',', ';')}"  # as ASCII: a browser sends UTF-8
    else:
        jobs = json.dumps([{"runs": 3, "variables": {"omega_max": value}}])
        jobs = "[" * (deep * 500) + jobs + "]" * (deep * 500)
    before = _state()
    response = client.post(
        "/batches/new/",
        {"sequence": SimpleUploadedFile("seq.json", SEQUENCE.encode()), "jobs_text": jobs, "device_type": "EMU_FREE"},
    )
    assert response.status_code in (200, 302), (response.status_code, response.content[:500])
    if response.status_code == 200:  # the form again, with its error
        assert _state() == before
