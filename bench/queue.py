"""Scenario 2: add_jobs on a RUNNING open batch -> the job RUNNING (vs a bare Celery no-op round
trip) and -> the job DONE (vs a bare Celery round trip of the same simulation).

Same broker, same run: a Tweezer worker (the product's command line) and a bare Celery app's
worker (bench/bare_app.py) start side by side. The open batch is idle (its slot reserved, rule
4) when each job is added; the latency is from the moment `services.add_jobs` is called in this
process to the job's `start_timestamp` (set by the worker's conditional PENDING->RUNNING), both
on this host's clock; DONE is its `end_timestamp`. The floors are `noop.apply_async(...).get()`
and `simulate.apply_async(...).get()` (bench/bare_app.py) through the same Redis.

    .venv/bin/python bench/queue.py [--reps 25] [--redis redis://127.0.0.1:6379/1]

Prints absolute p50/p95, then `ratio queue_latency …` (RUNNING) and `ratio queue_done_latency …`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and "queue" would shadow the
# standard library's queue module (which threading users import): drop that folder first.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import psycopg  # noqa: E402

from bench import common  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=25)
    parser.add_argument("--redis", default=common.REDIS_URL, help="broker (use your own Redis DB number)")
    parser.add_argument("--db-name", default="bench_tweezer_queue")
    args = parser.parse_args()

    common.REDIS_URL = args.redis
    env = common.configure("postgres", db_name=args.db_name)
    common.reset_database()
    common.purge_queues()

    from batches import services
    from bench.bare_app import noop, simulate
    from jobs.models import Job, JobStatus

    report = common.Report()
    report.line(common.machine())
    user, project, _ = common.make_member()
    worker = common.start_worker(env, concurrency=2, name="queue")
    bare = common.start_bare_worker(env, concurrency=2)
    # A plain table in the bench database (a temporary one writes no WAL, hence flushes nothing).
    scratch = psycopg.connect(common.PG_BASE + common.DB_NAME, autocommit=True)
    scratch.execute("CREATE TABLE bench_durable (id int PRIMARY KEY, n int)")
    scratch.execute("INSERT INTO bench_durable VALUES (1, 0)")
    latencies: list[float] = []
    done_latencies: list[float] = []
    round_trips: list[float] = []
    simulations: list[float] = []
    commits: list[float] = []
    sequence = common.tiny_sequence()
    spec = common.job_specs(1)[0]
    calls: list[float] = []
    try:
        batch = services.create_batch(
            project, user, sequence_builder=sequence, jobs=common.job_specs(1),
            device_type="EMU_FREE", open=True,
        )  # fmt: skip

        def wait_idle(timeout: float = 60) -> None:
            deadline = time.monotonic() + timeout
            active = Job.objects.filter(batch=batch, status__in=[JobStatus.PENDING, JobStatus.RUNNING])
            while active.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("the open batch never became idle; see the worker log")
                time.sleep(0.005)

        def one_job() -> tuple[float, float]:
            """Seconds from the add_jobs call to the job's start and to its end."""
            wait_idle()
            t0 = time.time()
            services.add_jobs(batch, [spec], by=user)
            calls.append(time.time() - t0)
            job = Job.objects.filter(batch=batch).order_by("-order").only("pk").first()
            assert job is not None
            deadline = time.monotonic() + 60
            while True:
                started, ended = Job.objects.filter(pk=job.pk).values_list("start_timestamp", "end_timestamp").get()
                if ended is not None:
                    assert started is not None
                    return started.timestamp() - t0, ended.timestamp() - t0
                if time.monotonic() > deadline:
                    raise RuntimeError("the added job never ended; see the worker log")
                time.sleep(0.0005)

        def one_simulation() -> float:
            t0 = time.perf_counter()
            simulate.apply_async((sequence, spec["variables"], spec["runs"]), queue="bench.bare").get(timeout=60)
            return time.perf_counter() - t0

        def one_noop() -> float:
            t0 = time.perf_counter()
            noop.apply_async((1,), queue="bench.bare").get(timeout=30)
            return time.perf_counter() - t0

        def one_durable_commit() -> float:
            """What a job write that must survive a crash costs at least: one flushed commit."""
            t0 = time.perf_counter()
            with scratch.transaction():
                scratch.execute("UPDATE bench_durable SET n = n + 1 WHERE id = 1")
            return time.perf_counter() - t0

        for _ in range(3):  # warm both paths: connections, caches, forked children
            one_job()
            one_noop()
            one_simulation()
        # Interleaved, so both see the same machine load.
        for _ in range(args.reps):
            started, ended = one_job()
            latencies.append(started)
            done_latencies.append(ended)
            round_trips.append(one_noop())
            simulations.append(one_simulation())
            commits.append(one_durable_commit())
        wait_idle()
        services.close_batch(batch, by=user)
    finally:
        scratch.close()
        worker.stop()
        bare.stop()
        common.drop_database()

    report.line(f"add_jobs -> RUNNING:     {common.summary(latencies)}")
    report.line(f"  of which the add_jobs call (validate, write, charge, send): {common.summary(calls[3:])}")
    report.line(f"bare no-op round trip:   {common.summary(round_trips)}")
    report.line(f"one durable PostgreSQL commit (same server): {common.summary(commits)}")
    report.line(f"add_jobs -> DONE:        {common.summary(done_latencies)}")
    report.line(f"bare simulation round trip: {common.summary(simulations)}")
    rows = (
        ("add_jobs -> RUNNING", latencies),
        ("bare no-op round trip", round_trips),
        ("add_jobs -> DONE", done_latencies),
        ("bare simulation round trip", simulations),
    )
    for name, values in rows:
        p50, p95 = statistics.median(values) * 1000, common.quantile(values, 0.95) * 1000
        report.line(f"{name}: p50 {p50:.2f} ms, p95 {p95:.2f} ms")
    report.ratio("queue_latency", statistics.median(latencies) / statistics.median(round_trips), "<= 2")
    report.ratio("queue_latency_p95", common.quantile(latencies, 0.95) / common.quantile(round_trips, 0.95), "<= 2")
    report.ratio("queue_done_latency", statistics.median(done_latencies) / statistics.median(simulations), "<= 2")
    report.ratio(
        "queue_done_latency_p95", common.quantile(done_latencies, 0.95) / common.quantile(simulations, 0.95), "<= 2"
    )
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
