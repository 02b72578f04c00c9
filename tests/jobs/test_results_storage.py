"""Result files live in the database by default (compressed), so any machine reads them;
files written to the local disk by an older release are moved there by a migration; the S3
option is configured from the environment without importing boto3 until it is used."""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.core.files.base import ContentFile
from django.db import connection

from batches import services
from jobs.downloads import iter_results_zip
from jobs.models import Job, JobStatus, ResultBlob
from jobs.results import open_result, read_result, result_name, store_result
from jobs.storage import DatabaseStorage, results_storage
from tests.conftest import ROOT, worker_env
from tests.sequences import job, seed_mappable_sequence

pytestmark = pytest.mark.django_db


def _one_job(member: Any) -> Job:
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[job(runs=10, qubits={"q0": 1})],
        device_type="EMU_FREE",
    )
    return batch.jobs.get()


def test_a_stored_result_is_a_compressed_database_row_and_reads_back_whole(member, devices, settings):
    row = _one_job(member)
    counter = {format(i, "012b"): i % 7 + 1 for i in range(3000)}
    path = store_result(row, {"counter": counter})
    Job.objects.filter(pk=row.pk).update(status=JobStatus.DONE, result_path=path)
    row.refresh_from_db()

    assert isinstance(results_storage(), DatabaseStorage)
    blob = ResultBlob.objects.get(name=path)
    raw = json.dumps({"counter": counter}).encode()
    assert blob.size == len(raw) and len(bytes(blob.data)) < len(raw) / 3
    assert read_result(row) == {"counter": counter}
    assert not (Path(settings.VAR_DIR) / "results" / path).exists(), "nothing is written to the local disk"


def test_a_result_file_is_read_in_pieces_not_inflated_at_once(member, devices):
    row = _one_job(member)
    payload = {"counter": {format(i, "016b"): i for i in range(20_000)}}
    Job.objects.filter(pk=row.pk).update(result_path=store_result(row, payload))
    row.refresh_from_db()
    with open_result(row) as handle:
        first = handle.read(1000)
        rest = handle.read()
    assert len(first) == 1000
    assert json.loads(first + rest) == payload


def _stored_twice(member: Any) -> Job:
    """A job whose result was stored twice under its one name; the second one reads back."""
    row = _one_job(member)
    assert store_result(row, {"counter": {"0": 1}}) == result_name(row.pk)
    assert store_result(row, {"counter": {"1": 2}}) == result_name(row.pk)
    Job.objects.filter(pk=row.pk).update(result_path=result_name(row.pk))
    row.refresh_from_db()
    assert read_result(row) == {"counter": {"1": 2}}
    return row


def test_storing_a_result_again_replaces_the_first_one(member, devices):
    row = _stored_twice(member)
    assert ResultBlob.objects.filter(name=result_name(row.pk)).count() == 1


def test_storing_a_result_again_on_the_file_system_replaces_the_file_instead_of_renaming(
    member, devices, settings, tmp_path
):
    """The file system's storage would save a second file under a new name: the first goes first."""
    results = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}
    settings.STORAGES = {**settings.STORAGES, "results": results}
    row = _stored_twice(member)
    assert [p.name for p in (tmp_path / "jobs").iterdir()] == [f"{row.pk}.json"]


def test_the_database_storage_answers_existence_size_listing_and_deletion(db):
    storage = DatabaseStorage()
    assert storage.save("jobs/a.json", ContentFile(b'{"x": 1}')) == "jobs/a.json"
    assert storage.exists("jobs/a.json") and storage.size("jobs/a.json") == 8
    assert storage.listdir("jobs") == ([], ["a.json"])
    assert storage.listdir("") == (["jobs"], [])
    storage.delete("jobs/a.json")
    assert not storage.exists("jobs/a.json")
    with pytest.raises(FileNotFoundError):
        storage.open("jobs/a.json")


def test_the_migration_moves_result_files_from_the_local_disk_into_the_database(
    member, devices, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.LEGACY_RESULTS_DIR = tmp_path
    row = _one_job(member)
    name = result_name(row.pk)
    (tmp_path / "jobs").mkdir()
    (tmp_path / name).write_bytes(json.dumps({"counter": {"01": 10}}).encode())
    Job.objects.filter(pk=row.pk).update(status=JobStatus.DONE, result_path=name)
    row.refresh_from_db()
    assert not ResultBlob.objects.filter(name=name).exists()

    migration = importlib.import_module("jobs.migrations.0010_move_result_files")
    editor = type("Editor", (), {"connection": connection})()
    with django_capture_on_commit_callbacks(execute=True):
        migration.move_files(django_apps, editor)

    assert read_result(row) == {"counter": {"01": 10}}
    assert not (tmp_path / name).exists(), "the moved file is deleted once the migration commits"


def test_the_s3_option_is_configured_from_the_environment_without_importing_boto3():
    script = (
        "import sys, django; django.setup();"
        "from django.conf import settings;"
        "r = settings.STORAGES['results'];"
        "print(r['BACKEND'], r['OPTIONS']['bucket_name'], r['OPTIONS']['endpoint_url'], 'boto3' in sys.modules)"
    )
    env = worker_env(
        RESULTS_STORAGE="s3", RESULTS_S3_BUCKET="tweezer-results", RESULTS_S3_ENDPOINT_URL="http://127.0.0.1:9000"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["jobs.storage.s3_storage", "tweezer-results", "http://127.0.0.1:9000", "False"]


def test_an_unknown_results_storage_is_refused_at_start():
    env = worker_env(RESULTS_STORAGE="floppy")
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode != 0 and "RESULTS_STORAGE must be database, s3 or filesystem" in out.stderr


def test_a_zip_reads_its_result_files_from_the_database_a_chunk_per_query(
    member, devices, django_assert_max_num_queries
):
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[job(runs=10, qubits={"q0": 1}) for _ in range(60)],
        device_type="EMU_FREE",
    )
    for row in batch.jobs.all():
        Job.objects.filter(pk=row.pk).update(
            status=JobStatus.DONE, result_path=store_result(row, {"counter": {"1": 10}})
        )
    with django_assert_max_num_queries(10):
        data = b"".join(iter_results_zip(batch.jobs.all(), batch_id=batch.pk))
    assert len(zipfile.ZipFile(io.BytesIO(data)).namelist()) == 60 + 3  # the results and the three manifests
