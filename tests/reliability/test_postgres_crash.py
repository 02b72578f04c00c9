"""PostgreSQL crashes (immediate shutdown) while workers commit without a WAL flush.

WORKER_SYNCHRONOUS_COMMIT=off lets the workers' job transitions skip the flush; the promise in
the README is that a crash can then only make jobs run again, never lose a submission or a
charge, nor leave a job stuck. The crash takes the database away, so the scenario runs in its
own process (pg_crash_scenario.py) against a private cluster made here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.reliability.conftest import figure, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _as_postgres(*command: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, **kwargs)  # type: ignore[call-overload, no-any-return]


@pytest.fixture
def private_postgres() -> Iterator[tuple[Path, int, Path]]:
    """A throw-away cluster (data folder, port, bin folder), owned by the postgres user."""
    bin_dir = _pg_bin()
    if bin_dir is None or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL's server binaries and runuser")
    data = Path(tempfile.mkdtemp(prefix="tweezer-pg-"))
    shutil.chown(data, "postgres", "postgres")
    port = free_port()
    _as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "server.log"), "start", "-w")
    _as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "tweezer")
    yield data, port, bin_dir
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(bin_dir / "pg_ctl"), "-D", str(data), "stop", "-m", "immediate"]
    )
    shutil.rmtree(data, ignore_errors=True)


def test_a_postgres_crash_only_reruns_jobs_and_loses_no_submission_or_charge(private_postgres, private_redis, tmp_path):
    data, port, bin_dir = private_postgres
    result_path = tmp_path / "crash.json"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "PYTHONWARNINGS": "ignore",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/tweezer",
        "CELERY_BROKER_URL": private_redis.url,
        "TWEEZER_VAR_DIR": str(tmp_path / "var"),
        "WORKER_SYNCHRONOUS_COMMIT": "off",
    }
    run = subprocess.run(
        [sys.executable, "-m", "tests.reliability.pg_crash_scenario", str(data), str(result_path), str(bin_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    worker_log = result_path.with_suffix(".worker.log")
    assert run.returncode == 0, (
        run.stdout[-2000:],
        run.stderr[-4000:],
        worker_log.exists() and worker_log.read_text()[-3000:],
    )
    result = json.loads(result_path.read_text())
    counts = result["counts"]
    figure(
        "postgres crash: jobs DONE before the crash / after recovery",
        f"{result['done_before_crash']} / {result['done_after_recovery']}",
    )
    figure("postgres crash: jobs run more than once", f"{result['attempts_over_1']} / {result['total']}")
    figure("postgres crash: all jobs terminal after (s)", result["all_terminal_after_s"])
    figure("postgres crash: job statuses", counts)

    assert result["jobs"] == result["total"], "a committed submission was lost"
    assert counts.get("DONE", 0) + counts.get("ERROR", 0) == result["total"], counts
    assert counts.get("DONE", 0) >= result["total"] - 2, counts  # at most the jobs caught mid-run end ERROR
    assert result["batches"] == ["DONE"], result["batches"]
    assert result["money_problems"] == [], result["money_problems"][:10]
