"""Shared pieces of the benchmarks: environment, database, web server, workers, statistics.

Every bench script calls `configure()` before importing anything from Django, then starts its
own gunicorn and Celery worker subprocesses with the same environment and stops them by pid.
Nothing here is imported by the product or by `make test`.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = ROOT / "var" / "h-bench"
PG_BASE = "postgres://postgres@127.0.0.1:5432/"
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
DEVICE_QUEUES = ["default", "device.EMU_FREE", "device.EMU_SV", "device.EMU_MPS", "device.FRESNEL"]

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# Each script has its own database (bench_tweezer_<scenario>), so scripts may run at once;
# BENCH_DB_NAME overrides it (two runs of the same script at once). Set by `configure`.
DB_NAME = "bench_tweezer"


def bench_env(kind: str = "postgres") -> dict[str, str]:
    """Environment of the bench processes: PostgreSQL + Redis DB 6, or the embedded SQLite + file broker."""
    env = {
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "TWEEZER_VAR_DIR": str(VAR_DIR / (DB_NAME if kind == "postgres" else kind)),
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
        "LOG_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": str(ROOT),
        "AXES_ENABLED": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        # The tick is not part of what is measured; keep it out of the way.
        "TICK_SECONDS": "30",
        # Persistent connections, as a production deployment sets them (0 = one connection per request).
        "DB_CONN_MAX_AGE": "60",
    }
    if kind == "postgres":
        env.update(DATABASE_URL=PG_BASE + DB_NAME, CELERY_BROKER_URL=REDIS_URL)
    else:
        env.pop("DATABASE_URL", None)
    return env


def configure(kind: str = "postgres", db_name: str = "bench_tweezer") -> dict[str, str]:
    """Set this process's environment and set Django up; call before any Django import."""
    global DB_NAME
    DB_NAME = os.environ.get("BENCH_DB_NAME") or db_name
    env = bench_env(kind)
    for key in ("DATABASE_URL", "CELERY_BROKER_URL"):
        os.environ.pop(key, None)
    os.environ.update(env)
    Path(env["TWEEZER_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
    import django

    django.setup()
    return env


def child_env(env: dict[str, str]) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    full.update(env)
    return full


def reset_database(kind: str = "postgres") -> None:
    """A fresh, migrated database with the devices. PostgreSQL: drop and create bench_tweezer."""
    from django.core.management import call_command
    from django.db import connections

    connections.close_all()
    if kind == "postgres":
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DB_NAME}")
    else:
        from django.conf import settings

        Path(settings.DATABASES["default"]["NAME"]).unlink(missing_ok=True)
        import shutil

        shutil.rmtree(settings.BROKER_DIR, ignore_errors=True)
    call_command("migrate", verbosity=0, interactive=False)
    from backends.devices import sync_devices

    sync_devices()


def drop_database() -> None:
    from django.db import connections

    connections.close_all()
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def make_member(name: str = "bench", credits: int = 10**12) -> tuple[Any, Any, str]:
    """A user, a project with plenty of credits, and an API token: (user, project, token)."""
    from django.contrib.auth import get_user_model

    from portal import credits as ledger
    from portal.models import Membership, Project
    from portal.tokens import create_token

    user = get_user_model().objects.create_user(username=name, password="bench-password")
    project = Project.objects.create(name=f"{name} project")
    Membership.objects.create(user=user, project=project, role=Membership.Role.ADMIN)
    ledger.grant(project, credits, by=None, reason="bench")
    _, token = create_token(user, "bench")
    return user, project, token


def start(kind: str, db_name: str, member: str = "bench") -> tuple[dict[str, str], Any, Any, str, Report]:
    """A script's set-up: configure Django, a fresh database, empty queues, a member with
    credits, a report that starts with the machine: (env, user, project, token, report)."""
    env = configure(kind, db_name)
    reset_database(kind)
    purge_queues()
    user, project, token = make_member(member)
    report = Report()
    report.line(machine())
    return env, user, project, token, report


def purge_queues() -> None:
    """Forget broker messages left by an earlier run (Redis DB 6 or the bench's file broker only)."""
    from portal.celery import purge_queues as purge

    purge(extra=("bench.bare",))


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A child process in its own session, stopped by its pid (never by name)."""

    def __init__(self, command: list[str], env: dict[str, str], log_name: str, ready: Callable[[], bool]) -> None:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = VAR_DIR / log_name
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=child_env(env), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while not ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited early:\n{self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{command[:4]} not ready:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]


def _log_has(path: Path, text: str) -> Callable[[], bool]:
    return lambda: path.exists() and text in path.read_text(errors="replace")


def start_worker(env: dict[str, str], *, concurrency: int = 2, name: str = "bench") -> Process:
    """The product's worker command line (runall.worker_command) on every device queue."""
    from portal.management.commands.runall import worker_command

    command = worker_command(DEVICE_QUEUES, concurrency=concurrency, name=f"{name}-{os.getpid()}")
    command[command.index("warning")] = "info"
    # With the beat tick, as in production: a lost message is re-sent instead of stalling a batch.
    command += ["-B", "-s", str(VAR_DIR / f"{DB_NAME}-{name}-beat-schedule")]
    log = f"{DB_NAME}-worker-{name}.log"
    return Process(command, env, log, _log_has(VAR_DIR / log, " ready."))


def start_bare_worker(env: dict[str, str], *, concurrency: int = 2) -> Process:
    """`celery -A bench.bare_app worker` on the same broker, the floor Tweezer is compared with."""
    command = [
        sys.executable, "-m", "celery", "-A", "bench.bare_app", "worker", "-l", "info", "-O", "fair",
        "--pool", "prefork", "--concurrency", str(concurrency), "-Q", "bench.bare",
        "-n", f"bare-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    log = f"{DB_NAME}-worker-bare.log"
    return Process(command, env, log, _log_has(VAR_DIR / log, " ready."))


def _http_ready(port: int, path: str = "/login/") -> Callable[[], bool]:
    def ready() -> bool:
        import requests

        try:
            return requests.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code < 500
        except requests.RequestException:
            return False

    return ready


def start_web(
    env: dict[str, str], *, workers: int = 2, threads: int = 4, app: str = "portal.wsgi"
) -> tuple[Process, str]:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", app, "-b", f"127.0.0.1:{port}",
        "-w", str(workers), "--threads", str(threads), "--timeout", "300",
    ]  # fmt: skip
    return Process(command, env, f"{DB_NAME}-web-{port}.log", _http_ready(port)), f"http://127.0.0.1:{port}"


def start_asgi(env: dict[str, str], *, workers: int = 2, **extra: str) -> tuple[Process, str]:
    """The product's web server (runall.web_command: gunicorn with uvicorn workers, ASGI), as
    `make run`, the image and compose start it: held status requests take no thread."""
    from portal.management.commands.runall import web_command

    port = free_port()
    command = web_command(f"127.0.0.1:{port}", workers=workers)
    web = Process(command, {**env, **extra}, f"{DB_NAME}-asgi-{port}.log", _http_ready(port))
    return web, f"http://127.0.0.1:{port}"


@contextmanager
def running(*procs: Process) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.stop()


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, from /proc, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


# --- HTTP -------------------------------------------------------------------------------------


def api(base: str, token: str) -> Any:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    session.base = base  # type: ignore[attr-defined]
    return session


def post_json(session: Any, url: str, payload: Any, *, gzipped: bool = True) -> Any:
    return post_encoded(session, url, *encoded(payload, gzipped=gzipped))


def encoded(payload: Any, *, gzipped: bool = True) -> tuple[bytes, dict[str, str]]:
    """A JSON request body as the SDK sends it (gzip'd), and its headers."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if gzipped:
        body = gzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return body, headers


def post_encoded(session: Any, url: str, body: bytes, headers: dict[str, str]) -> Any:
    """POST an `encoded` body; the answer's `data`, decoded."""
    r = session.post(url, data=body, headers=headers, timeout=600)
    if r.status_code != 200:
        raise RuntimeError(f"POST {url}: {r.status_code} {r.text[:500]}")
    return r.json()["data"]


# --- sequences --------------------------------------------------------------------------------


def submit_batch(session: Any, base: str, project: Any, sequence: str, jobs: list[dict[str, Any]]) -> str:
    """POST a closed EMU_FREE batch through the API, gzip'd as the SDK sends it: its id."""
    payload = {
        "sequence_builder": sequence,
        "jobs": jobs,
        "device_type": "EMU_FREE",
        "project_id": str(project.pk),
        "complete": True,
    }
    return str(post_json(session, f"{base}/core/api/v1/batches", payload)["id"])


def wait_done(session: Any, base: str, batch_id: str, *, poll: float | None = None, timeout: float = 900) -> None:
    """Wait through the API until the batch ends; raise unless it ended DONE.

    `poll=None` (the default) waits as the SDK does against this server: the status request is
    held until one of the batch's jobs ends (STATUS_HOLD_SECONDS), then asked again at once.
    With a `poll` period, sleep between requests instead: every request is served on the cores
    the jobs run on, so poll no faster than the figure needs."""
    url = f"{base}/core/api/v1/batches/{batch_id}/status"
    deadline = time.monotonic() + timeout
    while (status := session.get(url, timeout=30).json()["data"]["status"]) not in TERMINAL:
        if time.monotonic() > deadline:
            raise RuntimeError(f"batch {batch_id} still {status} after {timeout:.0f} s")
        if poll is not None:
            time.sleep(poll)
    if status != "DONE":
        raise RuntimeError(f"batch {batch_id} ended {status}")


TERMINAL = ("DONE", "ERROR", "CANCELED", "TIMED_OUT")


def tiny_sequence(n_atoms: int = 2, duration: int = 100) -> str:
    """A fixed 2-atom AnalogDevice register, one global pulse of `omega_max`: the cheapest real job."""
    from pulser import Pulse, Register, Sequence
    from pulser.devices import AnalogDevice

    seq = Sequence(Register.rectangle(1, n_atoms, spacing=6, prefix="q"), AnalogDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    omega = seq.declare_variable("omega_max")
    seq.add(Pulse.ConstantPulse(duration=duration, amplitude=omega, detuning=0, phase=0), "rydberg")
    return str(seq.to_abstract_repr())


def job_specs(n: int, runs: int = 10) -> list[dict[str, Any]]:
    return [{"runs": runs, "variables": {"omega_max": 1.0 + (i % 50) / 10}} for i in range(n)]


# --- statistics and output --------------------------------------------------------------------


def timed(fn: Callable[[], Any], reps: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def size_label(n: int) -> str:
    """100 -> "100", 100_000 -> "100k", 1_000_000 -> "1M": the sizes in a ratio's name."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(values: list[float], unit: str = "ms", scale: float = 1000.0) -> str:
    med = statistics.median(values)
    return (
        f"median {med * scale:.2f} {unit} [min {min(values) * scale:.2f} – max {max(values) * scale:.2f}, "
        f"p10 {quantile(values, 0.1) * scale:.2f} – p90 {quantile(values, 0.9) * scale:.2f}, n={len(values)}]"
    )


class Report:
    """Collects absolute lines and ratio lines; prints the ratios last, as the issue asks."""

    def __init__(self) -> None:
        self.ratios: list[str] = []

    def line(self, text: str) -> None:
        print(text, flush=True)

    def ratio(self, name: str, value: float, target: str) -> None:
        self.ratios.append(f"ratio {name} {value:.3f} (target {target})")

    def finish(self) -> None:
        for r in self.ratios:
            print(r, flush=True)


def machine() -> str:
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) // 1024 // 1024
    import django
    import pulser

    return (
        f"machine: {os.cpu_count()} cores, {mem} GiB RAM, Python {platform.python_version()}, "
        f"Django {django.get_version()}, pulser {pulser.__version__}"
    )
