"""Issue 21's pages in Chromium: the sweep plot, the live price, the credits overview with caps,
webhooks with their log, the export link. Screenshots go to tests/browser/screenshots/ (and to
SCREENSHOTS_21 if set, for a reviewer's look)."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from batches import services, webhooks
from batches.models import WebhookDelivery
from portal.models import SpendingCap
from tests.batches.test_sweeps import make_sweep
from tests.batches.test_webhooks import Receiver
from tests.browser.conftest import screenshot, settled
from tests.conftest import consumers_paused

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(autouse=True)
def no_worker_runs_emu_free_jobs() -> Iterator[None]:
    """These tests give their jobs made-up results: a session worker must not run them first."""
    with consumers_paused("device.EMU_FREE"):
        yield


def shot(page: Any, name: str) -> None:
    screenshot(page, name)
    extra = os.environ.get("SCREENSHOTS_21")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(extra) / f"{name}.png"), full_page=True)


def charts_drawn(page: Any) -> int:
    return int(page.evaluate("() => Object.keys(window.Chart ? window.Chart.instances : {}).length"))


def test_the_sweep_plot_redraws_for_another_observable_and_downloads_its_csv(page, live_server, member, devices, login):
    batch = make_sweep(member)
    login(member.user)
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    page.locator("#sweep-link").click()
    expect(page.locator("h1")).to_have_text("Sweep")
    expect(page.locator("#sweep-heading")).to_contain_text("against delta")  # the first variable by name
    page.wait_for_function("() => window.Chart && Object.keys(window.Chart.instances).length === 1")
    page.locator("#sweep-x").select_option("omega_max")
    expect(page.locator("#sweep-heading")).to_contain_text("against omega_max")  # swapped: the form is new
    settled(page)
    page.locator("#sweep-series").select_option("delta")
    expect(page.locator("#sweep-heading")).to_contain_text("⟨number of excited atoms⟩ against omega_max, by delta")
    page.wait_for_function("() => document.querySelector('canvas[data-sweep]').dataset.drawn === '1'")
    data = json.loads(page.locator("#sweep-chart").get_attribute("data-sweep") or "{}")
    assert [d["label"] for d in data["datasets"]] == ["delta = 0", "delta = 5"]
    shot(page, "21-sweep-mean-excited")
    page.locator("#sweep-observable").select_option("excitation")
    expect(page.locator("#sweep-heading")).to_contain_text("P(atom 0 excited)")  # swapped: the form is new
    settled(page)
    page.locator("#sweep-atom").fill("2")
    page.locator("#sweep-atom").dispatch_event("change")
    expect(page.locator("#sweep-heading")).to_contain_text("P(atom 2 excited)")
    page.wait_for_function("() => document.querySelector('canvas[data-sweep]').dataset.drawn === '1'")
    shot(page, "21-sweep-atom-2")
    with page.expect_download() as download:
        page.locator("#sweep-csv").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) == 7 and lines[0].startswith("order,job_id,status,runs,delta,omega_max")


def test_the_new_batch_form_prices_the_jobs_as_they_are_typed(page, live_server, make_member, devices, login):
    member = make_member(credits=1000)
    SpendingCap.objects.create(project=member.project, user=member.user, amount=250, period="MONTH")
    login(member.user)
    page.goto(f"{live_server.url}/batches/new/")
    expect(page.locator("#price-estimate")).to_contain_text("Type or upload the jobs")
    page.get_by_label("Jobs as JSON or as a table of variables").fill("runs,omega_max\n100,9.5\n40,10.5")
    expect(page.locator("#price-value")).to_have_text("140 credits")
    expect(page.locator("#price-balance-after")).to_have_text("860")
    expect(page.locator("#price-estimate")).to_contain_text("your cap: 250 of 250 left this month")
    shot(page, "21-new-batch-price")
    page.get_by_label("Jobs as JSON or as a table of variables").fill("runs\n300")
    expect(page.locator("#price-estimate")).to_contain_text("Over your spending cap")
    shot(page, "21-new-batch-price-over-cap")


def test_the_credits_overview_groups_a_cancel_and_sets_a_cap(page, live_server, make_member, devices, login):
    admin = make_member(credits=50_000)
    other = make_member(role="MEMBER", project=admin.project)
    batch = services.create_batch(
        admin.project,
        other.user,
        sequence_builder=make_sweep.__globals__["seed_mappable_sequence"](),
        jobs=[{"runs": 200, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}] * 30,
        device_type="EMU_FREE",
        validate=False,
    )
    services.cancel_batch(batch, by=admin.user)
    login(admin.user)
    page.goto(f"{live_server.url}/credits/")
    page.locator("#credits-overview-link").click()
    expect(page.locator("#overview-balance")).to_have_text("50000")
    page.wait_for_function("() => window.Chart && Object.keys(window.Chart.instances).length === 1")
    line = page.locator("#grouped-ledger summary", has_text="30 jobs refunded, 6,000 credits")
    line.click()
    expect(page.locator("#grouped-ledger .group-jobs-list li")).to_have_count(30)
    page.get_by_label(f"Cap for {other.user.username}").fill("5000")
    page.locator("#members tr", has_text=other.user.username).get_by_role("button", name="Save").click()
    expect(page.locator("#messages")).to_contain_text("may now spend 5,000 credits per month")
    expect(page.locator("#members")).to_contain_text("0 of 5000 per calendar month")
    shot(page, "21-credits-overview")
    page.context.clear_cookies()
    login(other.user)
    page.goto(f"{live_server.url}/credits/overview/")
    expect(page.locator("#overview-balance")).to_have_text("50000")
    expect(page.locator("#grouped-ledger")).to_have_count(0)
    shot(page, "21-credits-overview-member")


def test_webhooks_are_registered_logged_and_redelivered_in_the_portal(page, live_server, member, devices, login):
    # The test delivers itself: no session worker may take the webhook task the cancel queues.
    with consumers_paused("default"):
        _register_log_and_redeliver(page, live_server, member, login)


def _register_log_and_redeliver(page: Any, live_server: Any, member: Any, login: Any) -> None:
    receiver = Receiver(fail=1)
    try:
        login(member.user)
        page.goto(f"{live_server.url}/webhooks/")
        page.get_by_label("URL").fill(receiver.url)
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.locator("#endpoints")).to_contain_text(receiver.url)
        batch = services.create_batch(
            member.project,
            member.user,
            sequence_builder=make_sweep.__globals__["seed_mappable_sequence"](),
            jobs=[{"runs": 5, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}],
            device_type="EMU_FREE",
        )
        services.cancel_batch(batch, by=member.user)
        with pytest.raises(Exception, match="500"):
            webhooks.deliver(str(batch.pk))
        page.reload()
        expect(page.locator("#deliveries")).to_contain_text("500")
        shot(page, "21-webhooks-failed")
        webhooks.redeliver(WebhookDelivery.objects.get().pk)  # what the queued task does
        page.reload()
        expect(page.locator("#deliveries tbody tr").first).to_contain_text("204")
        shot(page, "21-webhooks-redelivered")
    finally:
        receiver.close()


def test_the_batches_list_exports_the_filtered_selection(page, live_server, member, devices, login):
    kept = make_sweep(member)
    services.set_tags(kept, ["scan"])
    make_sweep(member)
    login(member.user)
    page.goto(f"{live_server.url}/batches/?tag=scan")
    with page.expect_download() as download:
        page.locator("#export-selection").click()
    archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    rows = [json.loads(line) for line in archive.read("manifest.jsonl").decode().splitlines()]
    assert {r["batch_id"] for r in rows} == {str(kept.pk)} and len(rows) == 6
    shot(page, "21-batches-list-export")


def test_the_batch_page_draws_the_sweep_inline_and_redraws_it_in_place(page, live_server, member, devices, login):
    batch = make_sweep(member)
    login(member.user)
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    page.evaluate("() => document.getElementById('sweep').scrollIntoView()")  # loaded once it is seen
    expect(page.locator("#sweep-heading")).to_contain_text("against delta")
    page.wait_for_function("() => document.querySelector('canvas[data-sweep]')?.dataset.drawn === '1'")
    page.locator("#sweep-x").select_option("omega_max")
    expect(page.locator("#sweep-heading")).to_contain_text("against omega_max")
    page.wait_for_function("() => document.querySelector('canvas[data-sweep]').dataset.drawn === '1'")
    assert page.url == f"{live_server.url}/batches/{batch.pk}/", "redrawn in the batch page, not another page"
    expect(page.locator("#jobs-heading")).to_be_visible()
    shot(page, "21-batch-page-sweep-inline")
    page.locator("#sweep-link").click()  # the page of its own still works
    expect(page.locator("h1")).to_have_text("Sweep")


def test_the_add_jobs_form_prices_the_jobs_on_the_batch_s_device_before_the_button(
    page, live_server, make_member, devices, login
):
    member = make_member(credits=1000)
    devices["EMU_FREE"].price_per_run = 2
    devices["EMU_FREE"].save()
    batch = services.create_batch(
        member.project, member.user, sequence_builder=make_sweep.__globals__["seed_mappable_sequence"](),
        jobs=[{"runs": 10, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}], device_type="EMU_FREE",
        open=True, validate=False,
    )  # fmt: skip
    SpendingCap.objects.create(project=member.project, user=member.user, amount=100, period="MONTH")
    login(member.user)
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    page.locator("#add-jobs summary").click()
    form = page.locator("#add-jobs")
    expect(form.locator("#price-estimate")).to_contain_text("Type or upload the jobs")
    form.get_by_label("Jobs as JSON or as a table of variables").fill('runs,omega_max,qubits\n15,9.5,{"q0": 1}')
    expect(form.locator("#price-value")).to_have_text("30 credits")
    expect(form.locator("#price-balance-after")).to_have_text("950")  # 1,000 - 20 charged - 30
    expect(form.locator("#price-estimate")).to_contain_text("your cap: 80 of 100 left this month")
    shot(page, "21-add-jobs-price")
    form.get_by_label("Jobs as JSON or as a table of variables").fill("runs\n50")
    expect(form.locator("#price-estimate")).to_contain_text("Over your spending cap")
    shot(page, "21-add-jobs-price-over-cap")


def test_a_project_admin_reaches_webhooks_from_the_navigation_and_a_member_sees_the_balance(
    page, live_server, make_member, devices, login
):
    admin = make_member(credits=7000)
    other = make_member(role="MEMBER", project=admin.project)
    SpendingCap.objects.create(project=admin.project, user=other.user, amount=500, period="TOTAL")
    login(admin.user)
    page.locator("#nav-webhooks").click()
    expect(page).to_have_url(f"{live_server.url}/webhooks/")
    expect(page.locator("#nav-webhooks")).to_have_attribute("aria-current", "page")
    shot(page, "21-nav-webhooks")
    page.goto(f"{live_server.url}/credits/")
    expect(page.locator("#balance")).to_have_text("7000")
    shot(page, "21-credits-admin")
    page.context.clear_cookies()
    login(other.user)
    expect(page.locator("#nav-webhooks")).to_have_count(0)
    page.get_by_role("link", name="Credits", exact=True).click()
    expect(page.locator("#balance")).to_have_text("7000")
    expect(page.locator("#cap-left")).to_have_text("500")
    expect(page.locator("#my-cap")).to_contain_text("of 500 in total")
    expect(page.locator("#ledger")).to_have_count(0)
    shot(page, "21-credits-member")
