"""Scenario 5: sustained tiny jobs per second with 2 worker processes vs bare Celery.

Tweezer: one worker (concurrency 2 = two processes) on PostgreSQL + Redis, the product's ASGI web
server; B batches of M tiny EMU_FREE jobs submitted at once through the API, waited on as the SDK
does (held status requests); rate = jobs / (first submit → last batch DONE).
A batch runs one job at a time and an emulator has EMULATOR_SLOTS (2) slots, so two batches keep
both processes busy. Floors, same broker, two processes: the same pulser-simulation task sent
B*M times at once, and bare no-op tasks (the issue's floor; no emulation at all).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# `python bench/x.py` puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's `queue`: replace it with the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=15, help="jobs per batch")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--noops", type=int, default=1000)
    args = parser.parse_args()
    total = args.batches * args.jobs

    env, _, project, token, report = common.start("postgres", "bench_tweezer_throughput")
    report.line(f"scenario throughput: {args.batches} batches x {args.jobs} tiny jobs, 2 worker processes")
    sequence = common.tiny_sequence()
    specs = common.job_specs(args.jobs)

    web, base = common.start_asgi(env)
    worker = common.start_worker(env, concurrency=2, name="throughput")
    with common.running(web, worker):
        session = common.api(base, token)

        def burst(n_batches: int) -> float:
            t0 = time.perf_counter()
            ids = [common.submit_batch(session, base, project, sequence, specs) for _ in range(n_batches)]
            for batch_id in ids:
                common.wait_done(session, base, batch_id)
            return time.perf_counter() - t0

        burst(2)
        tw = [total / burst(args.batches) for _ in range(args.reps)]

    from bench.bare_app import noop, simulate

    bare = common.start_bare_worker(env, concurrency=2)
    with common.running(bare):

        def bare_sim() -> float:
            t0 = time.perf_counter()
            results = [
                simulate.apply_async((sequence, specs[i % args.jobs]["variables"], 10), queue="bench.bare")
                for i in range(total)
            ]
            for r in results:
                r.get(timeout=300)
            return total / (time.perf_counter() - t0)

        def bare_noop() -> float:
            t0 = time.perf_counter()
            results = [noop.apply_async((i,), queue="bench.bare") for i in range(args.noops)]
            for r in results:
                r.get(timeout=300)
            return args.noops / (time.perf_counter() - t0)

        bare_sim()
        sim = [bare_sim() for _ in range(args.reps)]
        bare_noop()
        nop = [bare_noop() for _ in range(args.reps)]
    common.purge_queues()

    report.line(f"tweezer tiny jobs/s:          {common.summary(tw, 'jobs/s', 1)}")
    report.line(f"bare celery same simulation/s: {common.summary(sim, 'tasks/s', 1)}")
    report.line(f"bare celery no-op tasks/s:     {common.summary(nop, 'tasks/s', 1)}")
    report.ratio("throughput_vs_bare_simulation", statistics.median(tw) / statistics.median(sim), ">= 0.7")
    report.ratio(
        "throughput_vs_bare_noop", statistics.median(tw) / statistics.median(nop), ">= 0.7 (the issue's floor)"
    )
    report.finish()
    common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
