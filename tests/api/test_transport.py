"""Wire details of the API (spec §1-3, §9) with Django's test client: no worker, no live server.

EMU_FREE is put in maintenance so that submitted batches just wait in the queue.
"""

from __future__ import annotations

import gzip
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from pulser import Pulse, Register, Sequence
from pulser.devices import MockDevice

from backends.models import Device
from batches.models import Batch
from jobs.models import Job
from portal.models import CreditTransaction
from tests.sdk.helpers import omega_sequence

SEQUENCE = omega_sequence()
JOB = {"runs": 10, "variables": {"omega_max": 1.5}}


@pytest.fixture
def api(devices, member) -> Any:
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    return Api(member)


class Api:
    def __init__(self, member: Any, token: str | None = None) -> None:
        self.member = member
        self.client = Client()
        self.auth = {"Authorization": f"Bearer {token or member.token}"}

    def call(self, method: str, path: str, body: Any = None, *, gzipped: bool = False, **headers: str) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        if gzipped:
            data, headers = gzip.compress(data), {**headers, "Content-Encoding": "gzip"}
        return getattr(self.client, method.lower())(
            f"/core{path}", data=data, content_type="application/json", headers={**self.auth, **headers}
        )

    def create(self, **fields: Any) -> Any:
        body = {
            "sequence_builder": SEQUENCE,
            "webhook": None,
            "jobs": [JOB],
            "open": False,
            "device_type": "EMU_FREE",
            "project_id": str(self.member.project_id),
            **fields,
        }
        return self.call("POST", "/api/v1/batches", body, gzipped=True)


def _fail(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["status"] == "fail" and body["code"] == status
    assert body["data"]["description"] and isinstance(body["message"], str)
    return body


def test_gzip_create_returns_the_jsend_envelope_with_the_batch(api):
    response = api.create(tags=["a"])
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["code"], body["message"]) == ("success", 200, "OK.")
    assert body["data"]["jobs_count"] == 1 and body["data"]["sequence_builder"] == SEQUENCE
    assert body["data"]["jobs"][0]["status"] == "PENDING"


