"""Projects, their members, API tokens and the credit ledger."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Project(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "ACTIVE"
        ARCHIVED = "ARCHIVED"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Cached sum of the ledger, moved only in the transaction that writes a ledger row,
    # by a conditional UPDATE (`balance >= price`), so concurrent charges never overdraw.
    balance = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=Q(balance__gte=0), name="project_balance_not_negative")]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "MEMBER"
        ADMIN = "ADMIN"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "project"], name="one_membership_per_user_project")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class ApiToken(models.Model):
    """A bearer token. Only its SHA-256 is stored; the plain token is shown once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class CreditTransaction(models.Model):
    """One append-only ledger row. Positive amounts add credits, negative ones spend them."""

    class Kind(models.TextChoices):
        GRANT = "GRANT"
        CHARGE = "CHARGE"
        REFUND = "REFUND"
        ADJUSTMENT = "ADJUSTMENT"

    id = models.BigAutoField(primary_key=True)
    # No index of its own: ledger_project_created starts with it.
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="transactions", db_index=False)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    amount = models.BigIntegerField()
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.PROTECT, related_name="transactions")
    batch = models.ForeignKey(
        "batches.Batch", null=True, blank=True, on_delete=models.PROTECT, related_name="transactions"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The rows one action wrote together (a submission's charges, a cancel's refunds) share it:
    # the credits pages show them as one line ("30 jobs refunded, 6,000 credits"). Null on rows
    # written one at a time, and on rows from before it existed.
    action = models.UUIDField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="ledger_project_created"),
            models.Index(fields=["action"], name="ledger_action", condition=Q(action__isnull=False)),
        ]
        constraints = [
            # The database, not a check in Python, guarantees one charge and one refund per job.
            models.UniqueConstraint(
                fields=["job", "kind"],
                condition=Q(kind__in=["CHARGE", "REFUND"]),
                name="one_charge_and_one_refund_per_job",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} ({self.project})"


class SpendingCap(models.Model):
    """A member's spending limit in a project, set by a project ADMIN.

    Checked by `credits.charge_jobs` inside the submitting transaction, with this row locked:
    two submissions by the same member take turns, so together they never pass the cap.
    """

    class Period(models.TextChoices):
        MONTH = "MONTH", "per calendar month"
        TOTAL = "TOTAL", "in total"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="spending_caps")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="spending_caps")
    amount = models.BigIntegerField(help_text="Credits the member may spend in the period (charges minus refunds).")
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="one_spending_cap_per_member"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="spending_cap_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project}: {self.amount} {self.get_period_display()}"
