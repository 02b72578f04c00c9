"""Shared fixtures: devices, users with tokens, a real Celery worker process, the real SDK."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Max, Q, Sum

from backends.devices import sync_devices
from backends.models import Device
from portal.models import CreditTransaction, Project
from portal.tokens import create_token
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.s3 import Bucket, S3Server, results_env

ROOT = Path(__file__).resolve().parent.parent
DB_FIXTURES = {"db", "transactional_db", "live_server", "django_db_reset_sequences", "django_db_serialized_rollback"}


def _retry_flush_on_deadlock() -> None:
    """The session worker's beat tick may hold row locks while a transactional test empties the
    database (TRUNCATE); PostgreSQL then kills one side with a deadlock. Retry the flush."""
    from django.core.management.base import CommandError
    from django.db import OperationalError
    from django.test.testcases import TransactionTestCase

    original = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]  # private, not in the stubs

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                return original(self)
            except (OperationalError, CommandError):
                if attempt == 4:
                    raise
                time.sleep(0.5)

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[attr-defined, method-assign]  # private, not in the stubs


_retry_flush_on_deadlock()


def is_postgres() -> bool:
    return bool(connection.vendor == "postgresql")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        skip = pytest.mark.skip(reason="needs PostgreSQL (run with DATABASE_URL=postgres://…)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def ledger_invariant(request: pytest.FixtureRequest, django_db_blocker: Any) -> Iterator[None]:
    """After every test that touched the database: balance == sum(ledger), ≤ 1 CHARGE/REFUND per job."""
    yield
    if not DB_FIXTURES & set(request.fixturenames) and not request.node.get_closest_marker("django_db"):
        return
    with django_db_blocker.unblock():
        for project in Project.objects.all():
            total = project.transactions.aggregate(s=Sum("amount"))["s"] or 0
            assert project.balance == total, f"{project}: balance {project.balance} != ledger sum {total}"
            assert project.balance >= 0
        doubled = (
            CreditTransaction.objects.filter(kind__in=["CHARGE", "REFUND"], job__isnull=False)
            .values("job_id", "kind")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
        )
        assert not doubled.exists(), f"jobs charged or refunded twice: {list(doubled)}"


@pytest.fixture(autouse=True)
def jobs_count_invariant(request: pytest.FixtureRequest, django_db_blocker: Any) -> Iterator[None]:
    """After every database test: a batch's `jobs_count` is its number of jobs, their `order`s are
    0…jobs_count-1, a job's project is its batch's (GET /jobs's `total` relies on it), and the
    batch's per-status counters and credits spent are what its jobs and ledger rows add up to."""
    yield
    if not DB_FIXTURES & set(request.fixturenames) and not request.node.get_closest_marker("django_db"):
        return
    from batches.models import Batch
    from jobs.models import Job, JobStatus

    with django_db_blocker.unblock():
        counted = Batch.objects.annotate(n=Count("jobs"), last=Max("jobs__order"))
        # With the (batch, order) unique constraint, count = jobs_count and max = count - 1 mean 0…n-1.
        wrong = counted.filter(~Q(jobs_count=F("n")) | (Q(n__gt=0) & ~Q(last=F("jobs_count") - 1)))
        assert not wrong.exists(), f"jobs_count != jobs: {list(wrong.values('pk', 'jobs_count', 'n', 'last'))}"
        elsewhere = Job.objects.exclude(project_id=F("batch__project_id"))
        assert not elsewhere.exists(), f"jobs in another project than their batch: {list(elsewhere.values('pk'))}"
        # The triggers' counters (batches migration 0004) against a count from scratch.
        per_status = {
            f"{status.lower()}_jobs": Count("jobs", filter=Q(jobs__status=status)) for status in JobStatus.values
        }
        for batch in Batch.objects.annotate(**{f"n_{k}": v for k, v in per_status.items()}):
            for column in per_status:
                assert getattr(batch, column) == getattr(batch, f"n_{column}"), f"{batch}: {column} counter is wrong"
        for batch in Batch.objects.all():
            spent = batch.transactions.filter(kind__in=["CHARGE", "REFUND"]).aggregate(s=Sum("amount"))["s"] or 0
            assert batch.credits_spent == -spent, f"{batch}: credits_spent {batch.credits_spent} != {-spent}"


@pytest.fixture
def devices(db: None) -> dict[str, Device]:
    return {d.name: d for d in sync_devices()}


@pytest.fixture
def member(db: None) -> Any:
    """A project ADMIN with 100,000 credits and an API token (`member.token`)."""
    membership: Any = MembershipFactory()  # factory_boy calls are untyped: the instance is a Membership
    _, membership.token = create_token(membership.user, "tests")
    return membership


@pytest.fixture
def make_member(db: None) -> Callable[..., Any]:
    def make(role: str = "ADMIN", credits: int = 100_000, project: Project | None = None) -> Any:
        membership: Any = MembershipFactory(
            role=role,
            user=UserFactory(),
            project=project or ProjectFactory(credits=credits),
        )
        _, membership.token = create_token(membership.user, "tests")
        return membership

    return make


# --- real processes -------------------------------------------------------------------------


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db.get("USER") or ""
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    at = f"{auth}@" if auth else ""
    return f"postgres://{at}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def worker_env(**extra: str) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=_database_url(),
        PYTHONPATH=str(ROOT),
        PYTHONWARNINGS="ignore",
    )
    env.update(extra)
    return env


