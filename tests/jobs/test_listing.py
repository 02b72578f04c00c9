"""GET /jobs: `total` is exact for every filter and page, and the body is JobOut's (spec §9)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backends.models import Device
from batches import services
from batches.models import Batch
from jobs.api import JobOut, job_json
from jobs.filters import COUNTED_FILTERS, JobFilter, batches_holding, filter_jobs, jobs_for, ordered
from jobs.models import Job, JobStatus
from portal.api import envelope, ok, render
from tests.factories import MembershipFactory, ProjectFactory
from tests.sequences import job, seed_mappable_sequence

pytestmark = pytest.mark.django_db
SEQUENCE = seed_mappable_sequence()


def _create(project: Any, user: Any, n: int, **options: Any) -> Batch:
    jobs = [job(runs=10 + i, qubits={"q0": 1}) for i in range(n)]
    return services.create_batch(project, user, sequence_builder=SEQUENCE, jobs=jobs, device_type="EMU_FREE", **options)


@pytest.fixture
def world(devices: Any, member: Any, make_member: Any) -> dict[str, Any]:
    """The member's two projects, with jobs made by every path that creates jobs; a stranger's batch."""
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    user, first = member.user, member.project
    second = ProjectFactory()
    MembershipFactory(user=user, project=second)
    colleague = make_member(project=second)
    closed = _create(first, user, 3)
    grown = _create(first, user, 2, open=True)
    grown = services.add_jobs(grown, [job(runs=30, qubits={"q0": 1})] * 2, by=user)
    services.retry_job(Job.objects.get(batch=grown, order=0), by=user)
    Job.objects.filter(batch=closed, order=1).update(status=JobStatus.ERROR, errors=["The backend failed."])
    grown = services.close_batch(grown, by=user)
    rebatched = services.rebatch(closed, by=user)
    theirs = _create(second, colleague.user, 2)
    stranger = make_member()
    elsewhere = _create(stranger.project, stranger.user, 4)
    return {
        "member": member,
        "projects": [first, second],
        "batches": [closed, grown, rebatched, theirs],
        "colleague": colleague,
        "elsewhere": elsewhere,
    }


def _get(member: Any, params: dict[str, Any]) -> dict[str, Any]:
    response = Client().get(
        "/core/api/v2/jobs?" + urlencode(params, doseq=True), headers={"Authorization": f"Bearer {member.token}"}
    )
    assert response.status_code == 200, response.content
    return dict(response.json())


def test_total_and_page_are_exact_for_every_filter_and_offset(world: dict[str, Any]) -> None:
    member = world["member"]
    first, second = (str(p.pk) for p in world["projects"])
    closed, grown, rebatched, theirs = (str(b.pk) for b in world["batches"])
    some_ids = [str(pk) for pk in Job.objects.filter(batch_id__in=[closed, theirs]).values_list("pk", flat=True)]
    cases: list[dict[str, Any]] = [
        {},
        {"project_id": [first]},
        {"project_id": [first, second]},
        {"project_id": [str(world["elsewhere"].project_id)]},
        {"batch_id": [grown]},
        {"batch_id": [closed, theirs, rebatched]},
        {"batch_id": [str(world["elsewhere"].pk)]},
        {"project_id": [second], "batch_id": [closed, theirs]},
        {"batch_id": [grown], "order_by": "creation_order", "order_by_direction": "ASC"},
        {"project_id": [first], "order_by_direction": "ASC"},
        {"status": ["ERROR"]},
        {"status": ["PENDING", "ERROR", "PENDING"], "project_id": [first]},
        {"status": ["DONE"], "batch_id": [grown, theirs]},
        {"status": ["ERROR"], "min_runs": 11},
        {"user_id": [str(world["colleague"].user.pk)]},
        {"user_id": ["not-a-number"]},
        {"errors": "False"},
        {"min_runs": 0},
        {"id": some_ids[:3]},
        {"batch_id": [grown], "start_date": (timezone.now() - timedelta(days=1)).isoformat()},
        {"project_id": [first], "start_date": (timezone.now() - timedelta(days=1)).isoformat()},
        {"end_date": (timezone.now() + timedelta(days=1)).isoformat(), "order_by_direction": "ASC"},
    ]
    for case in cases:
        f = JobFilter.model_validate(case)
        expected = list(ordered(filter_jobs(jobs_for(member.user), f), f).values_list("pk", flat=True))
        n = len(expected)
        for offset, limit in [(0, 100), (0, 1), (0, 2), (2, 2), (max(n - 1, 0), 2), (n, 2), (n + 3, 2), (1, n or 1)]:
            body = _get(member, {**case, "offset": offset, "limit": limit})
            page = expected[offset : offset + limit]
            assert [j["id"] for j in body["data"]] == [str(pk) for pk in page], (case, offset, limit)
            assert body["pagination"] == {"total": n, "offset": offset, "end": offset + len(page)}, (case, offset)


def test_the_sdks_ordered_jobs_loop_reads_every_job_once(world: dict[str, Any]) -> None:
    """Batch.ordered_jobs: `offset=end` while `end < total`, ascending creation order."""
    grown = world["batches"][1]
    seen, end, total = [], 0, None
    while total is None or end < total:
        query = {"batch_id": str(grown.pk), "order_by": "creation_order", "order_by_direction": "ASC"}
        body = _get(world["member"], {**query, "offset": end, "limit": 2})
        seen += [j["creation_order"] for j in body["data"]]
        end, total = body["pagination"]["end"], body["pagination"]["total"]
    assert seen == list(range(grown.jobs_count)) == list(range(5))


def test_ordered_jobs_pages_by_key_not_by_offset(world: dict[str, Any]) -> None:
    grown = world["batches"][1]
    query = {"batch_id": str(grown.pk), "order_by": "creation_order", "order_by_direction": "ASC"}
    with CaptureQueriesContext(connection) as queries:
        body = _get(world["member"], {**query, "offset": 3, "limit": 100})
    assert [j["creation_order"] for j in body["data"]] == [3, 4] and body["pagination"]["total"] == 5
    pages = [q["sql"] for q in queries.captured_queries if "jobs_job" in q["sql"]]
    assert len(pages) == 1 and "OFFSET" not in pages[0].upper(), pages


def test_batch_level_totals_are_read_from_the_batches_not_counted(world: dict[str, Any]) -> None:
    member, first = world["member"], world["projects"][0]
    with CaptureQueriesContext(connection) as queries:
        body = _get(member, {"project_id": str(first.pk), "offset": 100})
    assert body["pagination"]["total"] == Job.objects.filter(project=first).count() == 3 + 5 + 3
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert not any("jobs_job" in sql for sql in counts), counts


@pytest.mark.parametrize(
    "field",
    [
        {"id": ["6f1c3c8e-0000-4000-8000-000000000000"]},
        {"user_id": ["1"]},
        {"min_runs": 0},
        {"max_runs": 0},
        {"errors": False},
        {"start_date": "2024-01-01T00:00:00"},
        {"end_date": "2024-01-01T00:00:00"},
    ],
)
def test_any_job_level_filter_gets_an_exact_count(member: Any, field: dict[str, Any]) -> None:
    assert batches_holding(member.user, JobFilter.model_validate(field)) is None
    assert (
        batches_holding(member.user, JobFilter.model_validate({"project_id": [str(member.project_id)], **field}))
        is None
    )


def test_status_totals_are_read_from_the_batches_counters_not_counted(world: dict[str, Any]) -> None:
    member, first = world["member"], world["projects"][0]
    query = {"project_id": str(first.pk), "status": ["PENDING", "ERROR"], "offset": 100}
    with CaptureQueriesContext(connection) as queries:
        body = _get(member, query)
    expected = Job.objects.filter(project=first, status__in=["PENDING", "ERROR"]).count()
    assert body["pagination"]["total"] == expected == 3 + 5 + 3  # one of them ERROR
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert not any("jobs_job" in sql for sql in counts), counts


def test_every_filter_of_the_schema_is_classified(member: Any) -> None:
    """A field added to JobFilter is a job-level filter (exact count) unless listed as counted."""
    job_level = set(JobFilter.model_fields) - {"offset", "limit", "order_by", "order_by_direction"}
    job_level -= COUNTED_FILTERS
    assert job_level == {"id", "user_id", "min_runs", "max_runs", "errors", "start_date", "end_date"}
    assert (
        batches_holding(member.user, JobFilter.model_validate({"offset": 5, "limit": 3, "order_by": "created_at"}))
        is not None
    )


def test_a_deep_page_skips_its_offset_in_the_index_then_reads_its_rows(world: dict[str, Any]) -> None:
    member, first = world["member"], world["projects"][0]
    f = JobFilter.model_validate({"project_id": [str(first.pk)]})
    expected = [str(pk) for pk in ordered(filter_jobs(jobs_for(member.user), f), f).values_list("pk", flat=True)]
    with CaptureQueriesContext(connection) as queries:
        body = _get(member, {"project_id": str(first.pk), "offset": 4, "limit": 3})
    assert [j["id"] for j in body["data"]] == expected[4:7]
    (listing,) = [q["sql"] for q in queries.captured_queries if "jobs_job" in q["sql"]]
    assert listing.upper().count("SELECT") == 3, listing  # page, its ids (deferred join), membership


def test_the_listing_body_is_what_the_response_schema_renders(world: dict[str, Any]) -> None:
    member = world["member"]
    now = timezone.now()
    Job.objects.filter(batch=world["batches"][0], order=0).update(
        status=JobStatus.DONE, start_timestamp=now, end_timestamp=now
    )
    body = _get(member, {"limit": 100})
    jobs = list(ordered(jobs_for(member.user), JobFilter.model_validate({})))
    assert any(j.parent_id for j in jobs) and any(j.errors for j in jobs) and any(j.end_timestamp for j in jobs)
    schema = envelope(list[JobOut], paginated=True)
    pagination = {"total": len(jobs), "offset": 0, "end": len(jobs)}
    assert body == render(schema, ok([job_json(j) for j in jobs], pagination=pagination))
