"""Scenario 4: create a batch of 1,000 jobs through the API (gzip'd, as the SDK sends it) vs pulser alone.

Floor: what any correct server must do, done by pulser alone: deserialize the sequence once,
then build it once per job. Tweezer: POST /core/api/v1/batches with the same 1,000 jobs
(validation, credits, rows, the response with the jobs inline), and the service call
`batches.services.create_batch` in-process without HTTP. Each repetition uses a sequence
never seen before (another pulse duration), so Tweezer's sequence cache cannot help it.
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
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="discarded repetitions: both web workers warm")
    args = parser.parse_args()

    env, user, project, token, report = common.start("postgres", "bench_tweezer_create")
    report.line(f"scenario batch creation: {args.jobs} jobs per batch, {args.reps} reps")
    specs = common.job_specs(args.jobs)
    durations = iter(range(100, 100 + 4 * 10 * (args.reps + 2) * 3, 4))

    from pulser import Sequence

    from batches import services

    def floor(text: str) -> float:
        t0 = time.perf_counter()
        seq = Sequence.from_abstract_repr(text)
        for spec in specs:
            seq.build(**spec["variables"])
        return time.perf_counter() - t0

    def service(text: str) -> float:
        t0 = time.perf_counter()
        services.create_batch(project, user, sequence_builder=text, jobs=specs, device_type="EMU_FREE", open=False)
        return time.perf_counter() - t0

    web, base = common.start_web(env)
    with common.running(web):
        session = common.api(base, token)

        def api_call(text: str) -> float:
            payload = {
                "sequence_builder": text,
                "jobs": specs,
                "device_type": "EMU_FREE",
                "project_id": str(project.pk),
                "complete": True,
            }
            # Encoding the request is the client's work, before it sends; decoding the answer counts.
            body, headers = common.encoded(payload)
            t0 = time.perf_counter()
            data = common.post_encoded(session, f"{base}/core/api/v1/batches", body, headers)
            elapsed = time.perf_counter() - t0
            assert data["jobs_count"] == args.jobs
            return elapsed

        # Warm-up (enough for each gunicorn worker to have served one), then the three
        # alternate, so load from other processes falls on all alike.
        t_floor, t_service, t_api = [], [], []
        for rep in range(args.warmup + args.reps):
            texts = [common.tiny_sequence(duration=next(durations)) for _ in range(3)]
            times = floor(texts[0]), service(texts[1]), api_call(texts[2])
            if rep >= args.warmup:
                t_floor.append(times[0])
                t_service.append(times[1])
                t_api.append(times[2])
    common.purge_queues()

    report.line(f"pulser deserialize once + build x{args.jobs}: {common.summary(t_floor)}")
    report.line(f"services.create_batch (in-process):    {common.summary(t_service)}")
    report.line(f"POST /core/api/v1/batches (gzip, HTTP): {common.summary(t_api)}")
    floor_m = statistics.median(t_floor)
    report.ratio("batch_create_api_vs_pulser", statistics.median(t_api) / floor_m, "<= 1.5")
    report.ratio("batch_create_service_vs_pulser", statistics.median(t_service) / floor_m, "<= 1.5")
    report.finish()
    common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
