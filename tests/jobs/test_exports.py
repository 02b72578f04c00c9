"""Issue 21.2: export a filtered selection, across batches and pages, as one streamed zip with manifests."""

from __future__ import annotations

import csv
import io
import json
import tempfile
import tracemalloc
import zipfile
from typing import Any

import pytest
from django.test import Client

from batches import services
from batches.models import Batch
from jobs.downloads import iter_results_zip
from jobs.models import Job, JobStatus
from jobs.results import store_result
from tests.sequences import job, seed_mappable_sequence

pytestmark = pytest.mark.django_db


def make_batch(member: Any, n: int, *, tags: list[str]) -> Batch:
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[job(omega=1.0 + i, runs=10, qubits={"q0": 1}) for i in range(n)],
        device_type="EMU_FREE",
        tags=tags,
        validate=False,
    )
    for row in batch.jobs.order_by("order"):
        if row.order % 3 == 2:
            services.cancel_job(row, by=member.user)  # refunded: its credits are 0 in the manifest
        else:
            Job.objects.filter(pk=row.pk).update(
                status=JobStatus.DONE, result_path=store_result(row, {"counter": {"1": row.order + 1}})
            )
    return batch


def unzip(response: Any) -> zipfile.ZipFile:
    assert response.status_code == 200 and response.streaming
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_an_export_of_the_filtered_batches_holds_exactly_their_jobs_with_both_manifests(member, devices):
    scans = [make_batch(member, 4, tags=["scan"]), make_batch(member, 3, tags=["scan", "v2"])]
    make_batch(member, 2, tags=["calibration"])  # filtered out
    client: Any = Client()
    client.force_login(member.user)
    archive = unzip(client.get("/batches/export.zip?tag=scan"))
    expected = {str(j.pk) for j in Job.objects.filter(batch__in=scans)}

    lines = archive.read("manifest.jsonl").decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert {r["id"] for r in rows} == expected and len(rows) == 7
    table = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [r["id"] for r in table] == [r["id"] for r in rows]
    assert set(table[0]) == {
        "id", "batch_id", "order", "status", "runs", "variables", "error", "credits",
        "created_at", "start_timestamp", "end_timestamp", "file",
    }  # fmt: skip
    by_id = {r["id"]: r for r in rows}
    for j in Job.objects.filter(batch__in=scans):
        row = by_id[str(j.pk)]
        assert row["batch_id"] == str(j.batch_id) and row["variables"] == j.variables and row["runs"] == 10
        if j.status == JobStatus.CANCELED:
            assert row["credits"] == 0 and row["file"] is None
        else:
            assert row["credits"] == 10 and row["file"] == f"batches/{j.batch_id}/{j.order:05d}-{j.pk}.json"
            assert json.loads(archive.read(row["file"])) == {"counter": {"1": j.order + 1}}
    files = [n for n in archive.namelist() if n.startswith("batches/")]
    assert len(files) == sum(1 for r in rows if r["file"])


def test_an_export_of_a_batch_s_filtered_jobs_and_nobody_else_s(member, make_member, devices):
    batch = make_batch(member, 6, tags=[])
    client: Any = Client()
    client.force_login(member.user)
    archive = unzip(client.get(f"/batches/{batch.pk}/export.zip?status=CANCELED"))
    rows = [json.loads(line) for line in archive.read("manifest.jsonl").decode().splitlines()]
    assert [r["order"] for r in rows] == [2, 5] and all(r["status"] == "CANCELED" for r in rows)
    assert len(json.loads(archive.read("manifest.json"))["jobs"]) == 2

    stranger: Any = Client()
    stranger.force_login(make_member().user)
    assert stranger.get(f"/batches/{batch.pk}/export.zip").status_code == 404
    assert not [
        json.loads(line)
        for line in unzip(stranger.get("/batches/export.zip")).read("manifest.jsonl").decode().splitlines()
    ], "another project's export holds none of these jobs"
    assert Client().get("/batches/export.zip").status_code == 302, "the link needs a login"


def _exported_peak(jobs: Any) -> tuple[int, zipfile.ZipFile]:
    """The Python memory an export of `jobs` holds at its peak (tracemalloc), and the zip it made
    (written to a file as it comes, as a browser does: not counted)."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 - the ZipFile returned reads it
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for piece in iter_results_zip(jobs, per_batch=True):
            out.write(piece)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, zipfile.ZipFile(out)


def test_an_export_s_memory_does_not_grow_with_its_number_of_jobs(member, devices):
    """Issue 21.2: flat memory. Every job shares one stored result (as bench/portal_pages.py); both
    exports read more than one chunk of jobs (500), the most the export holds at once."""
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[job(omega=1.0, runs=1, qubits={"q0": 1})] * 3000,
        device_type="EMU_FREE",
        validate=False,
    )
    path = store_result(batch.jobs.get(order=0), {"counter": {"1": 1}})
    batch.jobs.update(status=JobStatus.DONE, result_path=path)
    jobs = Job.objects.filter(batch=batch)
    _exported_peak(jobs.filter(order__lt=10))  # warm-up: imports, compiled queries
    small, _ = _exported_peak(jobs.filter(order__lt=600))
    large, archive = _exported_peak(jobs)
    assert len([n for n in archive.namelist() if n.startswith("batches/")]) == 3000
    assert archive.testzip() is None and len(archive.read("manifest.jsonl").splitlines()) == 3000
    # Before: ~1 kB more per job (each member's ZipInfo, held for the central directory): +2.4 MB.
    assert large - small < 100_000, f"{small:,} B for 600 jobs, {large:,} B for 3,000"
