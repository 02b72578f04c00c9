"""Issue 18 in Chromium: outcomes, live actions, the queue's estimate, open batches, failed jobs, phones, docs."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from backends.models import Device
from batches.models import Batch
from jobs.models import Job, JobStatus
from portal import credits
from tests.browser.conftest import screenshot
from tests.portal.test_at_a_glance import _batch, _end

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _hold_device() -> None:
    """MAINTENANCE: batches are accepted but get no slot, so they stay PENDING."""
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)


def test_failed_and_canceled_work_does_not_look_successful(page, live_server, member, devices, login):
    _hold_device()
    failed = _batch(member)
    _end(failed, error=[0, 1])
    mixed = _batch(member, n_jobs=40)
    _end(mixed, status="CANCELED", done=list(range(35)), error=[35], canceled=[36, 37, 38, 39])
    clean = _batch(member, n_jobs=3)
    _end(clean, done=[0, 1, 2])
    _batch(member, n_jobs=5)  # waiting
    login(member.user)
    row = page.locator("#batches-table tbody tr", has=page.get_by_role("link", name=str(failed.pk)[:8]))
    expect(row.locator("td").nth(3)).to_have_text("DONE · 2 errors")
    expect(row.locator('[data-outcome="ERROR"]')).to_have_count(1)
    expect(row.locator('[data-outcome="DONE"]')).to_have_count(0)
    canceled_row = page.locator("#batches-table tbody tr", has=page.get_by_role("link", name=str(mixed.pk)[:8]))
    expect(canceled_row.locator("svg.outcome-bar title")).to_have_text("35 done · 1 error · 4 canceled")
    screenshot(page, "18-list")
    page.get_by_label("Failed jobs").select_option("1")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#batches-table tbody tr")).to_have_count(2)
    page.get_by_role("link", name=str(failed.pk)[:8]).click()
    expect(page.locator("#batch-status")).to_have_text("DONE · 2 errors")
    expect(page.locator("#download-all")).to_have_count(0)  # nothing finished with results
    screenshot(page, "18-batch-with-errors")
    page.goto(f"{live_server.url}/batches/{mixed.pk}/")
    expect(page.locator("#download-all")).to_have_text("Download results (35 finished jobs)")
    screenshot(page, "18-canceled-batch-with-results")


def test_the_live_page_swaps_cancel_for_download_when_the_batch_ends(page, live_server, member, devices, login):
    _hold_device()
    batch = _batch(member)
    login(member.user)
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    expect(page.locator("#cancel-batch")).to_be_visible()
    expect(page.locator("#download-all")).to_have_count(0)
    page.evaluate("window.notReloaded = true")
    _end(batch, done=[0, 1])
    expect(page.locator("#batch-status")).to_have_text("DONE", timeout=30_000)
    expect(page.locator("#cancel-batch")).to_have_count(0)
    expect(page.locator("#download-all")).to_have_text("Download all results")
    expect(page.locator("#batch-ended")).to_be_visible()
    assert page.evaluate("window.notReloaded") is True


def test_a_queued_batch_shows_its_estimate_and_what_holds_the_queue(page, live_server, member, devices, login):
    emu = Device.objects.get(name="EMU_FREE")
    Device.objects.filter(pk=emu.pk).update(slots=1)
    # A finished batch: 10 jobs of 100 runs, one every 2 s, so ~0.02 s per run.
    history = _batch(member, n_jobs=10)
    start = timezone.now() - timedelta(hours=1)
    for row in history.jobs.all():
        Job.objects.filter(pk=row.pk).update(
            status=JobStatus.DONE,
            runs=100,
            created_at=start - timedelta(minutes=1),
            start_timestamp=start + timedelta(seconds=2 * row.order),
            end_timestamp=start + timedelta(seconds=2 * row.order + 2),
        )
    Batch.objects.filter(pk=history.pk).update(status="DONE", start_datetime=start)
    idle = _batch(member, n_jobs=1, open=True)  # takes the slot
    Batch.objects.filter(pk=idle.pk).update(status="RUNNING", start_datetime=timezone.now())
    idle.jobs.update(status=JobStatus.DONE)
    Batch.objects.filter(pk=idle.pk).update(last_activity_at=timezone.now() - timedelta(minutes=2))
    queued = _batch(member, n_jobs=3)
    login(member.user)
    page.goto(f"{live_server.url}/batches/{queued.pk}/")
    expect(page.locator("#queue-position")).to_have_text("#1")
    expect(page.locator("#queue-eta")).to_have_text("~3 min")
    expect(page.locator("#queue-notes")).to_contain_text(
        f"Slot held by open batch {str(idle.pk)[:8]}… idle for 2 min, times out in 3 min."
    )
    screenshot(page, "18-queued-batch-estimate")
    page.get_by_role("link", name="Queue of EMU_FREE").click()
    rows = page.locator("#queue-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1).locator(".starts-in")).to_have_text("~3 min")
    screenshot(page, "18-queue-board")


def test_an_open_batch_counts_down_and_takes_jobs_from_the_portal(page, live_server, member, devices, login, settings):
    settings.OPEN_BATCH_TIMEOUT = 300
    batch = _batch(member, n_jobs=1, open=True)
    batch.jobs.update(status=JobStatus.DONE)
    Batch.objects.filter(pk=batch.pk).update(status="RUNNING", start_datetime=timezone.now())
    _hold_device()  # the added job waits: the page shows it to run
    login(member.user)
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    countdown = page.locator("#open-state .countdown")
    expect(page.locator("#open-state")).to_contain_text("accepting jobs · closes in")
    first = countdown.inner_text()
    assert re.fullmatch(r"0[45]:\d\d", first)
    expect(countdown).not_to_have_text(first, timeout=3_000)  # it ticks
    screenshot(page, "18-open-batch-countdown")
    page.locator("#add-jobs summary").click()
    page.get_by_label("Jobs as JSON or as a table of variables").fill("runs,omega_max\n10,1.0")
    page.get_by_role("button", name="Add jobs").click()
    expect(page.locator("#add-jobs-errors")).to_contain_text("qubits")
    expect(page.get_by_label("Jobs as JSON or as a table of variables")).to_have_value("runs,omega_max\n10,1.0")
    page.get_by_label("Jobs as JSON or as a table of variables").fill('runs,omega_max,qubits\n10,1.5,"{""q0"": 1}"')
    page.get_by_role("button", name="Add jobs").click()
    expect(page.locator("#messages")).to_contain_text("1 job added to the batch.")
    expect(page.locator("#open-state")).to_contain_text("accepting jobs · 1 job to run")


def test_a_timed_out_batch_says_why(page, live_server, member, devices, login):
    batch = _batch(member, n_jobs=1, open=True)
    _end(batch, status="TIMED_OUT", done=[0])
    login(member.user)
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    expect(page.locator("#timed-out-reason")).to_contain_text("this open batch had no job to run for 5 min")


def test_a_failed_jobs_page_shows_its_error_refund_and_configuration(page, live_server, member, devices, login):
    _hold_device()
    batch = _batch(member, n_jobs=1, configuration={"dt": 10, "precision": "normal"})
    row = batch.jobs.get()
    error = "QutipBackendV2 failed: ValueError: the amplitude 'omega' exceeds 12.57 rad/µs at t=100 ns"
    Job.objects.filter(pk=row.pk).update(status=JobStatus.ERROR, errors=[error])
    credits.refund_job(row, by=None, reason="The backend failed: refunded.")
    login(member.user)
    page.goto(f"{live_server.url}/jobs/{row.pk}/")
    expect(page.locator("#job-errors")).to_have_text(error)
    expect(page.locator("#job-cost")).to_have_text(f"{row.price} credits refunded")
    expect(page.locator("#job-ledger tbody tr")).to_have_count(2)
    expect(page.locator("#job-configuration")).to_contain_text('"precision": "normal"')
    expect(page.get_by_text("No results yet")).to_have_count(0)
    screenshot(page, "18-failed-job")


@pytest.mark.parametrize("path", ["/batches/", "/credits/", "/tokens/", "/devices/"])
def test_pages_fit_a_phone_and_the_status_column_stays_visible(page, live_server, member, devices, login, path):
    _hold_device()
    failed = _batch(member)
    _end(failed, error=[0, 1])
    login(member.user)
    page.set_viewport_size({"width": 400, "height": 800})
    page.goto(f"{live_server.url}{path}")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"{path} is {width} px wide"
    status_cells = {
        "/batches/": "#batches-table tbody tr td:nth-child(4)",
        "/credits/": "#top-batches tbody td:nth-child(4)",
    }
    if path in status_cells:
        status = page.locator(status_cells[path]).first
        expect(status).to_contain_text("DONE")
        box = status.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 400, f"the status column is cut at {box}"
    screenshot(page, f"18-phone{path.strip('/').replace('/', '-')}")


def test_the_api_docs_page_shows_swagger_ui_and_the_tokens_page_copies(page, live_server, member, devices, login):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(f"{live_server.url}/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tweezer API", timeout=20_000)
    expect(page.locator(".opblock").first).to_be_visible()
    screenshot(page, "18-api-docs")
    login(member.user)
    page.goto(f"{live_server.url}/tokens/")
    expect(page.locator("#project-id")).to_have_text(str(member.project_id))
    page.locator('[data-copy="project-id"]').click()
    expect(page.locator('[data-copy="project-id"]')).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == str(member.project_id)
    screenshot(page, "18-use-from-python")