def test_the_create_answer_is_the_batch_as_read_back_in_every_field(api):
    """The answer is built from the rows as written, not read back: it must be what GET reads."""
    seq = Sequence(Register.rectangle(1, 2, spacing=6, prefix="q"), MockDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(Pulse.ConstantPulse(duration=100, amplitude=1, detuning=0, phase=0), "rydberg")
    fixed = str(seq.to_abstract_repr())
    jobs = [{"runs": 10 + i, "variables": {"omega_max": 1 + i / 10}} for i in range(30)] + [
        {"runs": 3, "sequence": fixed}
    ]
    created = api.create(jobs=jobs, tags=["sweep"], configuration={"dt": 10}).json()["data"]
    read = api.call("GET", f"/api/v2/batches/{created['id']}").json()["data"]
    assert created == read
    assert [j["creation_order"] for j in created["jobs"]] == list(range(31))
    assert created["jobs"][-1]["variables"] is None and created["jobs_count_per_status"]["PENDING"] == 31


def test_corrupt_gzip_is_400_and_a_decompression_bomb_is_413(api, settings):
    response = api.client.post(
        "/core/api/v1/batches",
        data=b"not gzip at all",
        content_type="application/json",
        headers={**api.auth, "Content-Encoding": "gzip"},
    )
    _fail(response, 400)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    bomb = gzip.compress(b'{"jobs": [' + b" " * 1_000_000 + b"]}")
    assert len(bomb) < 10_000
    response = api.client.post(
        "/core/api/v1/batches",
        data=bomb,
        content_type="application/json",
        headers={**api.auth, "Content-Encoding": "gzip"},
    )
    assert "limit" in _fail(response, 413)["message"]
    assert not Batch.objects.exists()


def test_a_plain_body_over_the_limit_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = api.call("POST", "/api/v1/batches", {"sequence_builder": "x" * 20_000})
    assert "limit" in _fail(response, 413)["message"]
    response = api.call("POST", "/api/v2/batches/00000000-0000-4000-8000-000000000000/jobs", [JOB] * 500)
    _fail(response, 413)


def test_empty_bodies_on_patch_and_post_with_a_json_content_type(api):
    batch_id = api.create(open=True).json()["data"]["id"]
    assert api.call("PATCH", f"/api/v2/batches/{batch_id}/complete").json()["data"]["open"] is False
    new = api.call("POST", f"/api/v1/batches/{batch_id}/rebatch")
    assert new.status_code == 200 and new.json()["data"]["parent_id"] == batch_id
    cancel = api.call("PATCH", f"/api/v2/batches/{batch_id}/cancel/jobs")
    assert cancel.status_code == 200 and len(cancel.json()["data"]["jobs"]) == 1
    job_id = new.json()["data"]["jobs"][0]["id"]
    assert api.call("PATCH", f"/api/v2/jobs/{job_id}/cancel").json()["data"]["status"] == "CANCELED"
    assert (
        api.call("PATCH", f"/api/v2/batches/{new.json()['data']['id']}/cancel").json()["data"]["status"] == "CANCELED"
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/core/api/v2/jobs"),
        ("POST", "/core/api/v1/batches"),
        ("PATCH", "/core/api/v1/batches/cancel"),
        ("GET", "/core/api/v1/devices/specs"),
        ("GET", "/account/api/v1/projects"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer twz_not-a-token", "Basic dXNlcjpwYXNz", "Bearer "])
def test_a_missing_or_bad_token_is_a_401_envelope(api, method, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = getattr(Client(), method.lower())(path, data=b"", content_type="application/json", headers=headers)
    assert "token" in _fail(response, 401)["message"]


def test_invalid_input_is_400_never_422(api):
    batch_id = api.create().json()["data"]["id"]
    cases: list[tuple[str, str, Any]] = [
        ("GET", "/api/v2/jobs?limit=0", None),
        ("GET", "/api/v2/jobs?limit=101", None),
        ("GET", "/api/v2/jobs?offset=-1", None),
        ("GET", "/api/v2/jobs?status=PAUSED", None),
        ("GET", "/api/v2/jobs?batch_id=not-a-uuid", None),
        ("GET", "/api/v2/jobs?errors=maybe", None),
        ("GET", "/api/v2/jobs?start_date=yesterday", None),
        ("GET", "/api/v1/batches?status=DONE&status=SLEEPING", None),
        ("GET", "/api/v2/batches/not-a-uuid", None),
        ("POST", "/api/v1/batches", {"jobs": []}),
        ("POST", "/api/v1/batches", {"project_id": "nope", "jobs": []}),
        ("POST", "/api/v1/batches", [1, 2]),
        ("POST", f"/api/v2/batches/{batch_id}/jobs", {"runs": 1}),
        ("PATCH", f"/api/v1/batches/{batch_id}/tags", {"tags": "a"}),
        ("PATCH", "/api/v1/batches/cancel", {"batch_ids": ["x"]}),
        ("POST", f"/api/v1/batches/{batch_id}/rebatch?min_runs=-3", None),
    ]
    for method, path, body in cases:
        response = api.call(method, path, body)
        assert response.status_code == 400, (method, path, response.content)
        _fail(response, 400)


def test_a_non_json_body_is_400(api):
    response = api.client.post(
        "/core/api/v1/batches", data=b"{not json", content_type="application/json", headers=api.auth
    )
    _fail(response, 400)


def test_filters_accept_repeated_keys_python_booleans_and_iso_dates(api):
    first = api.create(jobs=[{"runs": 5, "variables": {"omega_max": 1}}, {"runs": 9, "variables": {"omega_max": 2}}])
    batch_id = first.json()["data"]["id"]
    jobs = first.json()["data"]["jobs"]
    Job.objects.filter(pk=jobs[1]["id"]).update(status="ERROR", errors=["backend failure"])
    query = [
        ("batch_id", batch_id),
        ("status", "ERROR"),
        ("status", "DONE"),
        ("errors", "True"),
        ("min_runs", "1"),
        ("start_date", "2024-01-02T03:04:05+00:00"),
        ("end_date", "2999-01-03T00:00:00"),
        ("offset", "0"),
        ("limit", "40"),
    ]
    body = api.call("GET", "/api/v2/jobs?" + urlencode(query)).json()
    assert [j["id"] for j in body["data"]] == [jobs[1]["id"]]
    assert body["pagination"] == {"total": 1, "offset": 0, "end": 1}
    body = api.call("GET", f"/api/v2/jobs?batch_id={batch_id}&errors=False").json()
    assert [j["id"] for j in body["data"]] == [jobs[0]["id"]]
    plus = "2999-01-02T03:04:05%2B02:00"
    assert api.call("GET", f"/api/v2/jobs?start_date={plus}").json()["pagination"]["total"] == 0
    body = api.call("GET", "/api/v1/batches?open=False&status=PENDING&status=RUNNING&queue_priority=MEDIUM").json()
    assert [b["id"] for b in body["data"]] == [batch_id]
    assert api.call("GET", "/api/v1/batches?open=True").json()["data"] == []


def test_ordered_jobs_query_ascending_by_creation_order(api, settings):
    settings.BATCH_JOBS_INLINE_MAX = 0
    batch = api.create(jobs=[{"runs": r, "variables": {"omega_max": 1}} for r in range(1, 6)]).json()["data"]
    assert "jobs" not in batch or not batch["jobs"]
    body = api.call("GET", f"/api/v2/jobs?batch_id={batch['id']}&order_by=creation_order&order_by_direction=ASC").json()
    assert [j["runs"] for j in body["data"]] == [1, 2, 3, 4, 5]
    assert [j["creation_order"] for j in body["data"]] == [0, 1, 2, 3, 4]
    body = api.call("GET", f"/api/v2/jobs?batch_id={batch['id']}&offset=2&limit=2").json()
    assert body["pagination"] == {"total": 5, "offset": 2, "end": 4}


def test_status_enums_are_exactly_the_sdks(api):
    batch = api.create().json()["data"]
    status = api.call("GET", f"/api/v1/batches/{batch['id']}/status").json()["data"]
    assert status == {
        "status": "PENDING",
        "jobs_count_per_status": {"PENDING": 1, "RUNNING": 0, "DONE": 0, "ERROR": 0, "CANCELED": 0},
    }
    job_status = api.call("GET", f"/api/v1/jobs/{batch['jobs'][0]['id']}/status").json()["data"]
    assert job_status == {"status": "PENDING"}


def test_conflicts_are_409_with_the_message_physicists_read(api):
    batch = api.create().json()["data"]
    response = api.call("POST", f"/api/v2/batches/{batch['id']}/jobs", [JOB], gzipped=True)
    body = _fail(response, 409)
    assert body["data"]["description"] == f"Batch {batch['id']} is closed: jobs can no longer be added."
    job_id = batch["jobs"][0]["id"]
    Job.objects.filter(pk=job_id).update(status="DONE")
    body = _fail(api.call("PATCH", f"/api/v2/jobs/{job_id}/cancel"), 409)
    assert body["message"] == f"Job {job_id} is DONE: only a PENDING job can be canceled."


def test_not_enough_credits_is_402_naming_price_and_balance(devices, make_member):
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    poor = Api(make_member(credits=15))
    body = _fail(poor.create(jobs=[JOB, JOB]), 402)
    assert "costs 20 credits" in body["message"] and "has 15" in body["message"]
    assert not Batch.objects.exists() and not CreditTransaction.objects.filter(kind="CHARGE").exists()


def test_another_projects_ids_are_404_everywhere(api, make_member):
    batch = api.create(open=True).json()["data"]
    job_id = batch["jobs"][0]["id"]
    stranger = Api(make_member())
    for method, path in [
        ("GET", f"/api/v2/batches/{batch['id']}"),
        ("GET", f"/api/v1/batches/{batch['id']}/status"),
        ("PATCH", f"/api/v2/batches/{batch['id']}/complete"),
        ("PATCH", f"/api/v2/batches/{batch['id']}/cancel"),
        ("POST", f"/api/v1/batches/{batch['id']}/rebatch"),
        ("PATCH", f"/api/v1/batches/{batch['id']}/tags"),
        ("PATCH", f"/api/v2/batches/{batch['id']}/cancel/jobs"),
        ("GET", f"/api/v2/jobs/{job_id}"),
        ("GET", f"/api/v1/jobs/{job_id}/status"),
        ("PATCH", f"/api/v2/jobs/{job_id}/cancel"),
        ("GET", f"/api/v1/jobs/{job_id}/results_link"),
    ]:
        body: list[Any] | None = [] if path.endswith("/tags") else None
        _fail(stranger.call(method, path, body), 404)
    _fail(stranger.call("POST", f"/api/v2/batches/{batch['id']}/jobs", [JOB], gzipped=True), 404)
    _fail(stranger.create(project_id=str(api.member.project_id)), 404)
    assert stranger.call("GET", f"/api/v2/jobs?batch_id={batch['id']}").json()["pagination"]["total"] == 0
    assert Batch.objects.get(pk=batch["id"]).open is True


def test_idempotency_key_replays_the_first_response(api):
    key = {"Idempotency-Key": "create-1"}
    body = {
        "sequence_builder": SEQUENCE,
        "jobs": [JOB],
        "device_type": "EMU_FREE",
        "project_id": str(api.member.project_id),
    }
    first = api.call("POST", "/api/v1/batches", body, gzipped=True, **key)
    again = api.call("POST", "/api/v1/batches", body, gzipped=True, **key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert Batch.objects.count() == 1 and CreditTransaction.objects.filter(kind="CHARGE").count() == 1
    other = api.call("POST", "/api/v1/batches", {**body, "jobs": [JOB, JOB]}, gzipped=True, **key)
    assert "Idempotency-Key" in _fail(other, 409)["message"]
    assert Batch.objects.count() == 1


def test_idempotency_key_on_add_jobs(api):
    batch_id = api.create(open=True).json()["data"]["id"]
    key = {"Idempotency-Key": "add-1"}
    first = api.call("POST", f"/api/v2/batches/{batch_id}/jobs", [JOB, JOB], gzipped=True, **key)
    again = api.call("POST", f"/api/v2/batches/{batch_id}/jobs", [JOB, JOB], gzipped=True, **key)
    assert first.json() == again.json() and first.json()["data"]["jobs_count"] == 3
    assert Job.objects.filter(batch_id=batch_id).count() == 3
    # A key belongs to its user: another member's identical key is a different request.
    assert Api(api.member).call("GET", f"/api/v2/batches/{batch_id}").json()["data"]["jobs_count"] == 3


def test_a_failed_request_is_not_remembered_under_its_idempotency_key(api, make_member):
    key = {"Idempotency-Key": "retry-after-fix"}
    bad = api.call("POST", "/api/v1/batches", {"project_id": str(api.member.project_id), "jobs": []}, **key)
    _fail(bad, 400)
    good = api.create()
    assert good.status_code == 200


def test_public_specs_need_no_token_and_openapi_is_served(devices):
    client = Client()
    body = client.get("/core/api/v1/devices/public-specs").json()
    assert body["status"] == "success" and {d["device_type"] for d in body["data"]} >= {"EMU_FREE"}
    schema = client.get("/api/openapi.json").json()
    assert "/core/api/v1/batches" in schema["paths"] and "/account/api/v1/projects" in schema["paths"]
    assert client.get("/api/docs").status_code == 200


def test_a_response_that_cannot_be_rendered_rolls_the_change_back(api, monkeypatch):
    # Fault injection: the SDK re-sends 5xx answers, so a 5xx must mean "nothing happened".
    monkeypatch.setattr("batches.api.batch_json", lambda batch, **_: {"id": str(batch.pk)})  # not a valid Batch
    response = api.create()
    assert response.status_code == 500 and response.json()["status"] == "fail"
    assert not Batch.objects.exists() and not CreditTransaction.objects.filter(kind="CHARGE").exists()


def test_list_endpoints_cost_the_same_number_of_queries_for_few_or_many_rows(api):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(path: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.call("GET", path).status_code == 200
        return len(captured)

    api.create(jobs=[JOB])
    few = [queries("/api/v2/jobs?limit=100"), queries("/api/v1/batches?limit=100")]
    for _ in range(3):
        api.create(jobs=[JOB] * 20)
    many = [queries("/api/v2/jobs?limit=100"), queries("/api/v1/batches?limit=100")]
    assert many == few  # no query per row (N+1)


def test_two_racing_requests_with_one_idempotency_key_create_one_batch(devices, member, live_server):
    from concurrent.futures import ThreadPoolExecutor

    import requests

    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    body = gzip.compress(
        json.dumps(
            {
                "sequence_builder": SEQUENCE,
                "jobs": [JOB],
                "device_type": "EMU_FREE",
                "project_id": str(member.project_id),
            }
        ).encode()
    )
    headers = {
        "Authorization": f"Bearer {member.token}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "Idempotency-Key": "race-1",
    }

    def post(_: int) -> Any:
        return requests.post(f"{live_server.url}/core/api/v1/batches", data=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(post, range(4)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["data"]["id"] for a in answers}) == 1
    assert Batch.objects.count() == 1 and CreditTransaction.objects.filter(kind="CHARGE").count() == 1
