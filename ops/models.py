"""What the metrics read that no other table holds: job run times and worker heartbeats."""

from __future__ import annotations

from django.db import models

#: Upper bounds (seconds) of the job run time histogram's buckets; the last bucket is +Inf.
RUNTIME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class JobRunTime(models.Model):
    """Jobs that ended after running, per device and run time bucket (not cumulative): kept by
    database triggers on jobs_job (migration 0002) in the transaction that ends the job."""

    device = models.ForeignKey("backends.Device", on_delete=models.CASCADE, related_name="+", db_index=False)
    bucket = models.PositiveSmallIntegerField(help_text="Index in RUNTIME_BUCKETS; len(RUNTIME_BUCKETS) is +Inf.")
    jobs = models.BigIntegerField(default=0)
    seconds = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "bucket"], name="one_runtime_row_per_bucket")]


class WorkerHeartbeat(models.Model):
    """A Celery worker node, written by the node every WORKER_HEARTBEAT_SECONDS (ops.workers);
    deleted when it stops cleanly, so a row whose age grows is a lost worker."""

    name = models.CharField(max_length=200, unique=True, help_text="The Celery node name, e.g. emu@host-a.")
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name


class CreditTotal(models.Model):
    """Credits of every CHARGE and every REFUND ledger row ever written, per kind: kept by a
    database trigger on the ledger (migration 0002), so a scrape does not sum the ledger."""

    kind = models.CharField(max_length=12, unique=True)
    credits = models.BigIntegerField(default=0)
    entries = models.BigIntegerField(default=0, help_text="Ledger rows counted.")
