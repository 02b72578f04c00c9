"""Backends: what Tweezer adds around pulser (issue 5). Not a test: prints ratios, last.

1. One EMU_FREE job of a 6-atom sequence end to end through Tweezer (API POST → queue → worker →
   result stored → batch DONE, seen by polling the API) vs bare pulser-simulation of the same
   sequence in this process (deserialize, build, QutipBackendV2, sample). Target ≤ 1.2×.
2. `batches.services.create_batch` of 1,000 jobs (deserialize once, build + check each job, write
   batch, jobs and ledger rows) vs pure pulser: `Sequence.from_abstract_repr` once + 1,000 `build`s.
   Target ≤ 1.3×.

`python bench/backends.py [--db postgres|sqlite] [--reps 5]`. Set BENCH_REDIS_URL to use another
Redis database than the bench default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

# `python bench/x.py` puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's `queue`: replace it with the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402

DB_NAME = "bench_tweezer_backends"


def six_atom_sequence() -> str:
    """6 atoms on an AnalogDevice layout, a 4 µs global pulse of `omega_max`: ~0.2 s of QuTiP."""
    from pulser import Pulse, Sequence
    from pulser.devices import AnalogDevice
    from pulser.register.special_layouts import TriangularLatticeLayout

    layout = TriangularLatticeLayout(n_traps=61, spacing=5)
    seq = Sequence(layout.make_mappable_register(n_qubits=10), AnalogDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    omega = seq.declare_variable("omega_max")
    seq.add(Pulse.ConstantPulse(duration=4000, amplitude=omega, detuning=0, phase=0), "rydberg")
    return str(seq.to_abstract_repr())


QUBITS = {f"q{i}": trap for i, trap in enumerate([0, 1, 2, 3, 4, 5])}
RUNS = 500


def bare_run(sequence: str, omega: float) -> dict[str, int]:
    from pulser import Sequence
    from pulser.backend import BitStrings
    from pulser_simulation import QutipBackendV2, QutipConfig

    built = Sequence.from_abstract_repr(sequence).build(qubits=QUBITS, omega_max=omega)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = QutipConfig(observables=[BitStrings(evaluation_times=[1.0], num_shots=RUNS)])
        results = QutipBackendV2(built, config=config).run()
    results.to_abstract_repr()  # Tweezer stores it too
    return dict(results.final_bitstrings)


def end_to_end(report: common.Report, env: dict[str, str], project: Any, token: str, reps: int, poll: float) -> None:
    sequence = six_atom_sequence()
    web, base = common.start_web(env)
    worker = common.start_worker(env, concurrency=2, name="backends")
    with common.running(web, worker):
        session = common.api(base, token)

        in_db: list[float] = []

        def tweezer(omega: float) -> float:
            from batches.models import Batch

            t0, wall0 = time.perf_counter(), time.time()
            jobs = [{"runs": RUNS, "variables": {"omega_max": omega, "qubits": QUBITS}}]
            batch_id = common.submit_batch(session, base, project, sequence, jobs)
            common.wait_done(session, base, batch_id, poll=poll)
            elapsed = time.perf_counter() - t0
            # The same end without the client's polling cadence: when the batch became DONE in
            # the database (same host, same clock), counted from the POST.
            ended = Batch.objects.filter(pk=batch_id).values_list("end_datetime", flat=True).get()
            assert ended is not None  # DONE has an end
            in_db.append(ended.timestamp() - wall0)
            return elapsed

        def bare(omega: float) -> float:
            t0 = time.perf_counter()
            bare_run(sequence, omega)
            return time.perf_counter() - t0

        tweezer(1.0), bare(1.0), tweezer(1.0)  # warm-up: imports, caches, connections
        tw, bp = [], []
        for i in range(reps):  # interleaved: the 2 shared cores drift over time
            omega = 8.0 + i * 0.1
            tw.append(tweezer(omega))
            bp.append(bare(omega))
    report.line(timeline())
    report.line(f"EMU_FREE 6 atoms, {RUNS} runs, through Tweezer (POST → DONE): {common.summary(tw)}")
    report.line(f"same job, bare pulser-simulation in-process:              {common.summary(bp)}")
    report.line(f"  the batch DONE in the database, from the POST:            {common.summary(in_db[-reps:])}")
    report.ratio("emu_free_6_atoms_end_to_end", statistics.median(tw) / statistics.median(bp), "<= 1.2")
    report.ratio("emu_free_6_atoms_to_done_in_db", statistics.median(in_db[-reps:]) / statistics.median(bp), "<= 1.2")


def timeline() -> str:
    """Where the measured jobs' time went, from the database timestamps (medians)."""
    from jobs.models import Job

    rows = Job.objects.order_by("created_at").values_list(
        "created_at", "dispatched_at", "start_timestamp", "end_timestamp", "batch__end_datetime"
    )
    parts: dict[str, list[float]] = {
        "created→dispatched": [],
        "dispatched→started": [],
        "started→ended": [],
        "ended→batch DONE": [],
    }
    for created, dispatched, start, end, batch_end in list(rows)[3:]:
        if created and dispatched and start and end and batch_end:
            parts["created→dispatched"].append((dispatched - created).total_seconds())
            parts["dispatched→started"].append((start - dispatched).total_seconds())
            parts["started→ended"].append((end - start).total_seconds())
            parts["ended→batch DONE"].append((batch_end - end).total_seconds())
    return "timeline (median): " + ", ".join(f"{k} {statistics.median(v) * 1000:.0f} ms" for k, v in parts.items() if v)


def create_1000(report: common.Report, user: Any, project: Any, reps: int) -> None:
    from pulser import Sequence

    from backends.sequences import sequence_cache
    from batches.models import Batch
    from batches.services import create_batch

    sequence = six_atom_sequence()
    jobs: list[dict[str, Any]] = [
        {"runs": 100, "variables": {"omega_max": 1.0 + (i % 90) / 10, "qubits": QUBITS}} for i in range(1000)
    ]

    def tweezer() -> float:
        sequence_cache._items.clear()  # pay the deserialization like pulser does
        t0 = time.perf_counter()
        batch = create_batch(project, user, sequence_builder=sequence, jobs=jobs, device_type="EMU_FREE")
        elapsed = time.perf_counter() - t0
        Batch.objects.filter(pk=batch.pk).update(status="CANCELED")  # keep the queue out of the next rep
        return elapsed

    def pulser_only() -> float:
        t0 = time.perf_counter()
        seq = Sequence.from_abstract_repr(sequence)
        for job in jobs:
            seq.build(**job["variables"])
        return time.perf_counter() - t0

    tweezer(), pulser_only()
    tw, pp = [], []
    for _ in range(reps):
        tw.append(tweezer())
        pp.append(pulser_only())
    report.line(f"create_batch, 1000 jobs (validate + rows + ledger): {common.summary(tw)}")
    report.line(f"pulser deserialize + 1000 builds:                   {common.summary(pp)}")
    report.ratio("create_batch_1000_jobs", statistics.median(tw) / statistics.median(pp), "<= 1.5")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--reps", type=int, default=5)
    # Every poll is a request the web process serves on the cores the simulation runs on; the
    # SDK itself polls every 2 s or more. 50 ms keeps the client's own cost out of the figure.
    parser.add_argument("--poll", type=float, default=0.05, help="status polling period (s)")
    args = parser.parse_args()

    env, user, project, token, report = common.start(args.db, DB_NAME, member="bench-backends")
    end_to_end(report, env, project, token, args.reps, args.poll)
    create_1000(report, user, project, args.reps)
    report.finish()
    if args.db == "postgres":
        common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
