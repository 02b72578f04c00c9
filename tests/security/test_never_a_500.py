"""Issue 17: hostile numbers and strings get a 400 naming the field, stored values always list,
and no answer can fail after its change was committed (the SDK re-sends a POST answered 5xx)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from batches import services
from batches.models import Batch
from jobs.models import Job
from portal.models import CreditTransaction
from portal.wire import dumps
from tests.sequences import analog_sequence

pytestmark = pytest.mark.django_db

HUGE = 10**30  # what PostgreSQL's jsonb gives back for a stored 1e30


def _state() -> tuple[Any, ...]:
    """Everything a write changes: rows, the ledger, and the batches' mutable fields."""
    batches = tuple(Batch.objects.order_by("pk").values_list("pk", "status", "open", "tags", "jobs_count"))
    jobs = tuple(Job.objects.order_by("pk").values_list("pk", "status"))
    ledger = tuple(CreditTransaction.objects.order_by("pk").values_list("pk", "amount"))
    return batches, jobs, ledger


@pytest.fixture
def api(member: Any, devices: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {member.token}")


def _body(member: Any, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sequence_builder": analog_sequence(2),
        "jobs": [{"runs": 3, "variables": {"omega_max": 1.0}}],
        "device_type": "EMU_FREE",
        "project_id": str(member.project_id),
    }
    body.update(overrides)
    return body


def _post(api: Client, path: str, body: Any, method: str = "POST") -> Any:
    return api.generic(method, path, json.dumps(body), content_type="application/json")


def _refused_naming(response: Any, field: str) -> str:
    assert response.status_code == 400, (response.status_code, response.content[:500])
    body = response.json()
    assert field in body["message"], body["message"]
    return str(body["message"])


def _open_batch(member: Any) -> Batch:
    return services.create_batch(
        member.project,
        member.user,
        sequence_builder=analog_sequence(2),
        jobs=[{"runs": 3, "variables": {"omega_max": 1.0}}],
        device_type="EMU_FREE",
        open=True,
    )


def _store_huge_variable(batch: Batch) -> Job:
    """A job holding an integer beyond 64 bits, as stored before submissions were checked."""
    job = batch.jobs.get()
    Job.objects.filter(pk=job.pk).update(variables={"omega_max": HUGE})
    return job


# --- point 1: numbers the platform cannot carry are refused, naming the field ---------------


@pytest.mark.parametrize("value", [HUGE, 2**64, -(2**63) - 1, 1e30, 2e19, 10**399])
def test_a_variable_beyond_64_bits_is_refused_naming_the_job_and_variable(api, member, value):
    before = _state()
    response = _post(api, "/core/api/v1/batches", _body(member, jobs=[{"runs": 3, "variables": {"omega_max": value}}]))
    message = _refused_naming(response, "jobs[0].variables.omega_max")
    assert "too large" in message and len(message) < 300
    assert _state() == before


def test_a_configuration_value_beyond_64_bits_is_refused_naming_it(api, member):
    before = _state()
    response = _post(api, "/core/api/v1/batches", _body(member, configuration={"dt": 1e30}))
    _refused_naming(response, "configuration.dt")
    assert _state() == before


def test_adding_a_job_beyond_64_bits_to_an_open_batch_adds_and_charges_nothing(api, member):
    batch = _open_batch(member)
    before = _state()
    response = _post(api, f"/core/api/v2/batches/{batch.pk}/jobs", [{"runs": 7, "variables": {"omega_max": 2**64}}])
    _refused_naming(response, "jobs[0].variables.omega_max")
    assert _state() == before


def test_a_workload_config_beyond_64_bits_is_refused_and_creates_nothing(api, member):
    before = _state()
    body = {
        "workload_type": "pulser",
        "backend": "EMU_FREE",
        "project_id": str(member.project_id),
        "config": {"sequence": analog_sequence(2), "runs": 3, "variables": {"omega_max": 1e30}},
    }
    _refused_naming(_post(api, "/core/api/v1/workloads", body), "config.variables.omega_max")
    assert _state() == before


def test_an_answer_is_encoded_before_the_commit_so_a_stored_huge_number_cannot_fail_after_it(api, member):
    """Cancel and close, on a batch holding a number stored before the input checks: 200, done once."""
    batch = _open_batch(member)
    _store_huge_variable(batch)
    closed = api.patch(f"/core/api/v2/batches/{batch.pk}/complete")
    assert closed.status_code == 200, closed.content[:300]
    assert closed.json()["data"]["jobs"][0]["variables"]["omega_max"] == HUGE
    canceled = api.patch(f"/core/api/v2/batches/{batch.pk}/cancel")
    assert canceled.status_code in (200, 409), canceled.content[:300]


def test_rebatching_a_batch_holding_a_stored_huge_number_answers_200_and_charges_one_new_batch(api, member):
    batch = _open_batch(member)
    _store_huge_variable(batch)
    services.close_batch(batch, by=member.user)
    charges = CreditTransaction.objects.filter(kind="CHARGE").count()
    response = api.post(f"/core/api/v1/batches/{batch.pk}/rebatch")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["data"]["jobs"][0]["variables"] == {"omega_max": HUGE}
    assert Batch.objects.filter(parent=batch).count() == 1
    assert CreditTransaction.objects.filter(kind="CHARGE").count() == charges + 1


def test_a_failing_encoder_rolls_the_change_back_instead_of_answering_500_after_the_commit(api, member, monkeypatch):
    """Whatever fails while the answer is written, it fails inside the transaction."""
    import portal.api

    batch = _open_batch(member)
    before = _state()

    def broken(body: Any) -> bytes:
        raise TypeError("cannot encode")

    monkeypatch.setattr(portal.api, "dumps", broken)
    response = api.patch(f"/core/api/v1/batches/{batch.pk}/tags", json.dumps(["new"]), content_type="application/json")
    assert response.status_code == 500
    assert _state() == before


def test_the_encoder_writes_integers_beyond_64_bits_exactly_and_nan_as_null():
    assert json.loads(dumps({"a": HUGE, "b": [2**64, -(2**63) - 1], "c": float("nan")})) == {
        "a": HUGE,
        "b": [2**64, -(2**63) - 1],
        "c": None,
    }


# --- point 2: stored values always list ------------------------------------------------------


def test_the_job_listing_answers_for_a_job_stored_with_an_integer_beyond_64_bits(api, member):
    batch = _open_batch(member)
    _store_huge_variable(batch)
    for query in (
        "",
        f"?project_id={member.project_id}",
        f"?batch_id={batch.pk}&order_by=creation_order",
    ):
        response = api.get(f"/core/api/v2/jobs{query}")
        assert response.status_code == 200, (query, response.content[:300])
        assert response.json()["data"][0]["variables"] == {"omega_max": HUGE}
    assert api.get(f"/core/api/v2/batches/{batch.pk}").status_code == 200
    assert api.get("/core/api/v1/batches").status_code == 200


# --- point 3: other hostile strings and numbers get a 400 naming the field --------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"configuration": {"label": "a\x00b"}}, "configuration.label"),
        ({"backend_configuration": "a\x00b"}, "backend_configuration"),
        ({"webhook": "https://hooks.example.org/\x00"}, "webhook"),
        ({"tags": ["ok", "bad\ud800"]}, "tags[1]"),
        ({"configuration": {"label": "\ud800"}}, "configuration.label"),
        ({"configuration": {"\ud800": 1}}, "configuration"),
        ({"backend_configuration": "\udfff"}, "backend_configuration"),
        ({"webhook": "https://hooks.example.org/" + "x" * 500}, "webhook"),
        ({"jobs": [{"runs": 3, "variables": {"omega_max": 10**399}}]}, "jobs[0].variables.omega_max"),
    ],
)
def test_a_hostile_string_or_number_at_submission_is_a_400_naming_the_field(api, member, overrides, field):
    before = _state()
    _refused_naming(_post(api, "/core/api/v1/batches", _body(member, **overrides)), field)
    assert _state() == before


