"""Scenarios 6 and 7: batches in the portal.

6. GET /batches/<id>/results.zip of a 10,000-job batch (streamed zip of every result): time,
   size, and the peak RSS of the single gunicorn worker process that serves it, against its RSS before.
7. GET /batches/<id>/ (the batch page, logged in) of a batch of 100,000 jobs vs the same page of
   a batch of 100 jobs: p50 of each, requests alternating, the batches DONE, then RUNNING; and
   the number of SQL queries each page makes (Django's test client in this process, under
   CaptureQueriesContext), which must be the same at both sizes (DESIGN.md §7).
The batches, their DONE jobs and their result files are written directly (ORM bulk_create and
the product's store_result), with a real QuTiP result as every job's payload (one file per job
for the zip's batch, one file shared by every job of the page's batches).
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


def make_batch(user: Any, project: Any, n_jobs: int, *, shared_result: bool = False) -> str:
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
    shared = store_result(jobs[0], payload) if shared_result else ""
    for job in jobs:
        job.result_path = shared or store_result(job, payload)
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


def count_queries(user: Any, batch_id: str) -> int:
    """The SQL queries one view of the batch page makes, through Django's test client here."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(user)
    client.get(f"/batches/{batch_id}/")  # the session and the user, as any later view finds them
    with CaptureQueriesContext(connection) as queries:
        r = client.get(f"/batches/{batch_id}/")
    if r.status_code != 200:
        raise RuntimeError(f"batch page: {r.status_code}")
    return len(queries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs of the zip's batch")
    parser.add_argument("--page-small", type=int, default=100, help="jobs of the small batch page")
    parser.add_argument("--page-large", type=int, default=100_000, help="jobs of the large batch page")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--page-reps", type=int, default=41)
    args = parser.parse_args()

    env = common.configure("postgres", "bench_tweezer_portal")
    common.reset_database("postgres")
    user, project, _ = common.make_member()
    t0 = time.perf_counter()
    batch_id = make_batch(user, project, args.jobs)
    small_id = make_batch(user, project, args.page_small, shared_result=True)
    large_id = make_batch(user, project, args.page_large, shared_result=True)
    report = common.Report()
    report.line(common.machine())
    report.line(
        f"scenario portal: batches of {args.jobs:,} (zip), {args.page_small:,} and {args.page_large:,} DONE jobs "
        f"(written in {time.perf_counter() - t0:.1f} s)"
    )
    queries = {"DONE": (count_queries(user, small_id), count_queries(user, large_id))}

    # One process, one thread: its RSS is the memory one download costs.
    web, base = common.start_web(env, workers=1, threads=1)
    with common.running(web):
        session = login(base)
        children = web.children()
        if len(children) != 1:
            raise RuntimeError(f"expected one gunicorn worker, got {children}")
        pid = children[0]

        # 7: the batch page, large vs small.
        def page(batch: str) -> None:
            r = session.get(f"{base}/batches/{batch}/")
            assert r.status_code == 200, r.status_code

        def pages() -> tuple[list[float], list[float]]:
            # Alternated, so load from other processes falls on both alike.
            for _ in range(3):
                page(small_id)
                page(large_id)
            t_small, t_large = [], []
            for _ in range(args.page_reps):
                t_small += common.timed(lambda: page(small_id), 1, warmup=0)
                t_large += common.timed(lambda: page(large_id), 1, warmup=0)
            return t_small, t_large

        t_small, t_large = pages()

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

        # 7 again with both batches RUNNING (their jobs may still change).
        from batches.models import Batch, BatchStatus

        Batch.objects.filter(pk__in=[small_id, large_id]).update(status=BatchStatus.RUNNING, end_datetime=None)
        queries["RUNNING"] = (count_queries(user, small_id), count_queries(user, large_id))
        t_small_running, t_large_running = pages()
    times = times[1:]

    report.line(f"batch page, {args.page_small:,} jobs, DONE:     {common.summary(t_small)}")
    report.line(f"batch page, {args.page_large:,} jobs, DONE: {common.summary(t_large)}")
    report.line(f"batch page, {args.page_small:,} jobs, RUNNING:  {common.summary(t_small_running)}")
    report.line(f"batch page, {args.page_large:,} jobs, RUNNING: {common.summary(t_large_running)}")
    for state, (q_small, q_large) in queries.items():
        report.line(f"SQL queries of the batch page, {state}: {q_small} at {args.page_small:,} jobs, {q_large} at "
                    f"{args.page_large:,}")  # fmt: skip
    report.line(f"results.zip: {common.summary(times, 's', 1)}, {sizes[-1] / 1e6:.1f} MB")
    report.line(
        f"web process RSS: before {rss_before:.0f} MiB (peak so far {hwm_before:.0f}), after {rss_after:.0f} MiB, "
        f"peak {hwm_after:.0f} MiB; growth of the peak {hwm_after - hwm_before:.0f} MiB"
    )
    name = f"{common.size_label(args.page_large)}_vs_{common.size_label(args.page_small)}"
    report.ratio(f"portal_batch_page_{name}", statistics.median(t_large) / statistics.median(t_small), "<= 1.5")
    report.ratio(
        f"portal_running_batch_page_{name}",
        statistics.median(t_large_running) / statistics.median(t_small_running),
        "<= 1.5",
    )
    for state, (q_small, q_large) in queries.items():
        report.ratio(f"portal_{state.lower()}_batch_page_queries_{name}", q_large / q_small, "== 1 (constant queries)")
    report.ratio("zip_peak_rss_growth_mib", hwm_after - rss_before, "<= 100")
    report.finish()
    common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
