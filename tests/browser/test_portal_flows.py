"""The portal's flows in Chromium against the live server (and a real worker where jobs run)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from backends.models import Device
from batches import services
from batches.models import Batch
from portal.models import Project
from tests.browser.conftest import screenshot
from tests.sequences import job, seed_mappable_sequence

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _hold_device() -> None:
    """MAINTENANCE: batches are accepted but get no slot, so their jobs stay PENDING."""
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)


def _accept_dialogs(page) -> list[str]:
    seen: list[str] = []

    def accept(dialog) -> None:
        seen.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    return seen


def test_cancel_a_job_and_see_the_refund_on_the_credits_page(page, live_server, sdk, member, login):
    _hold_device()
    jobs = [job(omega=1.0, runs=30, qubits={"q0": 1}), job(omega=2.0, runs=40, qubits={"q0": 2})]
    batch = sdk.create_batch(seed_mappable_sequence(), jobs, device_type="EMU_FREE")
    login(member.user)
    page.goto(f"{live_server.url}/batches/{batch.id}/")
    expect(page.locator("#queue-position")).to_contain_text("#1")
    dialogs = _accept_dialogs(page)
    second = batch.ordered_jobs[1].id
    page.locator(f"#sel-{second}").check()
    expect(page.locator("#selected-count")).to_have_text("1 selected")
    # The live refresh replaces the rows but keeps what the user selected (hx-preserve).
    page.evaluate("window.swaps = 0; document.addEventListener('htmx:afterSettle', () => window.swaps++)")
    page.wait_for_function("() => window.swaps > 0", timeout=30_000)
    expect(page.locator(f"#sel-{second}")).to_be_checked()
    expect(page.locator("#selected-count")).to_have_text("1 selected")
    page.get_by_role("button", name="Cancel selected").click()
    expect(page.locator("#messages")).to_contain_text("1 job canceled, 40 credits refunded.")
    assert dialogs and "Cancel the selected jobs?" in dialogs[0]
    expect(page.locator(f'tr[data-job="{second}"] .badge')).to_have_text("CANCELED")
    screenshot(page, "batch-after-cancel")

    page.get_by_role("link", name="Credits").click()
    expect(page.locator("#balance")).to_have_text(str(100_000 - 30))
    refund_row = page.locator("#ledger tr.kind-refund")
    expect(refund_row).to_have_count(1)
    expect(refund_row.locator(".amount")).to_have_text("+40")
    page.get_by_label("Kind").select_option("REFUND")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#ledger tbody tr")).to_have_count(1)
    screenshot(page, "credits-admin")
    page.get_by_role("link", name="Batches").click()
    expect(page.locator("#batches-table tbody tr")).to_have_count(1)
    screenshot(page, "batches-list")


def test_close_an_open_batch_then_download_one_result_and_zips(page, live_server, sdk, member, login, worker, tmp_path):
    jobs = [job(omega=1.0, runs=30, qubits={"q0": 1, "q1": 5}), job(omega=2.0, runs=40, qubits={"q0": 2, "q1": 4})]
    batch = sdk.create_batch(seed_mappable_sequence(), jobs, device_type="EMU_FREE", open=True)
    login(member.user)
    page.goto(f"{live_server.url}/batches/{batch.id}/")
    expect(page.locator("#jobs-table tr[data-job] .badge")).to_have_text(["DONE", "DONE"], timeout=60_000)
    expect(page.locator("#batch-status")).to_have_text("RUNNING")
    page.reload()  # the action buttons are outside the live region
    _accept_dialogs(page)
    page.get_by_role("button", name="Close batch").click()
    expect(page.locator("#messages")).to_contain_text("Batch closed")
    expect(page.locator("#batch-status")).to_have_text("DONE", timeout=30_000)
    screenshot(page, "batch-closed-done")

    # One job's results, from the job page's top-right button.
    first = batch.ordered_jobs[0].id
    page.get_by_role("link", name=first[:8]).click()
    expect(page.locator("#register .trap.used")).to_have_count(2)
    expect(page.locator("#histogram")).to_be_visible()
    screenshot(page, "job-done")
    with page.expect_download() as info:
        page.locator("#download-results").click()
    result = json.loads(Path(info.value.path()).read_text())
    assert sum(result["counter"].values()) == 30

    # The selected jobs, then all of them, as zips with a manifest.
    page.go_back()
    page.locator(f"#sel-{batch.ordered_jobs[1].id}").check()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download selected").click()
    selected = zipfile.ZipFile(io.BytesIO(Path(info.value.path()).read_bytes()))
    manifest = json.loads(selected.read("manifest.json"))
    assert [row["id"] for row in manifest["jobs"]] == [batch.ordered_jobs[1].id]
    assert sum(json.loads(selected.read(manifest["jobs"][0]["file"]))["counter"].values()) == 40
    with page.expect_download() as info:
        page.locator("#download-all").click()
    everything = zipfile.ZipFile(io.BytesIO(Path(info.value.path()).read_bytes()))
    rows = json.loads(everything.read("manifest.json"))["jobs"]
    assert [row["runs"] for row in rows] == [30, 40]
    assert all(row["status"] == "DONE" and row["file"] in everything.namelist() for row in rows)


def test_filter_and_paginate_the_jobs_table(page, live_server, member, devices, login):
    _hold_device()
    specs = [job(omega=1.0, runs=10 + (i % 3), qubits={"q0": 1}) for i in range(120)]
    batch = services.create_batch(
        member.project, member.user, sequence_builder=seed_mappable_sequence(), jobs=specs, device_type="EMU_FREE"
    )
    services.cancel_jobs(batch, batch.jobs.filter(order__in=[3, 60, 110]), by=member.user)
    login(member.user)
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    rows = page.locator("#jobs-table tr[data-job]")
    expect(rows).to_have_count(50)
    expect(page.locator(".pager").first).to_contain_text("Page 1 of 3")
    page.get_by_role("link", name="Next").click()
    expect(page.locator(".pager").first).to_contain_text("Page 2 of 3")
    expect(rows.first.locator("td.num").first).to_have_text("50")
    screenshot(page, "batch-jobs-page-2")

    filters = page.locator('form[aria-label="Filter jobs"]')
    filters.get_by_label("Canceled").check()
    filters.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(3)
    expect(rows.locator(".badge")).to_have_text(["CANCELED"] * 3)
    filters.get_by_label("Canceled").uncheck()
    filters.get_by_label("Min runs").fill("12")
    filters.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(40)
    assert re.search(r"min_runs=12", page.url)
    screenshot(page, "batch-jobs-filtered")


def test_a_member_sees_the_balance_but_neither_another_projects_batch_nor_the_admin_ledger(
    page, live_server, member, make_member, devices, login
):
    _hold_device()
    other = make_member()
    theirs = services.create_batch(
        other.project, other.user, sequence_builder=seed_mappable_sequence(), jobs=[job(qubits={"q0": 1})]
    )
    plain = make_member(role="MEMBER", project=member.project)
    login(plain.user)
    response = page.goto(f"{live_server.url}/batches/{theirs.pk}/")
    assert response.status == 404
    response = page.goto(f"{live_server.url}/credits/ledger.csv")
    assert response.status == 404
    page.goto(f"{live_server.url}/credits/")
    expect(page.get_by_role("heading", name="Credits")).to_be_visible()
    expect(page.locator("#ledger")).to_have_count(0)
    expect(page.locator("#balance")).to_have_text(str(Project.objects.get(pk=member.project_id).balance))  # 21.4
    expect(page.locator("#my-cap")).to_contain_text("no cap")
    expect(page.locator("#ledger-csv")).to_have_count(0)
    expect(page.locator("#nav-webhooks")).to_have_count(0)
    screenshot(page, "credits-member")
    assert Batch.objects.filter(pk=theirs.pk, status="PENDING").exists()


def test_other_pages_render_and_a_token_is_shown_once(page, live_server, member, devices, login):
    login(member.user)
    page.get_by_role("link", name="Devices").click()
    expect(page.locator("#device-EMU_FREE")).to_contain_text("Max atoms")
    screenshot(page, "devices")
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("notebook")
    page.get_by_role("button", name="Create token").click()
    plain = page.locator("#token-value").inner_text().strip()
    assert plain.startswith("twz_")
    screenshot(page, "tokens-created")
    page.reload()
    expect(page.locator("#token-value")).to_have_count(0)
    expect(page.locator("#tokens-table")).to_contain_text(plain[:12])
    page.goto(f"{live_server.url}/batches/new/")
    screenshot(page, "batch-new")


def test_new_batch_form_submits_a_table_of_jobs_and_shows_errors(page, live_server, member, devices, login, tmp_path):
    _hold_device()
    sequence = tmp_path / "sequence.json"
    sequence.write_text(seed_mappable_sequence())
    login(member.user)
    page.get_by_role("link", name="New batch").first.click()
    page.get_by_label("Sequence file").set_input_files(str(sequence))
    page.get_by_label("Jobs as JSON or as a table").fill(
        'runs,omega_max,qubits\n10,1.5,"{""q0"": 1}"\n0,2,"{""q0"": 2}"'
    )
    page.get_by_role("button", name="Submit batch").click()
    expect(page.locator("#form-errors")).to_contain_text("Job 1: 'runs' must be between 1 and")
    screenshot(page, "batch-new-error")
    assert not Batch.objects.exists()

    # Issue 18.8: the uploaded sequence survived the error (in the text area): no second upload.
    expect(page.get_by_label("Or paste the sequence")).to_have_value(seed_mappable_sequence())
    page.get_by_label("Jobs as JSON or as a table").fill(
        'runs,omega_max,qubits\n10,1.5,"{""q0"": 1}"\n20,2,"{""q0"": 2}"'
    )
    page.get_by_label("Tags").fill("scan, portal")
    page.get_by_role("button", name="Submit batch").click()
    expect(page.locator("#messages")).to_contain_text("Batch created with 2 jobs, charged 30 credits.")
    expect(page.locator("#jobs-table tr[data-job]")).to_have_count(2)
    assert Batch.objects.get().tags == ["scan", "portal"]

    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "batch-mobile")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Batches").click()
    screenshot(page, "batches-mobile")
