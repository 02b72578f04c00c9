"""The battery's oracle and helpers: private services, fault injection, figures for RESULTS.md."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from batches import services
from jobs.models import Job, JobStatus
from portal.models import CreditTransaction, Project
from tests.conftest import WorkerProcess, wait_until

FIGURES = Path(settings.VAR_DIR) / "reliability-figures.jsonl"
FAST_LEASES = {"JOB_LEASE_SECONDS": "2", "TICK_SECONDS": "1", "JOB_REDISPATCH_SECONDS": "3"}


def figure(name: str, value: object) -> None:
    """Print one measured figure (pytest -s shows it) and keep it for RESULTS.md."""
    line = f"{name}: {value}"
    print(f"\nFIGURE {line}")
    with FIGURES.open("a") as handle:
        handle.write(json.dumps({"figure": name, "value": str(value), "at": time.time()}) + "\n")


def money_problems() -> list[str]:
    """Every broken ledger rule: balance != sum(ledger), a negative balance, a second CHARGE/REFUND."""
    problems = []
    for project in Project.objects.all():
        total = project.transactions.aggregate(s=Sum("amount"))["s"] or 0
        if project.balance != total:
            problems.append(f"{project}: balance {project.balance} != ledger sum {total}")
        if project.balance < 0:
            problems.append(f"{project}: negative balance {project.balance}")
    doubled = (
        CreditTransaction.objects.filter(kind__in=["CHARGE", "REFUND"], job__isnull=False)
        .values("job_id", "kind")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    problems += [f"job {row['job_id']}: {row['n']} {row['kind']} rows" for row in doubled]
    # A canceled job and a job that failed for the platform are refunded; a DONE job is not.
    refunded = set(CreditTransaction.objects.filter(kind="REFUND").values_list("job_id", flat=True))
    for job in Job.objects.filter(status=JobStatus.DONE, pk__in=refunded):
        problems.append(f"job {job.pk} is DONE and refunded")
    for job in Job.objects.filter(status=JobStatus.CANCELED, price__gt=0).exclude(pk__in=refunded):
        problems.append(f"job {job.pk} is CANCELED and not refunded")
    charged = set(CreditTransaction.objects.filter(kind="CHARGE").values_list("job_id", flat=True))
    for job in Job.objects.filter(price__gt=0).exclude(pk__in=charged):
        problems.append(f"job {job.pk} was never charged")
    return problems


def assert_money_ok() -> None:
    problems = money_problems()
    figure("ledger problems", f"{len(problems)} (projects: {Project.objects.count()}, jobs: {Job.objects.count()})")
    assert not problems, "\n".join(problems[:20])


def status_counts(jobs: Any = None) -> dict[str, int]:
    qs = Job.objects.all() if jobs is None else jobs
    return {row["status"]: row["n"] for row in qs.values("status").annotate(n=Count("pk")).order_by()}


def all_jobs_terminal() -> bool:
    return not Job.objects.filter(status__in=[JobStatus.PENDING, JobStatus.RUNNING]).exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A throw-away `redis-server` (no persistence), so a restart loses every message."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [*command, "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self.ping, timeout=20)

    def ping(self) -> bool:
        out = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
        return out.stdout.strip() == "PONG"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if subprocess.run(["which", "redis-server"], capture_output=True).returncode:
        pytest.skip("redis-server is not installed")
    redis = PrivateRedis(tmp_path)
    yield redis
    redis.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Any]:
    """Start real worker processes (killed or stopped at the end of the test)."""
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        concurrency = int(env.pop("concurrency", "2"))
        beat = env.pop("beat", "1") == "1"
        merged = {**FAST_LEASES, **env}
        worker = WorkerProcess(tmp_path / f"worker-{len(started)}.log", concurrency=concurrency, beat=beat, **merged)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.stop()


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def terminate_other_backends(spare: int | None = None) -> int:
    """`pg_terminate_backend` on every other connection to the test database (but `spare`)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s",
            [spare or 0],
        )
        return int(cursor.fetchone()[0])


def submit(member: Any, jobs: int, *, sequence: str, open: bool = False, runs: int = 5, **kwargs: Any) -> Any:
    specs = [{"runs": runs, "variables": {"omega_max": 1.0 + (i % 5) / 10}} for i in range(jobs)]
    return services.create_batch(
        member.project, member.user, sequence_builder=sequence, jobs=specs, device_type="EMU_FREE", open=open, **kwargs
    )


def now() -> Any:
    return timezone.now()


__all__ = ["os"]


class use_broker:  # noqa: N801 - used like a function: `with use_broker(url):`
    """Point this process's Celery producer at another broker (settings are already loaded)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _reset(self) -> None:
        from portal.celery import app

        if app._pool is not None:
            app._pool.force_close_all()
            app._pool = None
        app.amqp._producer_pool = None

    def __enter__(self) -> use_broker:
        from portal.celery import app

        self.previous = app.conf.broker_url
        self._reset()
        app.conf.broker_url = self.url
        return self

    def __exit__(self, *exc: object) -> None:
        from portal.celery import app

        self._reset()
        app.conf.broker_url = self.previous
