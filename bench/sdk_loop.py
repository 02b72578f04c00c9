"""Issue 19, `sdk_loop`: a variational loop with the unmodified SDK (0.24).

20 iterations of `batch.add_jobs([job], wait=True)` on an open EMU_FREE batch, against the
product's ASGI web server (runall.web_command) and worker, with held status requests
(STATUS_HOLD_SECONDS, default 20) and, in the same run for comparison, without (0). Each
iteration's time is divided by the bare pulser run of the same job (bench/bare_app.simulate,
in this process, one after each iteration): the ratio the issue targets is ≤ 1.3× with
holds, and ≥ 10× is what the SDK's 2-4-8 s polling costs without them.
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

JOB = {"runs": 10, "variables": {"omega_max": 1.5}}


def sdk_client(base: str, token: str, project: Any) -> Any:
    from pasqal_cloud.authentication import TokenProvider
    from pasqal_cloud.endpoints import Endpoints

    class StaticToken(TokenProvider):
        def get_token(self) -> str:
            return token

    try:
        from pasqal_cloud.pasqal_cloud_client import PasqalCloudClient
    except ImportError:  # pasqal-cloud 0.22
        from pasqal_cloud import SDK as PasqalCloudClient  # type: ignore[no-redef]

    return PasqalCloudClient(
        project_id=str(project.pk),
        token_provider=StaticToken(),
        endpoints=Endpoints(core=f"{base}/core", account=f"{base}/account"),
    )


def loop(base: str, token: str, project: Any, sequence: str, iterations: int) -> tuple[list[float], list[float], str]:
    """The iterations' times; the floor's, one bare run in this process after each iteration
    (the two alternate, so the machine's moods fall on both); and where the time went (the
    jobs' database timestamps, and the SDK's own refresh GET timed from outside: the SDK's
    code is not touched)."""
    from bench.bare_app import simulate
    from jobs.models import Job

    sdk = sdk_client(base, token, project)
    refreshes: list[float] = []
    get_batch = sdk._client.get_batch

    def timed_get_batch(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return get_batch(*args, **kwargs)
        finally:
            refreshes.append(time.perf_counter() - t0)

    sdk._client.get_batch = timed_get_batch
    batch = sdk.create_batch(sequence, [], device_type="EMU_FREE", open=True)
    times, floor, spans = [], [], []
    for _ in range(2):
        simulate(sequence, JOB["variables"], JOB["runs"])  # warm: the sequence cache
    for i in range(iterations + 2):  # two warm-up iterations (worker caches, connections)
        t0, w0 = time.perf_counter(), time.time()
        batch.add_jobs([JOB], wait=True)
        t1, w1 = time.perf_counter(), time.time()
        if i >= 2:
            times.append(t1 - t0)
            job = Job.objects.filter(batch_id=batch.id).order_by("-order").first()
            assert job is not None and job.start_timestamp and job.end_timestamp
            start, end = job.start_timestamp.timestamp(), job.end_timestamp.timestamp()
            refresh = refreshes[-1]
            spans.append((start - w0, end - start, w1 - end - refresh, refresh))
            t2 = time.perf_counter()
            simulate(sequence, JOB["variables"], JOB["runs"])
            floor.append(time.perf_counter() - t2)
    batch.close()
    parts = zip(*spans, strict=True)
    medians = [statistics.median(p) * 1000 for p in parts]
    where = (
        f"median call → job started {medians[0]:.0f} ms (POST add_jobs, dispatch, claim), "
        f"running {medians[1]:.0f} ms (worker: simulate, store result, end), "
        f"end → status answered {medians[2]:.0f} ms (commit, wake-up, answer), "
        f"the SDK's refresh GET {medians[3]:.0f} ms"
    )
    return times, floor, where


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--hold", default="20", help="STATUS_HOLD_SECONDS of the held run")
    args = parser.parse_args()
    env, _user, project, token, report = common.start(args.db, "bench_tweezer_sdk_loop")
    # 12 atoms in a line, a 500 ns pulse: ~200 ms of QuTiP on this machine, the 100–300 ms job.
    sequence = common.tiny_sequence(n_atoms=12, duration=500)
    env["EVENTS_CHANNEL"] = f"{common.DB_NAME}:batch:"  # pub/sub is shared by every Redis DB
    worker = common.start_worker(env)
    ratios: dict[str, float] = {}
    with common.running(worker):
        for label, hold in (("held", args.hold), ("not held", "0")):
            web, base = common.start_asgi(env, STATUS_HOLD_SECONDS=hold)
            with common.running(web):
                times, floor, where = loop(base, token, project, sequence, args.iterations)
            report.line(f"sdk_loop {args.db} {label} (STATUS_HOLD_SECONDS={hold}): {common.summary(times)}")
            report.line(
                f"  bare pulser run of the same job, in process, between the iterations: {common.summary(floor)}"
            )
            report.line(f"  {where}")
            ratios[label] = statistics.median(times) / statistics.median(floor)
    report.line(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    report.ratio(f"sdk_loop_{args.db}_held", ratios["held"], "<= 1.3")
    report.ratio(f"sdk_loop_{args.db}_not_held", ratios["not held"], ">= 10")
    report.finish()
    if args.db == "postgres":
        common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
