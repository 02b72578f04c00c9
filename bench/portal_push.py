"""Issue 19, portal: from a job's end in the database to the updated count in a browser on the
batch page (Playwright, Debian's Chromium), pushed by server-sent events vs the page's polling.

The product's ASGI server and worker on PostgreSQL + Redis; an open EMU_FREE batch gets one job
at a time through the API. "Polling" is the same page with its event stream blocked (the
fallback it uses when the stream drops): it refreshes every 2 s while things change.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402
from bench.sdk_loop import JOB  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
# Note when the DONE count changes, by the browser's clock (the machine's: same host).
RECORD = """() => {
  window.doneAt = {};
  const note = () => {
    const label = document.querySelector('[data-count="DONE"]');
    const n = label ? parseInt(label.previousElementSibling.textContent, 10) : 0;
    if (!(n in window.doneAt)) window.doneAt[n] = Date.now() / 1000;
  };
  note();
  new MutationObserver(note).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def run(page: Any, base: str, session: Any, batch_id: str, jobs: int, *, push: bool) -> list[float]:
    from jobs.models import Job

    if not push:
        page.route("**/events/", lambda route: route.abort())
    page.goto(f"{base}/batches/{batch_id}/")
    page.evaluate(RECORD)
    done = Job.objects.filter(batch_id=batch_id, status="DONE").count()
    lags = []
    for _ in range(jobs):
        response = session.post(f"{base}/core/api/v2/batches/{batch_id}/jobs", json=[JOB], timeout=60)
        assert response.status_code == 200, response.text
        done += 1
        deadline = time.monotonic() + 60
        while Job.objects.filter(batch_id=batch_id, status="DONE").count() < done:
            assert time.monotonic() < deadline, "the job did not end"
            time.sleep(0.02)
        page.wait_for_function(f"() => window.doneAt[{done}] !== undefined", timeout=60_000)
        shown = page.evaluate(f"() => window.doneAt[{done}]")
        end = Job.objects.filter(batch_id=batch_id).order_by("-order").values_list("end_timestamp", flat=True)[0]
        assert end is not None
        lags.append(shown - end.timestamp())
        time.sleep(0.5)  # the page settles (its poll interval stays at 2 s: things change)
    if not push:
        page.unroute("**/events/")
    return lags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop here
    # DEBUG=0 serves collected files only: collect the page's scripts (htmx, its SSE extension).
    static_root = str(common.VAR_DIR / "static")
    os.environ["STATIC_ROOT"] = static_root
    env, user, project, token, report = common.start("postgres", "bench_tweezer_portal_push")
    env.update(EVENTS_CHANNEL=f"{common.DB_NAME}:batch:", STATIC_ROOT=static_root)
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)
    from playwright.sync_api import sync_playwright

    worker = common.start_worker(env)
    web, base = common.start_asgi(env)
    with common.running(worker, web), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(f"{base}/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill("bench-password")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{base}/batches/")
        session = common.api(base, token)
        response = session.post(
            f"{base}/core/api/v1/batches",
            json={"sequence_builder": common.tiny_sequence(), "jobs": [], "open": True, "device_type": "EMU_FREE",
                  "project_id": str(project.pk)},
            timeout=60,
        )  # fmt: skip
        batch_id = response.json()["data"]["id"]
        results = {}
        for label, push in (("pushed (SSE)", True), ("polling", False)):
            results[label] = run(page, base, session, batch_id, args.jobs, push=push)
            lags = results[label]
            report.line(
                f"job end in the database → count in the browser, {label}: "
                f"p50 {statistics.median(lags) * 1000:.0f} ms, "
                f"p95 {common.quantile(lags, 0.95) * 1000:.0f} ms (n={len(lags)})"
            )
        browser.close()
    report.line(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    report.ratio(
        "portal_push_p50_vs_polling",
        statistics.median(results["pushed (SSE)"]) / statistics.median(results["polling"]),
        "< 1",
    )
    report.finish()
    common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