def test_a_lone_surrogate_in_new_tags_is_a_400_and_the_tags_are_unchanged(api, member):
    batch = _open_batch(member)
    before = _state()
    _refused_naming(_post(api, f"/core/api/v1/batches/{batch.pk}/tags", ["\ud800"], method="PATCH"), "tags[0]")
    assert _state() == before


@pytest.mark.parametrize("query", ["tag=%00", "device_type=%00", "user_id=%00", "offset=9223372036854775808"])
def test_hostile_batch_list_parameters_are_a_400_naming_the_parameter(api, query):
    response = api.get(f"/core/api/v1/batches?{query}")
    _refused_naming(response, query.split("=")[0])


@pytest.mark.parametrize("query", ["offset=9223372036854775808", "min_runs=100000000000000000000"])
def test_hostile_job_list_numbers_are_a_400_naming_the_parameter(api, query):
    _refused_naming(api.get(f"/core/api/v2/jobs?{query}"), query.split("=")[0])


@pytest.mark.parametrize("path", ["/core/api/v2/jobs", "/core/api/v1/batches"])
@pytest.mark.parametrize("user_id", ["%C2%B2", "99999999999999999999999", "9" * 5000])
def test_a_user_id_filter_no_user_can_have_matches_nothing(api, path, user_id):
    response = api.get(f"{path}?user_id={user_id}")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["data"] == []


def test_deeply_nested_jobs_in_the_portal_form_are_a_form_error_not_a_traceback(member, devices, client):
    client.force_login(User.objects.get(pk=member.user_id))
    before = _state()
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        "/batches/new/",
        {
            "sequence": SimpleUploadedFile("seq.json", analog_sequence(2).encode()),
            "jobs_text": "[" * 1000 + "]" * 1000,
            "device_type": "EMU_FREE",
        },
    )
    assert response.status_code == 200
    assert "nested deeper" in response.content.decode()
    assert _state() == before


def test_a_number_beyond_64_bits_in_the_portal_form_is_a_form_error_naming_it(member, devices, client):
    client.force_login(User.objects.get(pk=member.user_id))
    before = _state()
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        "/batches/new/",
        {
            "sequence": SimpleUploadedFile("seq.json", analog_sequence(2).encode()),
            "jobs_text": "runs,omega_max\n3,1e30",
            "device_type": "EMU_FREE",
        },
    )
    assert response.status_code == 200
    assert "jobs[0].variables.omega_max: 1e+30 is too large" in response.content.decode()
    assert _state() == before
