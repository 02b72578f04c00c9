"""The batch page under the real ASGI server is pushed its updates by server-sent events (issue 19).

The batch first waits ~14 s for its device, so the page's fallback poll has backed off to
16-20 s: a page showing DONE within seconds of the job's end got it from the stream.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from backends.models import Device
from batches import scheduler
from batches.models import Batch
from jobs.models import Job
from tests.browser.conftest import PASSWORD, screenshot
from tests.sdk.helpers import omega_sequence
from tests.sdk.test_held_status import JOB, asgi_server, sdk_on  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_batch_page_updates_by_sse_without_reload(page, asgi_server, member, devices):  # noqa: F811
    server = asgi_server(STATUS_HOLD_SECONDS="20", DEBUG="1")
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    batch = sdk_on(server, member).create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
    streams: list[int] = []
    page.on("response", lambda r: streams.append(r.status) if r.url.endswith("/events/") else None)
    page.goto(f"{server.url}/login/")
    page.get_by_label("Username").fill(member.user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}/batches/")
    page.goto(f"{server.url}/batches/{batch.id}/")
    page.evaluate("() => { window.loadedAt = performance.timeOrigin; }")
    expect(page.locator("#batch-status")).to_contain_text("PENDING")
    time.sleep(14)  # the poll backs off: 2, 4, 8, 16 s
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.UP)
    expect(page.locator("#batch-status")).to_contain_text("DONE", timeout=30_000)
    shown = time.time()
    end = Job.objects.get(batch_id=batch.id).end_timestamp
    assert Batch.objects.get(pk=batch.id).status == "DONE" and end is not None
    assert shown - end.timestamp() < 4, "the page was not pushed the job's end"
    assert page.evaluate("() => window.loadedAt") is not None  # the same page: no reload
    assert 200 in streams
    screenshot(page, "batch-sse-done")


def test_batches_list_and_queue_board_update_by_sse_without_reload(page, asgi_server, member, devices):  # noqa: F811
    """The list and the queue board fall back to a 20 s poll: a change shown within seconds came
    from the project's stream."""
    server = asgi_server(STATUS_HOLD_SECONDS="20", DEBUG="1")
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    batch = sdk_on(server, member).create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
    page.goto(f"{server.url}/login/")
    page.get_by_label("Username").fill(member.user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}/batches/")
    row = page.locator("#batches-table tr", has_text=str(batch.id)[:8])
    expect(row).to_contain_text("PENDING")
    page.evaluate("() => { window.sameDocument = true; }")
    time.sleep(2)  # the stream is open
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.UP)
    started = time.time()
    scheduler.advance(Device.objects.get(name="EMU_FREE").pk)
    expect(row).to_contain_text("DONE", timeout=12_000)
    assert time.time() - started < 12 and page.evaluate("() => window.sameDocument") is True

    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    page.goto(f"{server.url}/batches/queue/EMU_FREE/")
    expect(page.locator("#queue-live")).to_contain_text("Nothing running or waiting")
    page.evaluate("() => { window.sameDocument = true; }")
    time.sleep(2)
    sdk_on(server, member).create_batch(omega_sequence(), [JOB], device_type="EMU_FREE", wait=False)
    expect(page.locator("#queue-table")).to_be_visible(timeout=15_000)
    assert page.evaluate("() => window.sameDocument") is True
    screenshot(page, "queue-board-sse")
