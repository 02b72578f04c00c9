"""Issue 21.2: the export of a filtered selection spanning batches, with flat memory.

Ten batches of 1,000 DONE jobs tagged `sweep`, and one of 1,000 tagged `small`, written directly
(as bench/portal_pages.py). One gunicorn worker, one thread, serves
GET /batches/export.zip?tag=small (1,000 jobs, one batch), ?tag=half (5,000 jobs, five batches)
then ?tag=sweep (10,000 jobs, ten batches), each streamed to /dev/null; the worker's RSS is read
from /proc around each. Memory does not follow the number of jobs: results stream through a
buffer, and the manifests and the zip's list of members (its central directory, written at the
end) grow in temporary files (jobs/downloads.py). Until 2026-12-04 the members' ZipInfos stayed in
memory, about 1 MiB per 1,000 jobs. Then the sweep page and CSV of one 10,000-job batch (issue
21.1): time and the worker's peak.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402
from bench.portal_pages import login, make_batch  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--jobs-per-batch", type=int, default=1000)
    parser.add_argument("--sweep-jobs", type=int, default=10_000)
    args = parser.parse_args()

    env = common.configure("postgres", "bench_tweezer_export")
    common.reset_database("postgres")
    user, project, _ = common.make_member()
    from batches.models import Batch

    t0 = time.perf_counter()
    small = make_batch(user, project, args.jobs_per_batch)
    Batch.objects.filter(pk=small).update(tags=["small"])
    for i in range(args.batches):
        tags = ["sweep", "half"] if i < args.batches // 2 else ["sweep"]
        Batch.objects.filter(pk=make_batch(user, project, args.jobs_per_batch)).update(tags=tags)
    total = args.batches * args.jobs_per_batch
    sweep_batch = make_batch(user, project, args.sweep_jobs)  # issue 21.1: one large sweep
    Batch.objects.filter(pk=sweep_batch).update(tags=["one-sweep"])
    report = common.Report()
    report.line(common.machine())
    report.line(f"export: {total:,} jobs in {args.batches} batches (written in {time.perf_counter() - t0:.1f} s)")

    web, base = common.start_web(env, workers=1, threads=1, app="portal.wsgi")
    with common.running(web):
        session = login(base)
        (pid,) = web.children()

        def export(tag: str) -> tuple[float, int, float, float]:
            rss_before, _ = common.rss_mib(pid)
            t = time.perf_counter()
            size = 0
            with session.get(f"{base}/batches/export.zip?tag={tag}", stream=True) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"export: {r.status_code} {r.text[:300]}")
                for chunk in r.iter_content(256 * 1024):
                    size += len(chunk)
            _, hwm = common.rss_mib(pid)
            return time.perf_counter() - t, size, rss_before, hwm

        export("small")  # warm-up: imports, connections, the first query plans
        t_small, size_small, before_small, hwm_small = export("small")
        t_half, size_half, before_half, hwm_half = export("half")
        t_big, size_big, before_big, hwm_big = export("sweep")

        def sweep(path: str) -> tuple[float, int, float]:
            t = time.perf_counter()
            with session.get(f"{base}/batches/{sweep_batch}/{path}", stream=True) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"sweep: {r.status_code} {r.text[:300]}")
                size = sum(len(chunk) for chunk in r.iter_content(256 * 1024))
            return time.perf_counter() - t, size, common.rss_mib(pid)[1]

        t_plot, _, hwm_plot = sweep("sweep/?x=omega_max&observable=excitation")
        t_csv, size_csv, hwm_csv = sweep("sweep.csv")

    report.line(
        f"export of {args.jobs_per_batch:,} jobs: {t_small:.1f} s, {size_small / 1e6:.1f} MB; "
        f"RSS before {before_small:.0f} MiB, peak after {hwm_small:.0f} MiB"
    )
    half = args.batches // 2 * args.jobs_per_batch
    report.line(
        f"export of {half:,} jobs in {args.batches // 2} batches: {t_half:.1f} s, {size_half / 1e6:.1f} MB; "
        f"RSS before {before_half:.0f} MiB, peak after {hwm_half:.0f} MiB"
    )
    report.line(
        f"export of {total:,} jobs in {args.batches} batches: {t_big:.1f} s, {size_big / 1e6:.1f} MB; "
        f"RSS before {before_big:.0f} MiB, peak after {hwm_big:.0f} MiB"
    )
    # Per 1,000 more jobs, from 5,000 to 10,000: nothing is held per job (before: ~1 MiB, the ZipInfos).
    report.ratio("export_peak_rss_growth_per_1k_jobs_mib", (hwm_big - hwm_half) / (total - half) * 1000, "<= 0.2")
    report.line(
        f"sweep of one {args.sweep_jobs:,}-job batch: page {t_plot:.1f} s (peak RSS {hwm_plot:.0f} MiB), "
        f"CSV {t_csv:.1f} s, {size_csv / 1e6:.1f} MB (peak RSS {hwm_csv:.0f} MiB)"
    )
    report.ratio("sweep_10k_page_peak_rss_growth_mib", hwm_plot - hwm_big, "<= 20")
    report.ratio("export_10k_peak_rss_growth_over_1k_mib", hwm_big - hwm_small, "<= 2")
    report.finish()
    common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
