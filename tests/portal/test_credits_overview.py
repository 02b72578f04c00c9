"""Issue 21.4: the balance for every member, the burn-down forecast, usage for a range, the grouped
ledger, caps set in the portal; 21.3: the live price in the forms."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from batches import services
from batches.models import Batch
from portal import credits, usage
from portal.models import CreditTransaction, SpendingCap
from tests.sequences import seed_mappable_sequence

SEQUENCE = seed_mappable_sequence()


def submit(member: Any, n: int, runs: int, *, device: str = "EMU_FREE") -> Batch:
    return services.create_batch(
        member.project,
        member.user,
        sequence_builder=SEQUENCE,
        jobs=[{"runs": runs, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}} for _ in range(n)],
        device_type=device,
        validate=False,
    )


def logged_in(member: Any) -> Any:
    client: Any = Client()
    client.force_login(member.user)
    return client


def test_a_cancel_of_30_jobs_is_one_ledger_line_expandable_to_its_jobs(devices, make_member):
    member = make_member(credits=100_000)
    batch = submit(member, 30, 200)
    services.cancel_batch(batch, by=member.user)
    groups = list(usage.grouped_ledger(member.project.transactions.all()))
    assert [(g["kind"], g["jobs"], g["amount"]) for g in groups] == [
        ("REFUND", 30, 6000),
        ("CHARGE", 30, -6000),
        ("GRANT", 1, 100_000),
    ]
    assert usage.describe_group(groups[0]) == "30 jobs refunded, 6,000 credits"
    assert usage.describe_group(groups[1]) == "30 jobs charged, 6,000 credits"

    client = logged_in(member)
    page = client.get("/credits/overview/")
    assert page.status_code == 200
    assert "30 jobs refunded, 6,000 credits" in page.content.decode()
    refund = groups[0]
    expanded = client.get("/credits/overview/ledger-group/", {"key": refund["key"]})
    assert expanded.status_code == 200 and expanded.content.decode().count("<li>") == 30
    # The CSV keeps one row per ledger line.
    csv_lines = b"".join(client.get("/credits/ledger.csv").streaming_content).decode().splitlines()
    assert len(csv_lines) == 1 + 61


def test_the_forecast_runs_out_at_the_recent_rate(devices, make_member):
    member = make_member(credits=10_000)
    submit(member, 1, 1400)  # 1,400 credits in the last 14 days: 100 a day
    burn = usage.burn_down(member.project)
    assert burn["current"] == 8600 and burn["per_day"] == 100.0
    assert burn["runs_out"] == timezone.localdate() + timedelta(days=86)
    assert burn["balance"][29] == 8600 and burn["forecast"][29] == 8600 and burn["forecast"][-1] == 0
    # The past is read back from the ledger: granted 10 days ago, spent 2 days ago.
    CreditTransaction.objects.filter(kind="GRANT").update(created_at=timezone.now() - timedelta(days=10))
    CreditTransaction.objects.filter(kind="CHARGE").update(created_at=timezone.now() - timedelta(days=2))
    burn = usage.burn_down(member.project)
    assert burn["balance"][18:21] == [0, 10_000, 10_000] and burn["balance"][26:28] == [10_000, 8600]
    quiet = make_member(credits=500)
    assert usage.burn_down(quiet.project)["runs_out"] is None


def test_usage_by_user_and_device_for_a_date_range(devices, make_member):
    admin = make_member(credits=100_000)
    other = make_member(role="MEMBER", project=admin.project)
    devices["EMU_SV"].status = "UP"
    devices["EMU_SV"].save()
    submit(admin, 2, 10)
    submit(other, 1, 7, device="EMU_SV")
    old = submit(other, 1, 1000)
    CreditTransaction.objects.filter(batch=old).update(created_at=timezone.now() - timedelta(days=60))
    today = timezone.localdate()
    spent = usage.usage_between(admin.project, today - timedelta(days=7), today)
    assert dict(spent["by_device"]) == {"EMU_FREE": 20, "EMU_SV": 14}
    assert dict(spent["by_user"]) == {admin.user.username: 20, other.user.username: 14}
    wide = usage.usage_between(admin.project, today - timedelta(days=90), today)
    assert wide["total"] == 20 + 14 + 1000


def test_every_member_sees_the_balance_but_only_admins_see_others_and_set_caps(devices, make_member):
    admin = make_member(credits=5000)
    other = make_member(role="MEMBER", project=admin.project)
    submit(admin, 1, 100)
    page = logged_in(other).get("/credits/overview/").content.decode()
    assert 'id="overview-balance">4900<' in page
    assert admin.user.username not in page and "grouped-ledger" not in page
    denied = logged_in(other).post("/credits/caps/", {"user": other.user.pk, "amount": "10", "period": "MONTH"})
    assert denied.status_code == 404 and not SpendingCap.objects.exists()
    assert logged_in(other).get("/credits/overview/ledger-group/?key=1").status_code == 404

    client = logged_in(admin)
    assert (
        client.post("/credits/caps/", {"user": other.user.pk, "amount": "1,500", "period": "TOTAL"}).status_code == 302
    )
    cap = SpendingCap.objects.get()
    assert (cap.user, cap.amount, cap.period, cap.set_by) == (other.user, 1500, "TOTAL", admin.user)
    assert "0 of 1500 in total" in logged_in(other).get("/credits/overview/").content.decode()
    client.post("/credits/caps/", {"user": other.user.pk, "amount": "", "period": "MONTH"})
    assert not SpendingCap.objects.exists()
    stranger = make_member()
    assert client.post("/credits/caps/", {"user": stranger.user.pk, "amount": "5"}).status_code == 404


def test_a_cap_beyond_what_the_ledger_can_count_is_refused_with_a_message_not_an_error(devices, make_member):
    admin = make_member()
    other = make_member(role="MEMBER", project=admin.project)
    response = logged_in(admin).post(
        "/credits/caps/", {"user": other.user.pk, "amount": "9" * 20, "period": "MONTH"}, follow=True
    )
    assert response.status_code == 200
    assert "A spending cap (&#x27;amount&#x27;) is a whole number of credits" in response.content.decode()
    assert not SpendingCap.objects.exists()


@pytest.mark.parametrize("text", ["runs,omega_max\n100,9.5\n40,10.5", '[{"runs": 100}, {"runs": 40}]'])
def test_the_new_batch_form_shows_the_price_and_the_balance_after(devices, make_member, text):
    member = make_member(credits=1000)
    devices["EMU_FREE"].price_per_run = 2
    devices["EMU_FREE"].save()
    response = logged_in(member).post("/batches/price/", {"jobs_text": text, "device_type": "EMU_FREE"})
    body = response.content.decode()
    assert '<strong id="price-value">280 credits</strong>' in body
    assert '<strong id="price-balance-after">720</strong>' in body
    credits.set_cap(member.project, member.user, 100, "MONTH", by=None)
    body = logged_in(member).post("/batches/price/", {"jobs_text": text, "device_type": "EMU_FREE"}).content.decode()
    assert "Over your spending cap" in body
    half_typed = logged_in(member).post("/batches/price/", {"jobs_text": "runs\nmany", "device_type": "EMU_FREE"})
    assert half_typed.status_code == 200 and "price-value" not in half_typed.content.decode()


def test_the_add_jobs_form_of_an_open_batch_shows_its_price_before_the_button(devices, make_member):
    member = make_member(credits=1000)
    devices["EMU_FREE"].price_per_run = 3
    devices["EMU_FREE"].save()
    batch = services.create_batch(
        member.project, member.user, sequence_builder=SEQUENCE, open=True, device_type="EMU_FREE", validate=False,
        jobs=[{"runs": 10, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}],
    )  # fmt: skip
    page = logged_in(member).get(f"/batches/{batch.pk}/").content.decode()
    form = page[page.index('id="add-jobs"') :]
    price_at, button_at = form.index('id="price-estimate"'), form.index(">Add jobs</button>")
    assert price_at < button_at and f'hx-post="/batches/price/?batch={batch.pk}"' in form
    assert "Type or upload the jobs to see their price." in form
    # What the form's region asks as jobs are typed: the price on the batch's device, no device_type sent.
    body = logged_in(member).post(f"/batches/price/?batch={batch.pk}", {"jobs_text": "runs\n5\n5"}).content.decode()
    assert '<strong id="price-value">30 credits</strong>' in body and "on EMU_FREE" in body
    assert '<strong id="price-balance-after">940</strong> of 970' in body


def test_the_add_jobs_price_uses_the_batch_s_device(devices, make_member):
    member = make_member(credits=1000)
    batch = submit(member, 1, 10)
    body = logged_in(member).post("/batches/price/", {"jobs_text": "runs\n5", "batch": str(batch.pk)}).content.decode()
    assert '<strong id="price-value">5 credits</strong>' in body and ">985<" in body
    outsider = make_member()
    assert (
        logged_in(outsider).post("/batches/price/", {"jobs_text": "runs\n5", "batch": str(batch.pk)}).status_code == 404
    )
