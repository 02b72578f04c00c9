"""Log in, submit with the real SDK, watch the batch page go PENDING → RUNNING → DONE without reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from backends.models import Device
from batches import scheduler
from batches.models import Batch
from tests.browser.conftest import screenshot
from tests.sequences import seed_mappable_sequence

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The page records every status it shows; a reload would wipe this list.
RECORD_STATUSES = """() => {
  window.seenBatch = [];
  window.seenJobs = [];
  const note = () => {
    const b = document.querySelector('#batch-status .badge');
    if (b && window.seenBatch.at(-1) !== b.textContent.trim()) window.seenBatch.push(b.textContent.trim());
    document.querySelectorAll('#jobs-table tr[data-job] .badge').forEach((el) => {
      const s = el.textContent.trim();
      if (window.seenJobs.at(-1) !== s) window.seenJobs.push(s);
    });
  };
  note();
  new MutationObserver(note).observe(document.body, {childList: true, subtree: true});
}"""


def test_login_page_rejects_a_wrong_password_and_accepts_the_right_one(page, live_server, member, login):
    page.goto(f"{live_server.url}/batches/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/batches/"))
    page.get_by_label("Username").fill(member.user.username)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("didn't match")
    screenshot(page, "login-error")
    login(member.user)
    expect(page.get_by_role("heading", name="Batches", exact=True)).to_be_visible()
    screenshot(page, "batches-empty")


def test_sdk_batch_goes_pending_running_done_on_the_page_without_reload(page, live_server, sdk, member, login, worker):
    # A device in MAINTENANCE accepts batches but gives them no slot: the batch waits PENDING
    # until we bring the device back, so the page is sure to show every state.
    emu = Device.objects.get(name="EMU_FREE")
    Device.objects.filter(pk=emu.pk).update(status=Device.Status.MAINTENANCE)
    jobs = [
        {"runs": 50, "variables": {"omega_max": 1.0, "qubits": {"q0": 1, "q1": 5, "q2": 7}}},
        {"runs": 70, "variables": {"omega_max": 2.0, "qubits": {"q0": 2, "q1": 4}}},
    ]
    submitted = sdk.create_batch(seed_mappable_sequence(), jobs, device_type="EMU_FREE", open=True)

    login(member.user)
    page.get_by_role("link", name=submitted.id[:8]).click()
    expect(page.locator("#batch-status")).to_have_text("PENDING")
    expect(page.locator("#jobs-table tr[data-job] .badge")).to_have_text(["PENDING", "PENDING"])
    page.evaluate(RECORD_STATUSES)
    screenshot(page, "batch-pending")

    Device.objects.filter(pk=emu.pk).update(status=Device.Status.UP)
    scheduler.advance(emu.pk)

    # The open batch keeps RUNNING after its jobs are done, until it is closed.
    expect(page.locator("#batch-status")).to_have_text("RUNNING", timeout=30_000)
    expect(page.locator("#jobs-table tr[data-job] .badge")).to_have_text(["DONE", "DONE"], timeout=60_000)
    screenshot(page, "batch-running")

    sdk.close_batch(submitted.id)
    expect(page.locator("#batch-status")).to_have_text("DONE", timeout=30_000)
    screenshot(page, "batch-done")

    seen_batch = page.evaluate("window.seenBatch")
    seen_jobs = page.evaluate("window.seenJobs")  # survives only if the page never reloaded
    assert seen_batch == ["PENDING", "RUNNING", "DONE"]
    assert seen_jobs[0] == "PENDING" and seen_jobs[-1] == "DONE"
    assert set(seen_jobs) <= {"PENDING", "RUNNING", "DONE"}
    # Terminal: the live region no longer polls.
    expect(page.locator("#batch-live")).not_to_have_attribute("hx-trigger", re.compile(".+"))
    assert Batch.objects.get(pk=submitted.id).status == "DONE"
