"""Issue 20, part 1: two worker "machines" that share nothing with the web process but
PostgreSQL and Redis (each its own TWEEZER_VAR_DIR and Celery node name) run a submission's
jobs, and every result is readable through the SDK, the job page, its download and the zip:
with the results in the database (the default), and in an S3 bucket (RESULTS_STORAGE=s3, a
real S3-protocol server, moto's, as a separate process that every machine reaches)."""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from backends.models import Device
from batches.models import Batch
from jobs.models import Job, ResultBlob
from jobs.results import result_name
from ops.models import WorkerHeartbeat
from tests.conftest import WorkerProcess, purge_broker, wait_until
from tests.s3 import PREFIX, Bucket
from tests.sequences import seed_mappable_sequence

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]


@contextlib.contextmanager
def emulator_queue_left_to_us() -> Iterator[bool]:
    """Keep every Celery node already running (the session's worker, which shares this
    process's var/) off the EMU_FREE queue while the two "machines" run: yields whether such a
    node exists (its beat then ticks for everyone). Asked with a patient timeout: a busy node
    that answered late would otherwise keep taking jobs."""
    from portal.celery import app

    others: list[str] = []
    for _ in range(3):
        try:
            others = sorted((app.control.inspect(timeout=5).active_queues() or {}).keys())
        except Exception:  # noqa: BLE001 - a broker without remote control: nobody to ask
            others = []
        if others:
            break
    if others:
        app.control.cancel_consumer("device.EMU_FREE", destination=others, reply=True, timeout=5)
    try:
        yield bool(others)
    finally:
        if others:
            app.control.add_consumer("device.EMU_FREE", destination=others, reply=True, timeout=5)


@pytest.fixture(params=["database", "s3"])
def results_storage(request: pytest.FixtureRequest, transactional_db: None) -> Bucket | None:
    """Where every machine keeps results: the database, or a bucket (this process, the web
    side, is pointed at it too; the workers get its RESULTS_* variables)."""
    if request.param == "database":
        return None
    bucket: Bucket = request.getfixturevalue("s3_bucket")
    return bucket


@pytest.fixture
def two_machines(
    transactional_db: None, devices: dict[str, Device], tmp_path: Path, results_storage: Bucket | None
) -> Iterator[list[tuple[WorkerProcess, Path]]]:
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        pytest.skip("needs a network broker (Redis): the file-system broker is a shared disk")
    # Four batches run at once, so that both machines get work.
    Device.objects.filter(name="EMU_FREE").update(slots=4)
    with emulator_queue_left_to_us() as tick_elsewhere:
        if not tick_elsewhere:
            purge_broker()
        machines: list[tuple[WorkerProcess, Path]] = []
        try:
            for index, name in enumerate(("machine-a", "machine-b")):
                var_dir = tmp_path / name
                var_dir.mkdir()
                proc = WorkerProcess(
                    var_dir / "worker.log",
                    concurrency=1,
                    beat=index == 0 and not tick_elsewhere,
                    name=name,
                    TWEEZER_VAR_DIR=str(var_dir),
                    **(results_storage.env if results_storage else {"RESULTS_STORAGE": "database"}),
                )
                machines.append((proc, var_dir))
            yield machines
        finally:
            for proc, _ in machines:
                proc.stop()


def _ran_jobs(log: Path) -> bool:
    return ".run_job[" in log.read_text()  # "Task batches.tasks.run_job[<id>] received"


def test_results_written_by_workers_on_other_machines_are_readable_by_sdk_page_and_zip(
    sdk: Any,
    member: Any,
    live_server: Any,
    two_machines: list[tuple[WorkerProcess, Path]],
    results_storage: Bucket | None,
) -> None:
    specs = [{"runs": 20 + i, "variables": {"omega_max": 1.0 + i / 10, "qubits": {"q0": 1, "q1": 5}}} for i in range(3)]
    ids = [sdk.create_batch(seed_mappable_sequence(), specs, device_type="EMU_FREE").id for _ in range(4)]
    wait_until(lambda: Batch.objects.filter(pk__in=ids, status="DONE").count() == len(ids), timeout=240)

    client = Client()
    client.force_login(member.user)
    for batch_id in ids:
        fetched = sdk.get_batch(batch_id)
        assert [job.status for job in fetched.ordered_jobs] == ["DONE"] * 3
        for job, spec in zip(fetched.ordered_jobs, specs, strict=True):
            assert sum(job.result.values()) == spec["runs"]  # the SDK follows the signed results link

        for row in Job.objects.filter(batch_id=batch_id):
            page = client.get(f"/jobs/{row.pk}/")
            assert page.status_code == 200 and f"{row.runs} shots" in page.content.decode()
            download: Any = client.get(f"/jobs/{row.pk}/results.json")  # a FileResponse: streamed
            assert sum(json.loads(b"".join(download.streaming_content))["counter"].values()) == row.runs

        response: Any = client.get(f"/batches/{batch_id}/results.zip")  # streamed
        archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
        manifest = json.loads(archive.read("manifest.json"))["jobs"]
        assert [sum(json.loads(archive.read(r["file"]))["counter"].values()) for r in manifest] == [
            s["runs"] for s in specs
        ]

    beating = set(WorkerHeartbeat.objects.values_list("name", flat=True))
    assert {name.split("@")[0] for name in beating} >= {"machine-a", "machine-b"}, "each node writes its heartbeat"
    machines = [proc for proc, _ in two_machines]
    assert all(_ran_jobs(proc.log_path) for proc in machines), "both machines ran jobs"
    for _, var_dir in two_machines:
        assert not list(var_dir.glob("results/**/*.json")), "no result was written to a machine's disk"
    names = sorted(result_name(pk) for pk in Job.objects.filter(batch_id__in=ids).values_list("pk", flat=True))
    if results_storage is None:
        assert sorted(ResultBlob.objects.values_list("name", flat=True)) == names
    else:
        assert results_storage.keys() == [f"{PREFIX}/{name}" for name in names], "one object per job, under the prefix"
        assert not ResultBlob.objects.exists(), "nothing went to the database storage"
