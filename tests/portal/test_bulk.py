"""Large submissions are written with COPY on PostgreSQL: the rows must equal what the ORM writes."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction
from pulser import Pulse, Register, Sequence
from pulser.devices import AnalogDevice

from batches import services
from jobs.models import Job, JobStatus
from portal.bulk import COPY_FROM, insert_all
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
        CreditTransaction(project=member.project, kind="ADJUSTMENT", amount=0, batch=batch, reason=reason)
        for _ in range(COPY_FROM)
    ]
    insert_all(CreditTransaction, rows)
    stored = CreditTransaction.objects.filter(batch=batch, kind="ADJUSTMENT")
    assert stored.count() == COPY_FROM
    assert set(stored.values_list("reason", flat=True)) == {reason}


def test_a_second_charge_for_a_job_is_refused_by_the_database_with_copy_too(member: Any, devices: Any) -> None:
    """The one-charge-per-job constraint holds for COPY, as Django's IntegrityError (callers catch it)."""
    jobs = [{"runs": 1, "variables": {"omega_max": 1}} for _ in range(COPY_FROM)]
    batch = services.create_batch(member.project, member.user, sequence_builder=analog_sequence(), jobs=jobs)
    again = [
        CreditTransaction(project=member.project, kind="CHARGE", amount=-1, job=job, batch=batch)
        for job in Job.objects.filter(batch=batch)
    ]
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_all(CreditTransaction, again)
    assert CreditTransaction.objects.filter(batch=batch, kind="CHARGE").count() == COPY_FROM
