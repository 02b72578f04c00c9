"""Issue 20: what more workers buy. Throughput of jobs on a latency-bound backend with 1, 2, 4
and 8 worker processes, split over two Celery nodes with separate var dirs (two "machines"
that share only PostgreSQL and Redis).

The backend is the QPU simulator answering every job after a fixed latency (`--latency`,
200 ms) without simulating (`--no-simulation`), running up to 8 jobs at once: so the two cores
are not what limits. A batch runs its jobs one at a time (DESIGN.md §2), so N processes need N
batches and N slots: FRESNEL gets 8 slots, and each round submits N batches of `--jobs` jobs.
throughput(N) = N × jobs / (first submission → last job DONE);
efficiency(N) = throughput(N) / (N × throughput(1)), target ≥ 0.85 at every N.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# `python bench/x.py` puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's `queue`: replace it with the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402

QPU_TOKEN = "bench-qpu-token"
TICK = os.sysconf("SC_CLK_TCK")


def group_cpu(pgid: int) -> float:
    """CPU seconds used by the live processes of a process group (and their reaped children)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp ... utime stime cutime cstime
            total += sum(int(f) for f in fields[11:15])
    return total / TICK


def postgres_cpu(database: str) -> float:
    """CPU seconds used so far by the live PostgreSQL backends serving `database` (those that
    closed meanwhile are missed: a lower bound)."""
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f" {database} " not in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


