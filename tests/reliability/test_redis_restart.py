"""Redis dies (losing every queued message) and comes back: the work resumes, nothing is lost."""

from __future__ import annotations

import time

import pytest

from jobs.models import Job, JobStatus
from tests.conftest import wait_until
from tests.reliability.conftest import (
    all_jobs_terminal,
    assert_money_ok,
    figure,
    status_counts,
    submit,
    use_broker,
)
from tests.sequences import analog_sequence

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_queued_work_resumes_after_a_redis_restart_and_the_tick_resends_lost_messages(
    transactional_db, devices, make_member, start_worker, private_redis
):
    member = make_member(credits=1_000_000)
    sequence = analog_sequence(8)  # long enough to be mid-run when the broker dies
    with use_broker(private_redis.url):
        worker = start_worker(CELERY_BROKER_URL=private_redis.url)
        before = [submit(member, 10, sequence=sequence) for _ in range(4)]
        wait_until(lambda: Job.objects.filter(status=JobStatus.DONE).count() >= 4, timeout=120)

        wait_until(lambda: Job.objects.filter(status=JobStatus.RUNNING).exists(), timeout=60, interval=0.02)
        private_redis.stop()  # kill -9, no persistence: every queued and unacked message is gone
        running_at_outage = Job.objects.filter(status=JobStatus.RUNNING).count()
        down_at = time.monotonic()
        done_at_restart = Job.objects.filter(status=JobStatus.DONE).count()
        wait_until(lambda: "redis" in worker.log_path.read_text().lower().split(" ready.", 1)[-1], timeout=60)
        # Submissions while the broker is down are accepted: the database is the record.
        during = [submit(member, 5, sequence=sequence) for _ in range(2)]
        private_redis.start()
        outage = time.monotonic() - down_at

        wait_until(all_jobs_terminal, timeout=300, interval=0.5)
        resumed = time.monotonic() - down_at

    counts = status_counts()
    total = 4 * 10 + 2 * 5
    figure("redis outage (s)", f"{outage:.1f}")
    figure("jobs DONE when redis died", f"{done_at_restart} / {total}")
    figure("jobs running when redis died", f"{running_at_outage}")
    figure("healthy jobs failed by the outage", f"{counts.get('ERROR', 0)} / {total}")
    figure("jobs lost across the redis restart", f"{total - counts.get('DONE', 0) - counts.get('ERROR', 0)} / {total}")
    figure("all jobs terminal after redis died (s)", f"{resumed:.1f}")
    assert counts.get("DONE", 0) + counts.get("ERROR", 0) == total, counts
    # A broker outage is not the jobs' fault: those running at the outage finish too (issue 17.4).
    assert counts.get("ERROR", 0) == 0 and counts.get("DONE", 0) == total, counts
    for batch in [*before, *during]:
        batch.refresh_from_db()
        assert batch.status == "DONE", batch.status
    assert_money_ok()