def purge_broker() -> None:
    """Forget messages left by an earlier run (they name jobs that no longer exist)."""
    from portal.celery import purge_queues

    purge_queues()


class WorkerProcess:
    """`celery worker` (+ embedded beat) on every device queue, as a child process."""

    def __init__(
        self, log_path: Path, *, concurrency: int = 2, beat: bool = True, name: str | None = None, **env: str
    ) -> None:
        from portal.management.commands.runall import worker_command

        queues = ["default", "device.EMU_FREE", "device.EMU_SV", "device.EMU_MPS", "device.FRESNEL"]
        name = name or f"test-{os.getpid()}-{time.time_ns()}"
        command = worker_command(queues, concurrency=concurrency, name=name)
        command[command.index("warning")] = "info"
        if beat:
            command += ["-B", "-s", str(log_path.with_suffix(".beat"))]
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=worker_env(**env), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-3000:]}")
            if " ready." in self.log_path.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready after {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


@contextlib.contextmanager
def consumers_paused(queue: str) -> Iterator[None]:
    """Stop this session's running workers from taking `queue`'s messages for a while, so a
    test can drive claims itself. Needs a broker with remote control (Redis); elsewhere no
    worker answers and nothing is paused."""
    from portal.celery import app

    try:
        active = app.control.inspect(timeout=1).active_queues() or {}
    except Exception:  # noqa: BLE001 - a broker without remote control: nobody to ask
        active = {}
    others = [name for name, queues in active.items() if any(q["name"] == queue for q in queues)]
    if others:
        app.control.cancel_consumer(queue, destination=others, reply=True)
    try:
        yield
    finally:
        if others:
            app.control.add_consumer(queue, destination=others, reply=True)


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One real worker for the whole session; tests that kill workers start their own."""
    purge_broker()
    worker = WorkerProcess(tmp_path_factory.mktemp("worker") / "worker.log")
    yield worker
    worker.stop()


@pytest.fixture
def worker(celery_worker: WorkerProcess, transactional_db: None) -> WorkerProcess:
    if celery_worker.proc.poll() is not None:
        pytest.fail(f"the worker died:\n{celery_worker.log_path.read_text()[-3000:]}")
    return celery_worker


@pytest.fixture
def sdk_for(live_server: Any) -> Callable[[Any], Any]:
    """The real pasqal-cloud SDK pointed at the live server, for a membership with a token."""
    from pasqal_cloud.authentication import TokenProvider
    from pasqal_cloud.endpoints import Endpoints

    try:
        from pasqal_cloud.pasqal_cloud_client import PasqalCloudClient
    except ImportError:  # pasqal-cloud 0.22, the line pulser-pasqal pins (tests/sdk/run_pinned_sdk.sh)
        from pasqal_cloud import SDK as PasqalCloudClient  # type: ignore[no-redef]  # older name, same API

    class StaticToken(TokenProvider):
        def __init__(self, token: str) -> None:
            self._token = token

        def get_token(self) -> str:
            return self._token

    def make(membership: Any, *, token: str | None = None) -> Any:
        return PasqalCloudClient(
            project_id=str(membership.project_id),
            token_provider=StaticToken(token or membership.token),
            endpoints=Endpoints(core=f"{live_server.url}/core", account=f"{live_server.url}/account"),
        )

    return make


@pytest.fixture
def sdk(sdk_for: Callable[[Any], Any], member: Any, devices: dict[str, Device]) -> Any:
    return sdk_for(member)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-protocol server (moto's), one per session; each test takes its own bucket."""
    for module in ("moto", "boto3", "flask_cors"):
        pytest.importorskip(module, reason=f"RESULTS_STORAGE=s3 tests need {module} (the test extra: make install)")
    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_storage_settings(s3_server: S3Server) -> dict[str, Any]:
    """settings.STORAGES["results"] as portal/settings.py makes it from the RESULTS_S3_* variables,
    asked of a fresh process once: a test's web side is configured exactly as its workers are."""
    script = "import json, django; django.setup(); from django.conf import settings; "
    script += "print(json.dumps(settings.STORAGES['results']))"
    env = worker_env(**results_env(s3_server.endpoint, "placeholder"))
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    entry: dict[str, Any] = json.loads(out.stdout)
    assert entry["BACKEND"] == "jobs.storage.s3_storage"
    return entry


@pytest.fixture
def s3_bucket(s3_server: S3Server, s3_storage_settings: dict[str, Any], settings: Any) -> Bucket:
    """RESULTS_STORAGE=s3 on a new bucket, in this process (the web side); `bucket.env` gives
    the same to worker processes."""
    bucket = Bucket(s3_server, s3_server.create_bucket())
    entry = copy.deepcopy(s3_storage_settings)
    entry["OPTIONS"]["bucket_name"] = bucket.name
    settings.STORAGES = {**settings.STORAGES, "results": entry}
    return bucket


def wait_until(predicate: Callable[[], Any], *, timeout: float = 60, interval: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {predicate}")


__all__ = ["WorkerProcess", "is_postgres", "purge_broker", "sys", "wait_until", "worker_env"]