def start_qpu(latency: float, parallel: int) -> tuple[subprocess.Popen[bytes], str]:
    port = common.free_port()
    log = open(common.VAR_DIR / "scale-qpu.log", "w")  # noqa: SIM115 - lives as long as the process
    command = [
        sys.executable, "-m", "backends.qpu_simulator", "--port", str(port), "--token", QPU_TOKEN,
        "--latency", str(latency), "--parallel", str(parallel), "--no-simulation",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    proc = subprocess.Popen(
        command, cwd=common.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while "listening" not in (common.VAR_DIR / "scale-qpu.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((common.VAR_DIR / "scale-qpu.log").read_text()[-2000:])
        time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def start_node(
    env: dict[str, str], queues: list[str], concurrency: int, name: str, *, beat: bool = False
) -> common.Process:
    """A Celery node as on its own machine: its own TWEEZER_VAR_DIR and node name."""
    from portal.management.commands.runall import worker_command

    var_dir = common.VAR_DIR / f"{common.DB_NAME}-{name}"
    var_dir.mkdir(parents=True, exist_ok=True)
    command = worker_command(queues, concurrency=concurrency, name=name)
    command[command.index("warning")] = "info"
    if beat:
        command += ["-B", "-s", str(var_dir / "beat-schedule")]
    log = f"{common.DB_NAME}-{name}.log"
    node_env = {**env, "TWEEZER_VAR_DIR": str(var_dir)}
    return common.Process(command, node_env, log, lambda: " ready." in (common.VAR_DIR / log).read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", default="1,2,4,8", help="worker processes to measure, comma-separated")
    parser.add_argument("--jobs", type=int, default=20, help="jobs per batch (one batch per process)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.2, help="the QPU's fixed time per job (s)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.processes.split(",")]

    common.VAR_DIR.mkdir(parents=True, exist_ok=True)
    qpu, qpu_url = start_qpu(args.latency, max(sizes))
    os.environ.update(QPU_URL=qpu_url, QPU_TOKEN=QPU_TOKEN, QPU_POLL_SECONDS="0.05")
    try:
        return measure(args, sizes, qpu.pid)
    finally:
        os.killpg(qpu.pid, 15)
        qpu.wait()


def measure(args: argparse.Namespace, sizes: list[int], qpu_pgid: int) -> int:
    env, user, project, _, report = common.start("postgres", "bench_tweezer_scale")
    env = {**env, "QPU_URL": os.environ["QPU_URL"], "QPU_TOKEN": QPU_TOKEN, "QPU_POLL_SECONDS": "0.05"}
    from django.db.models import Max, Min
    from pulser import Pulse, Register, Sequence
    from pulser.json.abstract_repr.deserializer import deserialize_device

    from backends.models import Device
    from batches import services
    from jobs.models import Job

    fresnel = Device.objects.get(name="FRESNEL")
    assert fresnel.status == "UP", fresnel.status_reason
    Device.objects.filter(pk=fresnel.pk).update(slots=max(sizes))
    seq = Sequence(Register.rectangle(1, 2, spacing=6, prefix="q"), deserialize_device(fresnel.specs))
    seq.declare_channel("rydberg", "rydberg_global")
    omega = seq.declare_variable("omega_max")
    seq.add(Pulse.ConstantPulse(duration=200, amplitude=omega, detuning=0, phase=0), "rydberg")
    sequence = str(seq.to_abstract_repr())
    specs = common.job_specs(args.jobs, runs=10)
    report.line(
        f"scenario scale: QPU simulator {args.latency * 1000:.0f} ms per job (no simulation), "
        f"{args.jobs} jobs per batch, one batch per worker process, {args.reps} rounds per size; "
        f"nodes with separate var dirs, a third node (default queue + beat) for the tick"
    )

    def round_(n_batches: int, groups: list[int]) -> tuple[float, float, float, float, float, float, float]:
        """(jobs/s from the first submission to the last job's end; jobs/s while all N batches
        run, from the last batch's first job start to the first batch's last job end: the
        steady state, without the ramp of N submissions; CPU ms per job of the worker nodes,
        of the QPU simulator; share of the machine's CPU busy; median ms from a job's start to
        its end; CPU ms per job of the database's backends)."""
        cpu0 = [group_cpu(g) for g in groups]
        pg0 = postgres_cpu(common.DB_NAME)
        busy0 = machine_busy()
        t0 = time.perf_counter()
        ids = [
            services.create_batch(project, user, sequence_builder=sequence, jobs=specs, device_type="FRESNEL").pk
            for _ in range(n_batches)
        ]
        total = n_batches * args.jobs
        deadline = time.monotonic() + 600
        while (done := Job.objects.filter(batch_id__in=ids, status__in=("DONE", "ERROR", "CANCELED")).count()) < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{done}/{total} jobs ended after 600 s")
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        failed = Job.objects.filter(batch_id__in=ids).exclude(status="DONE").count()
        if failed:
            raise RuntimeError(f"{failed} jobs did not end DONE")
        spans = list(
            Job.objects.filter(batch_id__in=ids)
            .values("batch_id")
            .annotate(first=Min("start_timestamp"), last=Max("end_timestamp"))
        )
        steady_from, steady_to = max(s["first"] for s in spans), min(s["last"] for s in spans)
        ended = Job.objects.filter(batch_id__in=ids, end_timestamp__gt=steady_from, end_timestamp__lte=steady_to)
        steady = ended.count() / max(1e-9, (steady_to - steady_from).total_seconds())
        cpu = [group_cpu(g) - c for g, c in zip(groups, cpu0, strict=True)]
        pg = postgres_cpu(common.DB_NAME) - pg0
        busy1 = machine_busy()
        busy = (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1])
        durations = [
            (end - start).total_seconds()
            for start, end in Job.objects.filter(batch_id__in=ids).values_list("start_timestamp", "end_timestamp")
            if start and end
        ]
        return (
            total / elapsed,
            steady,
            1000 * sum(cpu[1:]) / total,
            1000 * cpu[0] / total,
            busy,
            1000 * statistics.median(durations),
            1000 * pg / total,
        )

    control = start_node(env, ["default"], 1, "scale-control", beat=True)
    results: dict[int, list[float]] = {}
    running: dict[int, list[float]] = {}
    costs: dict[int, list[tuple[float, float, float, float, float]]] = {}
    loads: dict[int, str] = {}
    with common.running(control):
        for n in sizes:
            split = [n - n // 2, n // 2]  # two nodes; a single process runs on one of them
            nodes = [start_node(env, ["device.FRESNEL"], c, f"scale-{'ab'[i]}{n}") for i, c in enumerate(split) if c]
            with common.running(*nodes):
                groups = [qpu_pgid, *(node.proc.pid for node in nodes)]
                round_(n, groups)  # warm-up: imports, connections
                rounds = [round_(n, groups) for _ in range(args.reps)]
                results[n] = [r[0] for r in rounds]
                running[n] = [r[1] for r in rounds]
                costs[n] = [r[2:] for r in rounds]
                loads[n] = "/".join(f"{x:.2f}" for x in os.getloadavg())
            common.purge_queues()
    common.purge_queues()

    base = statistics.median(results[sizes[0]]) / sizes[0]
    base_running = statistics.median(running[sizes[0]]) / sizes[0]
    report.line(
        "processes | nodes | jobs/s submit→done (median, min–max) | efficiency | "
        "jobs/s steady (all N running) | efficiency | CPU ms/job: workers, QPU simulator, PostgreSQL | "
        "machine CPU busy | job start→end ms (median) | load 1/5/15 min after"
    )
    for n in sizes:
        med, med_running = statistics.median(results[n]), statistics.median(running[n])
        layout = " + ".join(str(c) for c in (n - n // 2, n // 2) if c)
        report.line(
            f"{n:>9} | {layout:>5} | {med:6.2f} ({min(results[n]):.2f}–{max(results[n]):.2f}) | "
            f"{med / (n * base):.3f} | {med_running:6.2f} | {med_running / (n * base_running):.3f} | "
            f"{statistics.median(c[0] for c in costs[n]):.1f}, {statistics.median(c[1] for c in costs[n]):.1f}, "
            f"{statistics.median(c[4] for c in costs[n]):.1f} | "
            f"{100 * statistics.median(c[2] for c in costs[n]):.0f} % | "
            f"{statistics.median(c[3] for c in costs[n]):.0f} | {loads[n]}"
        )
    for n in sizes[1:]:
        report.ratio(f"scale_efficiency_{n}", statistics.median(results[n]) / (n * base), ">= 0.85")
        report.ratio(f"scale_efficiency_steady_{n}", statistics.median(running[n]) / (n * base_running), ">= 0.85")
    report.finish()
    common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
