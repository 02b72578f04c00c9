"""An archived project keeps its history but runs nothing new (issue 17.6): every way in refuses."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from batches import services
from batches.models import Batch, Workload
from jobs.models import Job
from portal import credits
from portal.models import CreditTransaction, Project
from tests.sequences import seed_mappable_sequence

SEED = seed_mappable_sequence()
JOB = {"runs": 10, "variables": {"omega_max": 1.0, "qubits": {"q0": 1, "q1": 5}}}


def post(member: Any, path: str, body: Any) -> Any:
    return Client().post(
        path, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {member.token}"
    )


def archive(member: Any) -> None:
    Project.objects.filter(pk=member.project_id).update(status=Project.Status.ARCHIVED)


def assert_refused_as_archived(response: Any) -> None:
    assert response.status_code == 409, response.content
    assert "is archived: it accepts no new batches or jobs" in response.json()["message"]


def test_an_archived_project_refuses_new_batches_and_charges_nothing(devices, member):
    archive(member)
    balance = credits.balance_of(member.project)
    body = {"sequence_builder": SEED, "jobs": [JOB], "device_type": "EMU_FREE", "project_id": str(member.project_id)}
    assert_refused_as_archived(post(member, "/core/api/v1/batches", body))
    assert not Batch.objects.exists() and not Job.objects.exists()
    assert credits.balance_of(member.project) == balance
    assert not CreditTransaction.objects.exclude(kind="GRANT").exists()


def test_an_archived_project_refuses_new_workloads(devices, member):
    archive(member)
    body = {
        "workload_type": "pulser",
        "backend": "EMU_FREE",
        "config": {"sequence": SEED, "runs": 10, "variables": JOB["variables"]},
        "project_id": str(member.project_id),
    }
    assert_refused_as_archived(post(member, "/core/api/v1/workloads", body))
    assert not Workload.objects.exists() and not Job.objects.exists()


def test_an_open_batch_of_a_project_archived_since_takes_no_more_jobs(devices, member):
    batch = services.create_batch(
        member.project, member.user, sequence_builder=SEED, jobs=[JOB], device_type="EMU_FREE", open=True
    )
    archive(member)
    response = post(member, f"/core/api/v2/batches/{batch.pk}/jobs", [JOB])  # as the SDK sends it
    assert_refused_as_archived(response)
    assert Job.objects.filter(batch=batch).count() == 1
