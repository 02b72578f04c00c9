"""Run by test_postgres_crash.py in its own process, against a private PostgreSQL cluster.

Submits batches, lets a real worker run them (its connections commit without a WAL flush:
WORKER_SYNCHRONOUS_COMMIT=off), crashes PostgreSQL with an immediate shutdown (no checkpoint,
unflushed WAL lost), starts it again, waits for every job to end, and prints one JSON line
with what it saw. It is a separate process because the crash takes its database away.

    python -m tests.reliability.pg_crash_scenario PGDATA RESULT_JSON
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def pg_ctl(data: str, *args: str) -> None:
    bin_dir = Path(sys.argv[3]) if len(sys.argv) > 3 else Path("/usr/lib/postgresql/15/bin")
    subprocess.run(["runuser", "-u", "postgres", "--", str(bin_dir / "pg_ctl"), "-D", data, *args], check=True)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    from django.db import OperationalError, connection

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OperationalError:
            connection.close()  # the server went away: reconnect on the next try
        time.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what}")


def main() -> int:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection

    from backends.devices import sync_devices
    from jobs.models import Job, JobStatus
    from portal import credits
    from portal.models import Membership, Project
    from tests.conftest import WorkerProcess
    from tests.reliability.conftest import FAST_LEASES, money_problems, status_counts, submit
    from tests.sequences import analog_sequence

    data, result_path = sys.argv[1], Path(sys.argv[2])
    call_command("migrate", verbosity=0, interactive=False)
    sync_devices()
    user = User.objects.create_user("crash", password="crash-password")
    project = Project.objects.create(name="crash")
    Membership.objects.create(user=user, project=project, role=Membership.Role.ADMIN)
    credits.grant(project, 1_000_000, by=None, reason="crash test")

    class Member:
        pass

    member = Member()
    member.user, member.project = user, project  # type: ignore[attr-defined]

    log = result_path.with_suffix(".worker.log")
    worker = WorkerProcess(log, concurrency=2, beat=True, **FAST_LEASES)
    try:
        sequence = analog_sequence(3)
        batches = [submit(member, 10, sequence=sequence) for _ in range(4)]
        total = 40
        wait_for(lambda: Job.objects.filter(status=JobStatus.DONE).count() >= 6, 180, "6 jobs DONE")
        done_before = Job.objects.filter(status=JobStatus.DONE).count()
        pg_ctl(data, "stop", "-m", "immediate")
        crashed_at = time.monotonic()
        time.sleep(2)
        port = settings.DATABASES["default"]["PORT"]
        options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
        pg_ctl(data, "start", "-w", "-t", "60", "-o", options, "-l", str(Path(data) / "server.log"))
        connection.close()
        done_after_recovery = Job.objects.filter(status=JobStatus.DONE).count()
        active = [JobStatus.PENDING, JobStatus.RUNNING]
        wait_for(lambda: not Job.objects.filter(status__in=active).exists(), 300, "every job to end")
        recovered = time.monotonic() - crashed_at
        # A batch ends in the `advance` that follows its last job's end: wait for it, not a snapshot
        # in between (a batch left RUNNING would time out here, and fail the test below).
        batch_model = type(batches[0])
        wait_for(lambda: not batch_model.objects.filter(status__in=["PENDING", "RUNNING"]).exists(), 60, "batches")
        result = {
            "jobs": Job.objects.count(),
            "total": total,
            "counts": status_counts(),
            "done_before_crash": done_before,
            "done_after_recovery": done_after_recovery,
            "attempts_over_1": Job.objects.filter(attempts__gt=1).count(),
            "all_terminal_after_s": round(recovered, 1),
            "batches": sorted({b.status for b in batch_model.objects.all()}),
            "money_problems": money_problems(),
        }
    finally:
        worker.stop()
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
