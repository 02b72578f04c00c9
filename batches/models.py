"""Batches: one sequence, one device, an ordered list of jobs."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models

from jobs.models import JobStatus


class BatchStatus(models.TextChoices):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ERROR = "ERROR"
    CANCELED = "CANCELED"
    TIMED_OUT = "TIMED_OUT"


TERMINAL_BATCH_STATUSES = frozenset({BatchStatus.DONE, BatchStatus.ERROR, BatchStatus.CANCELED, BatchStatus.TIMED_OUT})


class Priority(models.IntegerChoices):
    LOW = 0
    MEDIUM = 1
    HIGH = 2


#: The column of the batch row counting its jobs in each status (kept by migration 0004's triggers).
STATUS_COUNTERS = {status: f"{status.lower()}_jobs" for status in JobStatus.values}
#: Batch columns kept by the database's triggers, never by Python.
COUNTER_FIELDS = (*STATUS_COUNTERS.values(), "credits_spent")


class Batch(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("portal.Project", on_delete=models.PROTECT, related_name="batches")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="batches")
    device = models.ForeignKey("backends.Device", on_delete=models.PROTECT, related_name="batches")
    status = models.CharField(max_length=12, choices=BatchStatus.choices, default=BatchStatus.PENDING)
    open = models.BooleanField(default=False)
    priority = models.SmallIntegerField(choices=Priority.choices, default=Priority.MEDIUM)
    sequence_builder = models.TextField(null=True, blank=True)
    webhook = models.URLField(max_length=500, null=True, blank=True)
    configuration = models.JSONField(null=True, blank=True)
    backend_configuration = models.TextField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rebatches")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    start_datetime = models.DateTimeField(null=True, blank=True)
    end_datetime = models.DateTimeField(null=True, blank=True)
    # Last time a job was added or ended: an open batch idle past OPEN_BATCH_TIMEOUT times out.
    last_activity_at = models.DateTimeField(auto_now_add=True)
    # Number of jobs ever added: the next job's `order`.
    jobs_count = models.PositiveIntegerField(default=0)
    # The batch's jobs per status and the credits its CHARGE and REFUND rows add up to, kept
    # by database triggers on jobs_job and the ledger (migration 0004) in the transaction that
    # changes them, whatever code writes the rows: the batch page and every poll read them
    # here instead of counting 10,000 jobs. Never written by Python.
    # db_default too: a row written by SQL (a bulk load, an older release mid-upgrade) starts at 0.
    pending_jobs = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    running_jobs = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    done_jobs = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    error_jobs = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    canceled_jobs = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    credits_spent = models.BigIntegerField(default=0, db_default=0, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["device", "status", "-priority", "created_at"], name="batch_queue"),
            models.Index(fields=["project", "-created_at"], name="batch_project_created"),
            models.Index(fields=["status"], name="batch_status"),
            # Batches with a job running (the scheduler's draining slots): a handful, whatever the history.
            models.Index(fields=["device"], name="batch_job_running", condition=models.Q(running_jobs__gt=0)),
        ]

    #: Not a column. On the instance `services.create_batch` returns: its jobs' rows as written
    #: (`jobs.api.JOB_COLUMNS` keys), for an answer that does not read 1,000 jobs back.
    created_jobs: list[dict[str, Any]] | None = None

    def __str__(self) -> str:
        return f"Batch {self.id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # An update never writes the counters back: the triggers own them, and this
        # instance's copy may be older than the row (the admin's form, a long-lived object).
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name not in COUNTER_FIELDS
            ]
        super().save(*args, **kwargs)

    @property
    def job_counts(self) -> dict[str, int]:
        """Jobs per status, every status, as of when this instance was read (`refresh_counters`)."""
        return {status: getattr(self, column) for status, column in STATUS_COUNTERS.items()}

    def refresh_counters(self) -> None:
        """Read the counters again: the triggers move them with every job and ledger row written."""
        self.refresh_from_db(fields=COUNTER_FIELDS)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_BATCH_STATUSES

    @property
    def complete(self) -> bool:
        return not self.open


class IdempotentRequest(models.Model):
    """The first response to a request carrying an `Idempotency-Key`, replayed on a retry."""

    key = models.CharField(max_length=255)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="one_response_per_idempotency_key")]


#: The tag of a workload's batch, so the portal tells it from the batches a user submitted.
WORKLOAD_TAG = "workload"


class Workload(models.Model):
    """One standalone run on a backend (the SDK's create_workload), carried by a one-job closed batch.

    The batch does the work (queue, credits, leases, results); status and timestamps are read
    from its job (`batches/workloads.py`). `config` is stored as sent, for the response.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("portal.Project", on_delete=models.PROTECT, related_name="workloads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="workloads")
    batch = models.OneToOneField(Batch, on_delete=models.CASCADE, related_name="workload")
    workload_type = models.CharField(max_length=50)
    config = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "-created_at"], name="workload_project_created")]

    def __str__(self) -> str:
        return f"Workload {self.id}"


class WebhookEndpoint(models.Model):
    """A URL a project admin registered in the portal: every batch of the project that ends is
    POSTed there (signed, as a batch's own `webhook`)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("portal.Project", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["project", "url"], name="one_endpoint_per_project_url")]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One ended batch's summary to one URL (its own webhook or a project endpoint): the log the
    portal shows, and what a retry or a redelivery updates. `delivered_at`: answered below 500."""

    id = models.BigAutoField(primary_key=True)
    project = models.ForeignKey("portal.Project", on_delete=models.CASCADE, related_name="+", db_index=False)
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="webhook_deliveries", db_index=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    url = models.URLField(max_length=500)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="webhook_delivery_project")]
        # Its index is the (batch, url) one: a batch's deliveries, and the one a retry updates.
        constraints = [models.UniqueConstraint(fields=["batch", "url"], name="one_delivery_per_batch_url")]

    def __str__(self) -> str:
        return f"{self.batch_id} → {self.url}"

    @property
    def failed(self) -> bool:
        return self.delivered_at is None and (self.attempts > 0 or bool(self.error))
