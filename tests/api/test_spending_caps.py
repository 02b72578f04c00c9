"""Issue 21.4 in the API: project ADMINs set, change and remove a member's spending cap, as on the
credits overview (`portal.credits.set_cap`); a MEMBER cannot (403), other projects and users are
404, bad values are 400; each refusal names the field and writes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from portal.models import SpendingCap
from tests.sequences import seed_mappable_sequence

pytestmark = pytest.mark.django_db


def call(who: Any, method: str, path: str, body: Any = None) -> Any:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {who.token}")
    data = json.dumps(body) if body is not None else ""
    return client.generic(method, path, data=data, content_type="application/json")


def caps_url(project_id: object, user_id: object = None) -> str:
    base = f"/account/api/v1/projects/{project_id}/spending-caps"
    return base if user_id is None else f"{base}/{user_id}"


def submit(member: Any, runs: int) -> Any:
    body = {
        "project_id": str(member.project_id),
        "sequence_builder": seed_mappable_sequence(),
        "jobs": [{"runs": runs, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}],
        "device_type": "EMU_FREE",
    }
    return call(member, "POST", "/core/api/v1/batches", body)


def test_a_project_admin_sets_changes_and_removes_a_member_s_cap(devices, make_member):
    admin = make_member(credits=10_000)
    member = make_member(role="MEMBER", project=admin.project)
    url = caps_url(admin.project_id, member.user.pk)

    response = call(admin, "PUT", url, {"amount": 30, "period": "TOTAL"})
    assert response.status_code == 200, response.content
    row = response.json()["data"]
    assert (row["username"], row["amount"], row["period"], row["used"], row["left"]) == (
        member.user.username, 30, "TOTAL", 0, 30,
    )  # fmt: skip
    cap = SpendingCap.objects.get()
    assert (cap.user, cap.amount, cap.period, cap.set_by) == (member.user, 30, "TOTAL", admin.user)

    assert submit(member, 20).status_code == 200
    refused = submit(member, 11)
    assert refused.status_code == 402 and "30 credits in total" in refused.json()["message"]

    changed = call(admin, "PUT", url, {"amount": 100}).json()["data"]  # the period defaults to MONTH
    assert (changed["amount"], changed["period"], changed["used"], changed["left"]) == (100, "MONTH", 20, 80)
    assert submit(member, 11).status_code == 200

    listing = call(admin, "GET", caps_url(admin.project_id)).json()["data"]
    assert {r["username"]: r["amount"] for r in listing} == {admin.user.username: None, member.user.username: 100}
    assert {r["username"]: r["spent_total"] for r in listing} == {admin.user.username: 0, member.user.username: 31}

    removed = call(admin, "DELETE", url)
    assert removed.status_code == 200 and removed.json()["data"]["amount"] is None
    assert not SpendingCap.objects.exists()
    assert call(admin, "DELETE", url).status_code == 200, "removing no cap is not an error"


def test_a_member_cannot_set_a_cap_and_sees_only_their_own(devices, make_member):
    admin = make_member()
    member = make_member(role="MEMBER", project=admin.project)
    for method, body in (("PUT", {"amount": 1_000_000}), ("DELETE", None)):
        response = call(member, method, caps_url(admin.project_id, member.user.pk), body)
        assert response.status_code == 403, response.content
        error = response.json()
        assert error["data"]["field"] == "project_id" and "Only the ADMINs of project" in error["message"]
    assert not SpendingCap.objects.exists()

    call(admin, "PUT", caps_url(admin.project_id, member.user.pk), {"amount": 50})
    own = call(member, "GET", caps_url(admin.project_id)).json()["data"]
    assert [(r["username"], r["amount"], r["left"]) for r in own] == [(member.user.username, 50, 50)]


def test_another_project_or_a_user_outside_the_project_is_a_404_naming_it(devices, make_member):
    admin = make_member()
    stranger = make_member()  # the ADMIN of another project
    cases = [
        (caps_url(stranger.project_id, stranger.user.pk), "project_id"),
        (caps_url("not-a-project", stranger.user.pk), "project_id"),
        (caps_url(admin.project_id, stranger.user.pk), "user_id"),
        (caps_url(admin.project_id, 2**62), "user_id"),
    ]
    for url, field in cases:
        for method, body in (("PUT", {"amount": 5}), ("DELETE", None)):
            response = call(admin, method, url, body)
            assert response.status_code == 404, (method, url, response.content)
            assert response.json()["data"]["field"] == field, (method, url)
    assert call(admin, "GET", caps_url(stranger.project_id)).status_code == 404
    assert not SpendingCap.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": -1}, "amount"),
        ({"amount": 2**63}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({"amount": True}, "amount"),
        ({}, "amount"),
        ({"amount": 5, "period": "WEEK"}, "period"),
    ],
)
def test_a_bad_amount_or_period_is_a_400_naming_the_field(devices, make_member, body, field):
    admin = make_member()
    member = make_member(role="MEMBER", project=admin.project)
    response = call(admin, "PUT", caps_url(admin.project_id, member.user.pk), body)
    assert response.status_code == 400, response.content
    assert response.json()["data"]["field"] == field
    assert f"'{field}'" in response.json()["message"]
    assert not SpendingCap.objects.exists()


def test_a_user_id_that_is_not_a_number_is_a_400_naming_it(make_member):
    admin = make_member()
    response = call(admin, "PUT", caps_url(admin.project_id, "me"), {"amount": 5})
    assert response.status_code == 400 and response.json()["data"]["field"] == "user_id"
