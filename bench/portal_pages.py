"""Scenarios 6 and 7: a 10,000-job batch in the portal.

6. GET /batches/<id>/results.zip (streamed zip of every result): time, size, and the peak RSS
   of the single gunicorn worker process that serves it, against its RSS before.
7. GET /batches/<id>/ (the batch page, logged in): p50 render vs a hello-world Django view on
   the same server and middleware (bench/urls.py adds /hello/); the batch DONE, then RUNNING.
The batch, its 10,000 DONE jobs and their result files are written directly (ORM bulk_create
and the product's store_result), with a real QuTiP result as every job's payload.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# `python bench/x.py` puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's `queue`: replace it with the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402


def make_batch(user: Any, project: Any, n_jobs: int) -> str:
    from django.utils import timezone
    from pulser import Sequence

    from backends.adapters import RunConfig, get_adapter
    from backends.models import Device
    from batches.models import Batch, BatchStatus
    from jobs.models import Job, JobStatus
    from jobs.results import store_result

    device = Device.objects.get(name="EMU_FREE")
    text = common.tiny_sequence()
    built = Sequence.from_abstract_repr(text).build(omega_max=1.0)
    payload = get_adapter(device).run(built, 100, RunConfig()).as_json()
    now = timezone.now()
    batch = Batch.objects.create(
        project=project, user=user, device=device, status=BatchStatus.DONE, sequence_builder=text,
        start_datetime=now, end_datetime=now, jobs_count=n_jobs,
    )  # fmt: skip
    jobs = Job.objects.bulk_create(
        [
            Job(
                batch=batch,
                project=project,
                user=user,
                order=i,
                status=JobStatus.DONE,
                runs=100,
                variables={"omega_max": 1.0 + (i % 50) / 10},
                price=100,
                start_timestamp=now,
                end_timestamp=now,
            )  # fmt: skip
            for i in range(n_jobs)
        ],
        batch_size=2000,
    )
    for job in jobs:
        job.result_path = store_result(job, payload)
    Job.objects.bulk_update(jobs, ["result_path"], batch_size=2000)
    from django.db import connection

    with connection.cursor() as cursor:
        # What autovacuum does after a bulk load (as bench/listing.py): statistics, so that a page
        # of jobs is read from the (batch, order) index, and the visibility map, so that the
        # per-status counts are an index-only scan; without them both walk all 10,000 rows.
        cursor.execute("VACUUM ANALYZE jobs_job")
        cursor.execute("ANALYZE batches_batch")
    return str(batch.pk)


def login(base: str) -> Any:
    import requests

    s = requests.Session()
    s.get(f"{base}/login/")
    r = s.post(
        f"{base}/login/",
        data={"username": "bench", "password": "bench-password", "csrfmiddlewaretoken": s.cookies["csrftoken"]},
        headers={"Referer": f"{base}/login/"},
        allow_redirects=False,
    )
    if r.status_code != 302:
        raise RuntimeError(f"login failed: {r.status_code}")
    return s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--page-reps", type=int, default=41)
    args = parser.parse_args()

    env = common.configure("postgres", "bench_tweezer_portal")
    common.reset_database("postgres")
    user, project, _ = common.make_member()
    t0 = time.perf_counter()
    batch_id = make_batch(user, project, args.jobs)
    report = common.Report()
    report.line(common.machine())
    report.line(f"scenario portal: a batch of {args.jobs:,} DONE jobs (written in {time.perf_counter() - t0:.1f} s)")

    env = {**env, "DJANGO_SETTINGS_MODULE": "bench.settings"}
    # One process, one thread: its RSS is the memory one download costs.
    web, base = common.start_web(env, workers=1, threads=1, app="portal.wsgi")
    with common.running(web):
        session = login(base)
        children = web.children()
        if len(children) != 1:
            raise RuntimeError(f"expected one gunicorn worker, got {children}")
        pid = children[0]

        # 7: the batch page vs hello world.
        def page() -> None:
            r = session.get(f"{base}/batches/{batch_id}/")
            assert r.status_code == 200, r.status_code

        def hello() -> None:
            r = session.get(f"{base}/hello/")
            assert r.status_code == 200, r.status_code

        def page_vs_hello() -> tuple[list[float], list[float]]:
            # Alternated, so load from other processes falls on both alike.
            for _ in range(3):
                page()
                hello()
            t_page, t_hello = [], []
            for _ in range(args.page_reps):
                t_page += common.timed(page, 1, warmup=0)
                t_hello += common.timed(hello, 1, warmup=0)
            return t_page, t_hello

        t_page, t_hello = page_vs_hello()

        # 6: the zip, streamed to /dev/null; RSS sampled from /proc before and after.
        rss_before, hwm_before = common.rss_mib(pid)
        times, sizes = [], []
        for _ in range(args.reps + 1):
            t = time.perf_counter()
            size = 0
            with session.get(f"{base}/batches/{batch_id}/results.zip", stream=True) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"zip: {r.status_code} {r.text[:300]}")
                for chunk in r.iter_content(256 * 1024):
                    size += len(chunk)
            times.append(time.perf_counter() - t)
            sizes.append(size)
        rss_after, hwm_after = common.rss_mib(pid)

        # 7 again with the batch RUNNING: the page then counts its jobs per status at every view
        # (a DONE batch's counts never change, so the portal caches them).
        from batches.models import Batch, BatchStatus

        Batch.objects.filter(pk=batch_id).update(status=BatchStatus.RUNNING, end_datetime=None)
        t_running, t_hello_running = page_vs_hello()
    times = times[1:]

    report.line(f"batch page ({args.jobs:,} jobs): {common.summary(t_page)}")
    report.line(f"hello-world view:           {common.summary(t_hello)}")
    report.line(f"batch page, batch RUNNING:  {common.summary(t_running)}")
    report.line(f"hello-world view (again):   {common.summary(t_hello_running)}")
    report.line(f"results.zip: {common.summary(times, 's', 1)}, {sizes[-1] / 1e6:.1f} MB")
    report.line(
        f"web process RSS: before {rss_before:.0f} MiB (peak so far {hwm_before:.0f}), after {rss_after:.0f} MiB, "
        f"peak {hwm_after:.0f} MiB; growth of the peak {hwm_after - hwm_before:.0f} MiB"
    )
    report.ratio("portal_batch_page_vs_hello", statistics.median(t_page) / statistics.median(t_hello), "<= 5")
    report.ratio(
        "portal_running_batch_page_vs_hello", statistics.median(t_running) / statistics.median(t_hello_running), "<= 5"
    )
    report.ratio("zip_peak_rss_growth_mib", hwm_after - rss_before, "<= 100")
    report.finish()
    common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
