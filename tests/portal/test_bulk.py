"""Large submissions are written with COPY on PostgreSQL: the rows must equal what the ORM writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import DataError, IntegrityError, connection, transaction
from pulser import Pulse, Register, Sequence
from pulser.devices import AnalogDevice

from batches import services
from batches.models import Batch
from jobs.models import Job, JobStatus
from portal import credits
from portal.bulk import COPY_FROM, insert_rows
from portal.errors import InsufficientCredits, InvalidInput
from portal.models import CreditTransaction
from tests.sequences import analog_sequence

pytestmark = pytest.mark.django_db


def fixed_sequence() -> str:
    seq = Sequence(Register.rectangle(1, 2, spacing=6, prefix="q"), AnalogDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(Pulse.ConstantPulse(duration=100, amplitude=1, detuning=0, phase=0), "rydberg")
    return str(seq.to_abstract_repr())


def test_a_large_submission_stores_every_job_and_charge_as_the_orm_would(member: Any, devices: Any) -> None:
    n = COPY_FROM * 2
    sequence = analog_sequence()
    per_job = fixed_sequence()  # JSON text (quotes, braces) in a TEXT column
    jobs: list[dict[str, Any]] = [{"runs": 10 + i, "variables": {"omega_max": 1.0 + i / 100}} for i in range(n - 1)]
    jobs.append({"runs": 7, "sequence": per_job})
    batch = services.create_batch(member.project, member.user, sequence_builder=sequence, jobs=jobs)

    stored = list(Job.objects.filter(batch=batch).order_by("order"))
    assert [j.order for j in stored] == list(range(n))
    assert [j.runs for j in stored] == [spec["runs"] for spec in jobs]
    assert stored[3].variables == {"omega_max": 1.03}  # JSON, not a string of JSON
    assert stored[-1].variables is None and stored[-1].sequence == per_job
    assert all(j.status == JobStatus.PENDING and j.created_at and j.updated_at and j.attempts == 0 for j in stored)
    assert all(j.project_id == member.project.pk and j.user_id == member.user.pk for j in stored)

    charges = CreditTransaction.objects.filter(batch=batch, kind="CHARGE")
    assert charges.count() == n
    assert sorted(-c.amount for c in charges) == sorted(j.price for j in stored)
    assert all(c.user_id == member.user.pk and c.created_at for c in charges)


def test_text_with_copy_escapes_survives(member: Any, devices: Any) -> None:
    """Tabs, newlines, backslashes and quotes are COPY's escapes: they must come back unchanged."""
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=analog_sequence(),
        jobs=[{"runs": 1, "variables": {"omega_max": 1}}],
    )
    reason = 'tab\there, newline\nthere, back\\slash, "quotes", \\N and ünïcode'
    rows = [
        {"project_id": member.project.pk, "kind": "ADJUSTMENT", "amount": 0, "batch_id": batch.pk, "reason": reason}
        for _ in range(COPY_FROM)
    ]
    insert_rows(CreditTransaction, rows)
    stored = CreditTransaction.objects.filter(batch=batch, kind="ADJUSTMENT")
    assert stored.count() == COPY_FROM
    assert set(stored.values_list("reason", flat=True)) == {reason}


def test_a_second_charge_for_a_job_is_refused_by_the_database_with_copy_too(member: Any, devices: Any) -> None:
    """The one-charge-per-job constraint holds for COPY, as Django's IntegrityError (callers catch it)."""
    jobs = [{"runs": 1, "variables": {"omega_max": 1}} for _ in range(COPY_FROM)]
    batch = services.create_batch(member.project, member.user, sequence_builder=analog_sequence(), jobs=jobs)
    again = [
        {"project_id": member.project.pk, "kind": "CHARGE", "amount": -1, "job_id": job.pk, "batch_id": batch.pk}
        for job in Job.objects.filter(batch=batch)
    ]
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(CreditTransaction, again)
    assert CreditTransaction.objects.filter(batch=batch, kind="CHARGE").count() == COPY_FROM


def _empty_batch(member: Any, devices: Any, jobs_count: int = 0) -> Batch:
    """A batch for `_varied_rows` (jobs_count: how many of them the test leaves in it)."""
    return Batch.objects.create(
        project=member.project,
        user=member.user,
        device=devices["EMU_FREE"],
        sequence_builder=analog_sequence(),
        jobs_count=jobs_count,
    )


