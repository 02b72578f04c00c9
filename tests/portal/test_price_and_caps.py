"""Issue 21.3–4: the price before submitting is the charge; spending caps refuse with a 402 and charge nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from batches import services
from batches.models import Batch
from portal import credits
from portal.errors import NotFound, SpendingCapExceeded
from portal.models import CreditTransaction, SpendingCap
from tests.sequences import seed_mappable_sequence

SEQUENCE = seed_mappable_sequence()


def _jobs(*runs: int) -> list[dict[str, Any]]:
    return [{"runs": r, "variables": {"omega_max": 1.0, "qubits": {"q0": 1, "q1": 5}}} for r in runs]


def post(member: Any, path: str, body: Any) -> Any:
    return Client().post(
        path, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {member.token}"
    )


def submit(member: Any, *runs: int, device: str = "EMU_FREE") -> Batch:
    return services.create_batch(
        member.project, member.user, sequence_builder=SEQUENCE, jobs=_jobs(*runs), device_type=device, validate=False
    )


@pytest.mark.parametrize("price_per_run", [1, 7])
def test_the_price_endpoint_answers_what_the_submission_then_charges(devices, make_member, price_per_run):
    member = make_member(credits=10_000)
    devices["EMU_FREE"].price_per_run = price_per_run
    devices["EMU_FREE"].save()
    body = {"project_id": str(member.project_id), "jobs": _jobs(10, 25, 3), "device_type": "EMU_FREE"}
    response = post(member, "/core/api/v1/batches/price", body)
    assert response.status_code == 200, response.content
    quoted = response.json()["data"]
    assert quoted["price"] == price_per_run * 38 and quoted["runs"] == 38 and quoted["jobs"] == 3
    assert quoted["balance"] == 10_000 and quoted["balance_after"] == 10_000 - price_per_run * 38
    assert quoted["refused"] is None
    assert not Batch.objects.exists(), "a price writes nothing"

    created = post(member, "/core/api/v1/batches", {**body, "sequence_builder": SEQUENCE})
    assert created.status_code == 200, created.content
    charged = -sum(CreditTransaction.objects.filter(kind="CHARGE").values_list("amount", flat=True))
    assert charged == quoted["price"]
    assert credits.balance_of(member.project) == quoted["balance_after"]


def test_the_price_says_which_402_a_submission_would_get(devices, make_member):
    member = make_member(credits=50)
    body = {"project_id": str(member.project_id), "jobs": _jobs(60), "device_type": "EMU_FREE"}
    assert post(member, "/core/api/v1/batches/price", body).json()["data"]["refused"] == "insufficient_credits"
    credits.set_cap(member.project, member.user, 20, "MONTH", by=None)
    quoted = post(member, "/core/api/v1/batches/price", {**body, "jobs": _jobs(30)}).json()["data"]
    assert quoted["refused"] == "spending_cap"
    assert (quoted["spending_cap"], quoted["spending_cap_used"], quoted["spending_cap_left"]) == (20, 0, 20)


def test_the_price_endpoint_checks_the_jobs_and_the_project_as_a_submission_does(devices, make_member):
    member, stranger = make_member(), make_member()
    bad = post(member, "/core/api/v1/batches/price", {"project_id": str(member.project_id), "jobs": [{"runs": 0}]})
    assert bad.status_code == 400 and "'runs' must be between 1" in bad.json()["message"]
    other = post(stranger, "/core/api/v1/batches/price", {"project_id": str(member.project_id), "jobs": _jobs(1)})
    assert other.status_code == 404


def test_a_submission_over_the_cap_is_refused_with_402_naming_cap_use_and_price(devices, make_member):
    member = make_member(credits=10_000, role="MEMBER")
    credits.set_cap(member.project, member.user, 100, "MONTH", by=None)
    submit(member, 60)
    with pytest.raises(SpendingCapExceeded) as caught:
        submit(member, 30, 20)
    message = caught.value.message
    assert caught.value.status_code == 402
    assert "cap in project" in message and "100 credits this month" in message
    assert "used 60" in message and "costs 50" in message and "Nothing was created or charged" in message
    assert Batch.objects.count() == 1 and credits.balance_of(member.project) == 10_000 - 60
    submit(member, 40)  # exactly up to the cap is allowed
    assert credits.cap_usage(SpendingCap.objects.get()) == 100


def test_the_cap_refusal_through_the_api_is_a_402_and_refunds_count_back(devices, make_member):
    member = make_member(credits=10_000)
    credits.set_cap(member.project, member.user, 50, "TOTAL", by=None)
    batch = submit(member, 50)
    body = {"project_id": str(member.project_id), "jobs": _jobs(1), "sequence_builder": SEQUENCE}
    refused = post(member, "/core/api/v1/batches", {**body, "device_type": "EMU_FREE"})
    assert refused.status_code == 402 and "50 credits in total" in refused.json()["message"]
    services.cancel_batch(batch, by=member.user)  # the 50 come back, to the balance and to the cap
    assert post(member, "/core/api/v1/batches", {**body, "device_type": "EMU_FREE"}).status_code == 200


def test_caps_are_per_member_and_only_for_members(devices, make_member):
    admin = make_member(credits=10_000)
    other = make_member(role="MEMBER", project=admin.project)
    credits.set_cap(admin.project, other.user, 5, "MONTH", by=admin.user)
    submit(admin, 100)  # the admin has no cap
    with pytest.raises(SpendingCapExceeded):
        submit(other, 6)
    with pytest.raises(NotFound, match="is not a member of project"):
        credits.set_cap(admin.project, make_member().user, 5, "MONTH", by=admin.user)
    credits.set_cap(admin.project, other.user, None, "MONTH", by=admin.user)
    submit(other, 6)


def test_add_jobs_is_capped_too(devices, make_member):
    member = make_member(credits=10_000)
    credits.set_cap(member.project, member.user, 30, "MONTH", by=None)
    batch = services.create_batch(
        member.project, member.user, sequence_builder=SEQUENCE, jobs=_jobs(20), device_type="EMU_FREE", open=True
    )
    with pytest.raises(SpendingCapExceeded):
        services.add_jobs(batch, _jobs(11), by=member.user)
    services.add_jobs(batch, _jobs(10), by=member.user)
    assert credits.cap_usage(SpendingCap.objects.get()) == 30
