"""Jobs: one parameter set of a batch's sequence, run for `runs` shots."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class JobStatus(models.TextChoices):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ERROR = "ERROR"
    CANCELED = "CANCELED"


TERMINAL_JOB_STATUSES = frozenset({JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELED})


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column indexes on batch and project: (batch, order) and (project, created_at, …)
    # start with them and serve the same lookups; each index costs every insert and update.
    batch = models.ForeignKey("batches.Batch", on_delete=models.CASCADE, related_name="jobs", db_index=False)
    # Copied from the batch so that project-wide listings need no join.
    project = models.ForeignKey("portal.Project", on_delete=models.PROTECT, related_name="jobs", db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs")
    order = models.PositiveIntegerField(help_text="Position in the batch: jobs run in this order.")
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.PENDING)
    runs = models.PositiveIntegerField()
    variables = models.JSONField(null=True, blank=True)
    sequence = models.TextField(null=True, blank=True, help_text="Per-job sequence, if any.")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries", db_index=False
    )
    errors = models.JSONField(null=True, blank=True)
    price = models.PositiveBigIntegerField(default=0, help_text="Credits charged for this job.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    start_timestamp = models.DateTimeField(null=True, blank=True)
    end_timestamp = models.DateTimeField(null=True, blank=True)
    # The lease: the worker running the job renews it; once expired the tick re-queues the job.
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    dispatches = models.PositiveIntegerField(
        default=0, help_text="Messages sent for this job since it last became pending: re-sends back off."
    )
    result_path = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at", "-order"]
        indexes = [
            models.Index(fields=["batch", "status"], name="job_batch_status"),
            # The page order of GET /jobs (newest first), of one project or of all the user's
            # projects. With `project` and `id` in the keys, a deep page's offset is skipped in
            # the index alone (index-only scan), then only its 100 rows are read (jobs.filters.page).
            models.Index(fields=["project", "-created_at", "-order", "id"], name="job_project_created_id"),
            models.Index(fields=["-created_at", "-order", "project", "id"], name="job_created_project_id"),
            # The lease reaper's (RUNNING jobs whose lease expired): PENDING and ended jobs, most
            # of the table, are not in it, so a submission's inserts do not touch it.
            models.Index(fields=["lease_expires_at"], name="job_running_lease", condition=models.Q(status="RUNNING")),
            # Only retries have a parent: index those alone (a job's retries, SET NULL on delete).
            models.Index(fields=["parent"], name="job_parent", condition=models.Q(parent__isnull=False)),
        ]
        # Its index is the (batch, order) index: a batch's jobs in order, and a job by position.
        constraints = [models.UniqueConstraint(fields=["batch", "order"], name="one_job_per_batch_position")]

    def __str__(self) -> str:
        return f"Job {self.id}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES


class ResultBlob(models.Model):
    """One result file, zlib-compressed, in the database (the default results storage,
    jobs.storage.DatabaseStorage): any machine that reaches the database reads it."""

    name = models.CharField(max_length=200, primary_key=True)
    data = models.BinaryField()
    size = models.PositiveBigIntegerField(help_text="Uncompressed size in bytes.")
    created_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name
