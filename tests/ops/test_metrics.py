"""GET /metrics: protected by METRICS_TOKEN, and one scrape tells every device's queue, run
times, workers and credits, read from the database whatever machine wrote them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from batches import services
from jobs.models import Job, JobStatus
from ops import workers
from ops.metrics import HELP
from ops.models import JobRunTime
from portal.credits import refund_job
from tests.sequences import job, seed_mappable_sequence

pytestmark = pytest.mark.django_db
TOKEN = "metrics-test-token"


@pytest.fixture(autouse=True)
def _metrics_on(settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_CACHE_SECONDS = 0


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = Client(HTTP_HOST="10.20.30.40").get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_are_not_found_while_no_token_is_configured(settings, db):
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_metrics_without_the_right_bearer_token_are_unauthorized(db):
    client = Client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_a_scrape_reports_each_devices_queue_run_times_and_credits(member, devices):
    batches = [
        services.create_batch(
            member.project,
            member.user,
            sequence_builder=seed_mappable_sequence(),
            jobs=[job(runs=10, qubits={"q0": 1}) for _ in range(3)],
            device_type="EMU_FREE",
        )
        for _ in range(2)
    ]
    samples = scrape()
    assert value(samples, "tweezer_jobs_pending", device="EMU_FREE") == 6
    assert value(samples, "tweezer_jobs_pending", device="FRESNEL") == 0
    assert value(samples, "tweezer_device_slots", device="EMU_FREE") == devices["EMU_FREE"].slots
    assert value(samples, "tweezer_runnable_batches", device="EMU_FREE") == min(2, devices["EMU_FREE"].slots)
    assert 0 <= value(samples, "tweezer_oldest_pending_job_age_seconds", device="EMU_FREE") < 60
    charged = value(samples, "tweezer_credits_charged_total")
    assert charged == sum(j.price for j in Job.objects.all()) > 0

    first, second = batches[0].jobs.order_by("order")[:2]
    now = timezone.now()
    Job.objects.filter(pk=first.pk).update(status=JobStatus.RUNNING, start_timestamp=now - timedelta(seconds=2))
    samples = scrape()
    assert value(samples, "tweezer_jobs_running", device="EMU_FREE") == 1
    assert value(samples, "tweezer_jobs_pending", device="EMU_FREE") == 5
    assert value(samples, "tweezer_slots_in_use", device="EMU_FREE") == 1  # the batch with a running job

    Job.objects.filter(pk=first.pk).update(status=JobStatus.DONE, end_timestamp=now)
    Job.objects.filter(pk=second.pk).update(status=JobStatus.RUNNING, start_timestamp=now - timedelta(seconds=40))
    Job.objects.filter(pk=second.pk).update(status=JobStatus.ERROR, end_timestamp=now)
    second.refresh_from_db()
    refund_job(second, by=None, reason="test")
    samples = scrape()
    assert value(samples, "tweezer_jobs_ended_total", device="EMU_FREE", status="DONE") == 1
    assert value(samples, "tweezer_jobs_ended_total", device="EMU_FREE", status="ERROR") == 1
    histogram = {
        b: value(samples, "tweezer_job_run_seconds_bucket", device="EMU_FREE", le=b)
        for b in ("1.0", "2.5", "60.0", "+Inf")
    }
    assert histogram == {"1.0": 0, "2.5": 1, "60.0": 2, "+Inf": 2}
    assert value(samples, "tweezer_job_run_seconds_count", device="EMU_FREE") == 2
    assert value(samples, "tweezer_job_run_seconds_sum", device="EMU_FREE") == pytest.approx(42, abs=0.01)
    assert value(samples, "tweezer_credits_refunded_total") == second.price > 0


def test_a_canceled_pending_job_is_no_run_time_and_a_heartbeat_update_counts_nothing(member, devices):
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[job(runs=10, qubits={"q0": 1})],
        device_type="EMU_FREE",
    )
    row = batch.jobs.get()
    now = timezone.now()
    Job.objects.filter(pk=row.pk).update(status=JobStatus.RUNNING, start_timestamp=now)
    Job.objects.filter(pk=row.pk).update(lease_expires_at=now + timedelta(seconds=60))  # a heartbeat
    Job.objects.filter(pk=row.pk).update(status=JobStatus.PENDING, start_timestamp=None)  # a lost lease
    Job.objects.filter(pk=row.pk).update(status=JobStatus.CANCELED, end_timestamp=now)
    assert not JobRunTime.objects.exists()


def test_open_batches_waiting_for_jobs_are_counted_idle(member, devices):
    services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[],
        device_type="EMU_FREE",
        open=True,
    )
    samples = scrape()
    assert value(samples, "tweezer_open_batches", device="EMU_FREE") == 1
    assert value(samples, "tweezer_open_batches_idle", device="EMU_FREE") == 1


def test_each_worker_nodes_heartbeat_age_is_reported_and_a_clean_stop_removes_it(db):
    workers.beat("emu@host-a", queues=["device.EMU_FREE"], concurrency=2, started_at=timezone.now())
    samples = scrape()
    heartbeat = [k for k in samples if k[0] == "tweezer_worker_heartbeat_age_seconds"]
    assert len(heartbeat) == 1 and ("worker", "emu@host-a") in heartbeat[0][1]
    assert samples[heartbeat[0]] < 60
    workers._node.update(name="emu@host-a")
    workers.stop()
    workers._node.clear()
    assert not [k for k in scrape() if k[0] == "tweezer_worker_heartbeat_age_seconds"]


def test_every_metric_has_help_text_and_a_readme_entry():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in HELP if f"`{name}" not in readme]
    assert not missing, f"metrics missing from README's Metrics table: {missing}"
