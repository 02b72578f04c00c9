"""Random sequences of submit / add / close / cancel / complete / fail / timeout: the money always adds up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from batches import lifecycle, runner, scheduler, services
from batches.models import Batch
from jobs.models import Job, JobStatus
from portal.errors import Conflict, InsufficientCredits
from portal.models import CreditTransaction
from tests.reliability.conftest import money_problems
from tests.sequences import analog_sequence

pytestmark = pytest.mark.django_db

SEQUENCE = analog_sequence(2)
STEPS = {"count": 0}


def _jobs(n: int, runs: int) -> list[dict[str, Any]]:
    return [{"runs": runs, "variables": {"omega_max": 1.0}} for _ in range(n)]


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        from tests.factories import MembershipFactory, ProjectFactory

        self.member: Any = MembershipFactory(project=ProjectFactory(credits=2_000))  # factory_boy is untyped
        self.device = Batch._meta.get_field("device").related_model.objects.get(name="EMU_FREE")  # type: ignore[union-attr, attr-defined]  # stubs: type[Model]
        self.traveller = time_machine.travel(timezone.now(), tick=True)
        self.clock = self.traveller.start()
        self.refused = 0

    def teardown(self) -> None:
        self.traveller.stop()

    # --- helpers -------------------------------------------------------------------------

    def _batches(self) -> list[Batch]:
        return list(Batch.objects.filter(project=self.member.project).order_by("created_at"))

    def _jobs(self, status: str) -> list[Job]:
        return list(Job.objects.filter(project=self.member.project, status=status).order_by("created_at", "order"))

    # --- rules ---------------------------------------------------------------------------

    @rule(n=st.integers(1, 4), runs=st.integers(1, 400), is_open=st.booleans())
    def submit(self, n: int, runs: int, is_open: bool) -> None:
        try:
            services.create_batch(
                self.member.project,
                self.member.user,
                sequence_builder=SEQUENCE,
                jobs=_jobs(n, runs),
                device_type="EMU_FREE",
                open=is_open,
            )
        except InsufficientCredits:
            self.refused += 1

    @rule(index=st.integers(0, 20), n=st.integers(1, 3), runs=st.integers(1, 400))
    def add_jobs(self, index: int, n: int, runs: int) -> None:
        batches = [b for b in self._batches() if b.open]
        if batches:
            try:
                services.add_jobs(batches[index % len(batches)], _jobs(n, runs), by=self.member.user)
            except (InsufficientCredits, Conflict):
                self.refused += 1

    @rule(index=st.integers(0, 20))
    def close(self, index: int) -> None:
        batches = self._batches()
        if batches:
            services.close_batch(batches[index % len(batches)], by=self.member.user)

    @rule(index=st.integers(0, 50))
    def cancel_job(self, index: int) -> None:
        jobs = list(Job.objects.filter(project=self.member.project).order_by("created_at", "order"))
        if jobs:
            try:
                services.cancel_job(jobs[index % len(jobs)], by=self.member.user)
            except Conflict:
                pass

    @rule(index=st.integers(0, 20))
    def cancel_batch(self, index: int) -> None:
        batches = self._batches()
        if batches:
            try:
                services.cancel_batch(batches[index % len(batches)], by=self.member.user)
            except Conflict:
                pass

    def _claim_next(self) -> tuple[Job, str] | None:
        scheduler.advance(self.device.pk)
        for job in self._jobs(JobStatus.PENDING):
            owner = f"machine-{job.pk}"
            claimed = runner.claim(str(job.pk), owner)
            if claimed is not None:
                return claimed, owner
        return None

    @rule()
    def complete(self) -> None:
        claimed = self._claim_next()
        if claimed:
            lifecycle.end_job(claimed[0], claimed[1], JobStatus.DONE)

    @rule()
    def fail(self) -> None:
        """The backend failed: ERROR through runner.end_job, refunded."""
        claimed = self._claim_next()
        if claimed:
            lifecycle.end_job(claimed[0], claimed[1], JobStatus.ERROR, errors=["backend failed"], refund=True)

    @rule()
    def start_and_abandon(self) -> None:
        """A worker claims a job then dies: its lease will expire."""
        self._claim_next()

    @rule(seconds=st.sampled_from([1, 61, 301, 3600]))
    def timeout(self, seconds: int) -> None:
        """Time passes: expired leases are reaped, idle open batches time out."""
        self.clock.shift(timedelta(seconds=seconds))
        scheduler.reap_expired_leases()
        scheduler.advance(self.device.pk)

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def money_adds_up(self) -> None:
        STEPS["count"] += 1
        project = self.member.project
        project.refresh_from_db()
        total = project.transactions.aggregate(s=Sum("amount"))["s"] or 0
        assert project.balance == total >= 0, (project.balance, total)

    @invariant()
    def every_job_is_charged_once_and_refunded_only_if_not_done(self) -> None:
        project = self.member.project
        for job in Job.objects.filter(project=project):
            kinds = sorted(CreditTransaction.objects.filter(job=job).values_list("kind", flat=True))
            if job.status in (JobStatus.CANCELED,):
                assert kinds == ["CHARGE", "REFUND"], (job.status, kinds)
            elif job.status == JobStatus.ERROR:
                assert kinds in (["CHARGE", "REFUND"], ["CHARGE"]), kinds
            else:
                assert kinds == ["CHARGE"], (job.status, kinds)

    @invariant()
    def terminal_batches_hold_no_active_job(self) -> None:
        ended = Batch.objects.filter(project=self.member.project, status__in=["DONE", "CANCELED", "TIMED_OUT"])
        assert not Job.objects.filter(batch__in=ended, status=JobStatus.PENDING).exists()


def test_random_operations_keep_the_ledger_invariants(devices):
    STEPS["count"] = 0
    run_state_machine_as_test(
        LedgerMachine,
        settings=hypothesis_settings(
            max_examples=20,
            stateful_step_count=25,
            phases=[Phase.generate],  # no shrinking/explain: they trace every line (slow on 3.11)
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    print(f"\nFIGURE ledger state machine: 20 random programs, {STEPS['count']} steps checked, 0 violations")
    assert money_problems() == []
