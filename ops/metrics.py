"""The Prometheus collector read from the database: one scrape of any web process tells the
state of every device and worker, whichever machines they run on.

Every figure comes from a few rows: the batches' per-status counters (batches migration 0004),
ops_jobruntime and ops_credittotal (kept by ops migration 0002's triggers) and the workers'
heartbeat rows. A scrape's result is cached METRICS_CACHE_SECONDS per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min, Q, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

ACTIVE = ("PENDING", "RUNNING")
ENDED = {"DONE": "done_jobs", "ERROR": "error_jobs", "CANCELED": "canceled_jobs"}

#: Every metric this collector exposes, with its help text (README's Metrics table says the same).
HELP = {
    "tweezer_device_slots": "Batches the device runs at once (its slots).",
    "tweezer_device_up": "1 while the device's status is UP, else 0.",
    "tweezer_jobs_pending": "Jobs waiting to run on the device (PENDING, in PENDING or RUNNING batches).",
    "tweezer_oldest_pending_job_age_seconds": "Age of the device's oldest PENDING job (0 when none waits).",
    "tweezer_jobs_running": "Jobs running on the device now.",
    "tweezer_slots_in_use": "The device's slots held by a batch (RUNNING, or ended with a job still running).",
    "tweezer_runnable_batches": "Batches that could run a job now: with pending or running jobs, at most the slots."
    " One worker process per runnable batch keeps the device busy (KEDA scales on it).",
    "tweezer_jobs_ended": "Jobs that ended on the device, per final status, since the batches were created.",
    "tweezer_job_run_seconds": "Run time of jobs that ended after running (start to end), per device.",
    "tweezer_open_batches": "Open batches (still accepting jobs) on the device.",
    "tweezer_open_batches_idle": "Open batches with no pending and no running job: waiting for more jobs.",
    "tweezer_open_batch_max_idle_seconds": "Longest time since an open batch last had a job added or ended.",
    "tweezer_worker_heartbeat_age_seconds": "Seconds since each Celery worker node last wrote its heartbeat.",
    "tweezer_worker_concurrency": "Worker processes of each Celery worker node.",
    "tweezer_credits_charged": "Credits charged for jobs (sum of CHARGE ledger rows, positive).",
    "tweezer_credits_refunded": "Credits refunded for jobs (sum of REFUND ledger rows).",
    "tweezer_metrics_scrape_seconds": "Time the database part of this scrape took.",
}


def _gauge(name: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, HELP[name], labels=labels)


def collect_families() -> list[Metric]:
    from backends.models import Device
    from batches.models import Batch
    from jobs.models import Job
    from ops.models import RUNTIME_BUCKETS, CreditTotal, JobRunTime, WorkerHeartbeat

    started = time.perf_counter()
    now = timezone.now()
    devices = {d.pk: d for d in Device.objects.only("id", "name", "slots", "status")}
    names = {pk: d.name for pk, d in devices.items()}
    families: dict[str, Any] = {
        name: _gauge(name, ["device"])
        for name in (
            "tweezer_device_slots",
            "tweezer_device_up",
            "tweezer_jobs_pending",
            "tweezer_oldest_pending_job_age_seconds",
            "tweezer_jobs_running",
            "tweezer_slots_in_use",
            "tweezer_runnable_batches",
            "tweezer_open_batches",
            "tweezer_open_batches_idle",
            "tweezer_open_batch_max_idle_seconds",
        )
    }
    live: dict[Any, Any] = {
        row["device_id"]: row
        for row in Batch.objects.filter(Q(status__in=ACTIVE) | Q(running_jobs__gt=0))
        .values("device_id")
        .annotate(
            pending=Sum("pending_jobs", filter=Q(status__in=ACTIVE)),
            running=Sum("running_jobs"),
            holding=Count("id", filter=Q(status="RUNNING") | Q(running_jobs__gt=0)),
            runnable=Count("id", filter=Q(pending_jobs__gt=0, status__in=ACTIVE) | Q(running_jobs__gt=0)),
            open_n=Count("id", filter=Q(open=True, status__in=ACTIVE)),
            open_idle=Count("id", filter=Q(open=True, status__in=ACTIVE, pending_jobs=0, running_jobs=0)),
            idle_since=Min("last_activity_at", filter=Q(open=True, status__in=ACTIVE)),
        )
    }
    oldest = dict(
        Job.objects.filter(status="PENDING", batch__status__in=ACTIVE, batch__pending_jobs__gt=0)
        .values("batch__device_id")
        .annotate(oldest=Min("created_at"))
        .values_list("batch__device_id", "oldest")
    )
    for pk, device in devices.items():
        row: dict[str, Any] = live.get(pk, {})
        label = [device.name]
        families["tweezer_device_slots"].add_metric(label, device.slots)
        families["tweezer_device_up"].add_metric(label, 1 if device.status == "UP" else 0)
        families["tweezer_jobs_pending"].add_metric(label, row.get("pending") or 0)
        first = oldest.get(pk)
        families["tweezer_oldest_pending_job_age_seconds"].add_metric(
            label, max(0.0, (now - first).total_seconds()) if first else 0.0
        )
        families["tweezer_jobs_running"].add_metric(label, row.get("running") or 0)
        families["tweezer_slots_in_use"].add_metric(label, row.get("holding") or 0)
        families["tweezer_runnable_batches"].add_metric(label, min(device.slots, row.get("runnable") or 0))
        families["tweezer_open_batches"].add_metric(label, row.get("open_n") or 0)
        families["tweezer_open_batches_idle"].add_metric(label, row.get("open_idle") or 0)
        idle = row.get("idle_since")
        families["tweezer_open_batch_max_idle_seconds"].add_metric(
            label, max(0.0, (now - idle).total_seconds()) if idle else 0.0
        )

    ended = CounterMetricFamily("tweezer_jobs_ended", HELP["tweezer_jobs_ended"], labels=["device", "status"])
    totals: dict[Any, Any] = {
        row["device_id"]: row
        for row in Batch.objects.values("device_id").annotate(**{s: Sum(c) for s, c in ENDED.items()})
    }
    for pk, name in names.items():
        for status in ENDED:
            ended.add_metric([name, status], (totals.get(pk) or {}).get(status) or 0)

    runtime = HistogramMetricFamily(
        "tweezer_job_run_seconds", HELP["tweezer_job_run_seconds"], labels=["device"], unit=""
    )
    per_device: dict[Any, dict[int, tuple[int, float]]] = {}
    for device_id, bucket, jobs, seconds in JobRunTime.objects.values_list("device_id", "bucket", "jobs", "seconds"):
        per_device.setdefault(device_id, {})[bucket] = (jobs, seconds)
    for pk, name in names.items():
        rows = per_device.get(pk, {})
        cumulative, buckets = 0, []
        for index, bound in [*enumerate(str(b) for b in RUNTIME_BUCKETS), (len(RUNTIME_BUCKETS), "+Inf")]:
            cumulative += rows.get(index, (0, 0.0))[0]
            buckets.append((bound, cumulative))
        runtime.add_metric([name], buckets, sum_value=sum(s for _, s in rows.values()))

    heartbeat = _gauge("tweezer_worker_heartbeat_age_seconds", ["worker", "hostname"])
    concurrency = _gauge("tweezer_worker_concurrency", ["worker", "hostname"])
    for name, hostname, seen_at, processes in WorkerHeartbeat.objects.values_list(
        "name", "hostname", "seen_at", "concurrency"
    ):
        heartbeat.add_metric([name, hostname], max(0.0, (now - seen_at).total_seconds()))
        concurrency.add_metric([name, hostname], processes)

    credits = dict(CreditTotal.objects.values_list("kind", "credits"))
    charged = CounterMetricFamily("tweezer_credits_charged", HELP["tweezer_credits_charged"])
    charged.add_metric([], -(credits.get("CHARGE") or 0))
    refunded = CounterMetricFamily("tweezer_credits_refunded", HELP["tweezer_credits_refunded"])
    refunded.add_metric([], credits.get("REFUND") or 0)

    took = GaugeMetricFamily("tweezer_metrics_scrape_seconds", HELP["tweezer_metrics_scrape_seconds"])
    took.add_metric([], time.perf_counter() - started)
    return [*families.values(), ended, runtime, heartbeat, concurrency, charged, refunded, took]


class DatabaseCollector(Collector):
    """prometheus_client's custom collector; the last collection is reused for a few seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = -1e18
        self._families: list[Metric] = []

    def describe(self) -> list[Metric]:
        return []  # nothing at registration: the database is read at scrape time only

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._at >= settings.METRICS_CACHE_SECONDS:
                try:
                    self._families = collect_families()
                finally:
                    if connection.in_atomic_block is False:
                        connection.close_if_unusable_or_obsolete()
                self._at = time.monotonic()
            families = list(self._families)
        yield from families


COLLECTOR = DatabaseCollector()
_REGISTERED = False


def register() -> None:
    """Add the database collector to prometheus_client's default registry (once per process)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from prometheus_client import REGISTRY

    REGISTRY.register(COLLECTOR)
    _REGISTERED = True


def exposition() -> bytes:
    """The whole scrape: django-prometheus's web metrics (every gunicorn worker's, when
    PROMETHEUS_MULTIPROC_DIR is set) and the database collector's."""
    import os

    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(COLLECTOR)
        return generate_latest(registry)
    register()
    return generate_latest(REGISTRY)
