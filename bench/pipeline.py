"""Scenario 1 (and 8 with --db sqlite): per-job end-to-end cost vs a bare Celery task.

Tweezer: POST a closed batch of N tiny EMU_FREE jobs through the API to the product's ASGI web
server, then wait on the batch status through the API, as the SDK does, until DONE (every job
claimed, simulated, result stored, ended): the server holds each status request until a job ends.
Floor: N sequential `simulate.apply_async(...).get()` round trips on a bare Celery app with
the same broker, running the same pulser-simulation call (deserialize cached, build, QutipBackendV2).
Both run one job at a time: a batch's jobs run in order, one after the other (rule 2).
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


def timeline() -> str:
    """Where a job's time goes, from the database timestamps of the measured batches."""
    from jobs.models import Job

    rows = list(
        Job.objects.filter(batch__jobs_count__gt=3)
        .order_by("batch__created_at", "order")
        .values_list("batch_id", "dispatched_at", "start_timestamp", "end_timestamp", "batch__created_at")
    )
    queued, running, gap = [], [], []
    previous_end: dict[Any, Any] = {}
    for batch_id, dispatched, start, end, created in rows:
        if dispatched and start:
            queued.append((start - dispatched).total_seconds())
        if start and end:
            running.append((end - start).total_seconds())
        before = previous_end.get(batch_id, created)
        if start:
            gap.append((start - before).total_seconds())
        previous_end[batch_id] = end
    if not running:
        return "timeline: no data"
    return (
        f"timeline (median per job): previous end → next start {statistics.median(gap) * 1000:.1f} ms, "
        f"dispatched → claimed {statistics.median(queued) * 1000:.1f} ms, "
        f"claimed → ended {statistics.median(running) * 1000:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--jobs", type=int, default=20, help="jobs per batch (per repetition)")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    env, _, project, token, report = common.start(args.db, "bench_tweezer_pipeline")
    report.line(f"scenario pipeline ({args.db}): {args.jobs} tiny EMU_FREE jobs per repetition, {args.reps} reps")

    sequence = common.tiny_sequence()
    specs = common.job_specs(args.jobs)

    from bench.bare_app import simulate

    # Both stacks run at once and the repetitions alternate, so load from other processes on
    # the shared machine falls on both sides alike (an idle worker costs nothing).
    web, base = common.start_asgi(env)
    worker = common.start_worker(env, concurrency=2)
    bare = common.start_bare_worker(env, concurrency=2)
    with common.running(web, worker, bare):
        session = common.api(base, token)

        def tweezer_batch(n: int) -> float:
            t0 = time.perf_counter()
            common.wait_done(session, base, common.submit_batch(session, base, project, sequence, specs[:n]))
            return time.perf_counter() - t0

        def bare_batch(n: int) -> float:
            t0 = time.perf_counter()
            for spec in specs[:n]:
                simulate.apply_async((sequence, spec["variables"], spec["runs"]), queue="bench.bare").get(timeout=120)
            return time.perf_counter() - t0

        # Warm-up: imports, connections, the sequence caches of both children of both workers.
        for _ in range(2):
            tweezer_batch(3)
            bare_batch(6)
        tw, bf = [], []
        for _ in range(args.reps):
            tw.append(tweezer_batch(args.jobs))
            bf.append(bare_batch(args.jobs))
    per_job_tw = [t / args.jobs for t in tw]
    per_job_bare = [t / args.jobs for t in bf]
    report.line(timeline())

    report.line(f"tweezer per job (submit→DONE via API): {common.summary(per_job_tw)}")
    report.line(f"bare celery per job (apply_async→get):  {common.summary(per_job_bare)}")
    ratio = statistics.median(per_job_tw) / statistics.median(per_job_bare)
    overhead = (statistics.median(per_job_tw) - statistics.median(per_job_bare)) * 1000
    report.line(f"overhead per job: {overhead:.1f} ms")
    name = "pipeline_per_job" if args.db == "postgres" else "embedded_pipeline_per_job"
    report.ratio(name, ratio, "<= 1.2")
    report.finish()
    if args.db == "postgres":
        common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
