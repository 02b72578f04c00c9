"""The results zip streams: one file at a time, with flat memory, and a manifest that matches."""

from __future__ import annotations

import io
import json
import random
import tracemalloc
import zipfile

import pytest

from batches import services
from jobs.downloads import iter_results_zip
from jobs.models import Job, JobStatus
from jobs.results import store_result
from tests.sequences import job, seed_mappable_sequence

pytestmark = pytest.mark.django_db


def test_a_zip_of_many_large_results_streams_with_memory_far_below_its_size(member, devices):
    n_jobs, bits = 200, 12
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[job(runs=10, qubits={"q0": 1}) for _ in range(n_jobs)],
        device_type="EMU_FREE",
    )
    rng = random.Random(7)
    raw_total = 0
    for row in batch.jobs.all():
        counter = {format(rng.getrandbits(bits), f"0{bits}b"): rng.randint(1, 999) for _ in range(2000)}
        raw_total += len(json.dumps({"counter": counter}))
        Job.objects.filter(pk=row.pk).update(status=JobStatus.DONE, result_path=store_result(row, {"counter": counter}))

    tracemalloc.start()
    chunks = 0
    archive_bytes = io.BytesIO()
    largest_chunk = 0
    for chunk in iter_results_zip(batch.jobs.all(), batch_id=batch.pk):
        chunks += 1
        largest_chunk = max(largest_chunk, len(chunk))
        archive_bytes.write(chunk)
        if chunks == 1:
            tracemalloc.reset_peak()  # measure the streaming itself, not the test's buffer growth
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert chunks > n_jobs, "the zip came out in one piece instead of file by file"
    assert largest_chunk < raw_total / 20
    # The peak includes the test's own BytesIO copy of the compressed archive; the streaming
    # side (ORM chunks, one result file, the manifest) stays far below the raw result size.
    assert peak - archive_bytes.tell() < raw_total / 4, (peak, raw_total)
    archive = zipfile.ZipFile(archive_bytes)
    manifest = json.loads(archive.read("manifest.json"))
    assert len(manifest["jobs"]) == n_jobs
    assert [row["order"] for row in manifest["jobs"]] == list(range(n_jobs))
    sample = manifest["jobs"][123]
    assert sum(json.loads(archive.read(sample["file"]))["counter"].values()) > 0


def test_jobs_without_results_are_listed_in_the_manifest_without_a_file(member, devices):
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[job(runs=10, qubits={"q0": 1}) for _ in range(2)],
        device_type="EMU_FREE",
    )
    first, second = batch.jobs.order_by("order")
    Job.objects.filter(pk=first.pk).update(
        status=JobStatus.DONE, result_path=store_result(first, {"counter": {"1": 10}})
    )
    Job.objects.filter(pk=second.pk).update(status=JobStatus.ERROR, errors=["boom"])
    archive = zipfile.ZipFile(io.BytesIO(b"".join(iter_results_zip(batch.jobs.all(), batch_id=batch.pk))))
    rows = json.loads(archive.read("manifest.json"))["jobs"]
    assert rows[0]["file"] in archive.namelist() and rows[0]["status"] == "DONE"
    assert rows[1] == {
        "id": str(second.pk),
        "order": 1,
        "status": "ERROR",
        "runs": 10,
        "variables": {"omega_max": 1.0, "qubits": {"q0": 1}},
        "errors": ["boom"],
        "file": None,
    }
    assert sorted(archive.namelist()) == sorted([rows[0]["file"], "manifest.json", "manifest.jsonl", "manifest.csv"])