def _varied_rows(batch: Batch, member: Any, parent_id: Any) -> list[dict[str, Any]]:
    """Jobs whose columns vary in every way a submission's can: JSON or none, text with escapes, a parent."""
    specs = [
        services.JobSpec(runs=1 + i, variables={"omega_max": i / 7, "qubits": {"q0": i}}) for i in range(COPY_FROM)
    ]
    specs.append(services.JobSpec(runs=3, variables=None, sequence='tab\t"q"\n\\N ünï', parent_id=parent_id))
    rows = services._new_jobs(batch, specs, member.user, 0)
    rows[0]["dispatched_at"] = datetime(2026, 12, 2, 6, 0, 0, 123456, tzinfo=UTC)  # a time in one row only
    return rows


def test_rows_written_by_copy_equal_the_rows_bulk_create_writes(member: Any, devices: Any) -> None:
    created = services.create_batch(
        member.project,
        member.user,
        sequence_builder=analog_sequence(),
        jobs=[{"runs": 1, "variables": {"omega_max": 1}}],
    ).created_jobs
    assert created is not None
    parent = created[0]
    one, two = (_empty_batch(member, devices, COPY_FROM + 1) for _ in range(2))
    insert_rows(Job, _varied_rows(one, member, parent["id"]))  # COPY on PostgreSQL
    Job.objects.bulk_create([Job(**row) for row in _varied_rows(two, member, parent["id"])])

    def stored(batch: Batch) -> list[dict[str, Any]]:
        rows = [dict(row) for row in Job.objects.filter(batch=batch).order_by("order").values()]
        for row in rows:
            for key in ("id", "batch_id", "created_at", "updated_at"):
                row.pop(key)
        return rows

    assert len(stored(one)) == COPY_FROM + 1
    assert stored(one) == stored(two)
    # None is SQL NULL in both, not JSON null (which reads back as None too)
    for batch in (one, two):
        assert Job.objects.filter(batch=batch, variables__isnull=True).count() == 1


def test_a_job_refused_late_in_a_large_submission_creates_and_charges_nothing(member: Any, devices: Any) -> None:
    jobs: list[dict[str, Any]] = [{"runs": 5, "variables": {"omega_max": 1.0}} for _ in range(COPY_FROM * 2)]
    jobs[-3]["variables"] = {"omega_max": 1.0, "detuning": 2.0}  # not a variable of the sequence
    balance = credits.balance_of(member.project)
    with pytest.raises(InvalidInput, match=f"Job {COPY_FROM * 2 - 3}"):
        services.create_batch(member.project, member.user, sequence_builder=analog_sequence(), jobs=jobs)
    assert not Batch.objects.exists() and not Job.objects.exists()
    assert not CreditTransaction.objects.filter(kind="CHARGE").exists()
    assert credits.balance_of(member.project) == balance


def test_a_large_submission_the_project_cannot_pay_for_creates_nothing(make_member: Any, devices: Any) -> None:
    poor = make_member(credits=10)
    jobs = [{"runs": 5, "variables": {"omega_max": 1.0}} for _ in range(COPY_FROM * 2)]
    with pytest.raises(InsufficientCredits):
        services.create_batch(poor.project, poor.user, sequence_builder=analog_sequence(), jobs=jobs)
    assert not Batch.objects.exists() and not Job.objects.exists()
    assert credits.balance_of(poor.project) == 10


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite does not enforce a text column's length")
def test_a_text_too_long_for_its_column_is_refused_not_cut(member: Any, devices: Any) -> None:
    batch = _empty_batch(member, devices)
    rows = _varied_rows(batch, member, None)
    rows[5]["status"] = "PENDING-TOO-LONG"
    with pytest.raises(DataError), transaction.atomic():
        insert_rows(Job, rows)
    assert not Job.objects.filter(batch=batch).exists()


@pytest.mark.parametrize("n_jobs", [3, COPY_FROM * 2])
def test_jobs_are_validated_before_the_transaction_opens(
    member: Any, devices: Any, monkeypatch: pytest.MonkeyPatch, n_jobs: int
) -> None:
    """SQLite's one write lock must not be held while pulser builds 1,000 sequences, and a refused
    submission must have written nothing."""
    depths: list[int] = []  # atomic blocks open around the validation
    validate = services._validate_jobs

    def spy(*args: Any) -> None:
        depths.append(len(transaction.get_connection().atomic_blocks))
        validate(*args)

    monkeypatch.setattr(services, "_validate_jobs", spy)
    test_depth = len(transaction.get_connection().atomic_blocks)  # the test's own transaction
    jobs = [{"runs": 5, "variables": {"omega_max": 1.0}} for _ in range(n_jobs)]
    services.create_batch(member.project, member.user, sequence_builder=analog_sequence(), jobs=jobs)
    assert depths == [test_depth]
