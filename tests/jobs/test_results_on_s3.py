"""RESULTS_STORAGE=s3 against a real S3-protocol server (moto's, a separate process on 127.0.0.1):
a result is one object under RESULTS_S3_PREFIX, read back by every way a result is read; a
result file missing from the storage (S3 or the database) is a clear 404, never a 500."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from batches import services
from batches.models import Batch
from jobs.models import Job, JobStatus, ResultBlob
from jobs.results import read_result, result_name, store_result
from jobs.storage import results_storage
from tests.s3 import PREFIX, Bucket
from tests.sequences import job, seed_mappable_sequence

pytestmark = pytest.mark.django_db


def _done_batch(member: Any, counters: list[dict[str, int]]) -> Batch:
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[job(runs=sum(c.values()), qubits={"q0": 1}) for c in counters],
        device_type="EMU_FREE",
    )
    for row, counter in zip(batch.jobs.order_by("order"), counters, strict=True):
        path = store_result(row, {"counter": counter})
        Job.objects.filter(pk=row.pk).update(status=JobStatus.DONE, result_path=path)
    return batch


def _browser(member: Any) -> Client:
    client = Client()
    client.force_login(member.user)
    return client


def _results_link(member: Any, row: Job) -> str:
    """What the SDK follows: the signed link from the API, as a path on this server."""
    answer = Client().get(f"/core/api/v1/jobs/{row.pk}/results_link", HTTP_AUTHORIZATION=f"Bearer {member.token}")
    assert answer.status_code == 200, answer.content
    return urlsplit(answer.json()["data"]["results_link"]).path


def _zip(client: Client, batch: Batch) -> zipfile.ZipFile:
    response: Any = client.get(f"/batches/{batch.pk}/results.zip")
    assert response.status_code == 200
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_a_result_stored_on_s3_is_one_object_under_the_prefix_and_storing_again_replaces_it(
    member, devices, s3_bucket: Bucket
):
    batch = _done_batch(member, [{"01": 3}])
    row = batch.jobs.get()
    assert s3_bucket.keys() == [f"{PREFIX}/{result_name(row.pk)}"]
    assert read_result(row) == {"counter": {"01": 3}}

    store_result(row, {"counter": {"10": 4}})  # a re-run after a lost lease: the latest wins, in place
    assert s3_bucket.keys() == [f"{PREFIX}/{result_name(row.pk)}"]
    assert read_result(row) == {"counter": {"10": 4}}
    assert not ResultBlob.objects.exists(), "nothing went to the database storage"


def test_a_result_on_s3_is_read_by_the_job_page_its_download_the_results_link_and_the_zip(
    member, devices, s3_bucket: Bucket
):
    counters = [{"00": 5, "11": 7}, {"01": 2}]
    batch = _done_batch(member, counters)
    rows = list(batch.jobs.order_by("order"))
    client = _browser(member)

    page = client.get(f"/jobs/{rows[0].pk}/")
    assert page.status_code == 200 and "12 shots" in page.content.decode()
    download: Any = client.get(f"/jobs/{rows[0].pk}/results.json")
    assert download.status_code == 200 and download["Content-Disposition"].startswith("attachment")
    assert json.loads(b"".join(download.streaming_content)) == {"counter": counters[0]}

    linked: Any = Client().get(_results_link(member, rows[1]))
    assert linked.status_code == 200 and linked["Content-Type"] == "application/json"
    assert json.loads(b"".join(linked.streaming_content)) == {"counter": counters[1]}

    archive = _zip(client, batch)
    manifest = json.loads(archive.read("manifest.json"))["jobs"]
    assert [json.loads(archive.read(r["file"])) for r in manifest] == [{"counter": c} for c in counters]


@pytest.fixture(params=["database", "s3"])
def remove_result_file(request: pytest.FixtureRequest) -> Any:
    """Deletes a job's result file behind Tweezer's back, from the storage the test runs on."""
    if request.param == "database":
        return lambda row: ResultBlob.objects.filter(name=row.result_path).delete()
    bucket: Bucket = request.getfixturevalue("s3_bucket")
    return lambda row: bucket.delete(f"{PREFIX}/{row.result_path}")


def test_a_result_file_missing_from_the_storage_is_a_clear_404_on_every_path_not_a_500(
    member, devices, remove_result_file
):
    batch = _done_batch(member, [{"0": 1}, {"1": 2}])
    lost, kept = batch.jobs.order_by("order")
    remove_result_file(lost)
    client = _browser(member)
    told = f"The result file of job {lost.pk} ({lost.result_path}) is missing from the results storage"

    page = client.get(f"/jobs/{lost.pk}/")
    assert page.status_code == 200
    assert told in page.content.decode() and "Result file missing" in page.content.decode()

    download = client.get(f"/jobs/{lost.pk}/results.json")
    assert download.status_code == 404 and download.content.decode().startswith(told)

    linked = Client().get(_results_link(member, lost))
    assert linked.status_code == 404
    assert linked.json()["status"] == "fail" and linked.json()["message"].startswith(told)

    archive = _zip(client, batch)  # the zip goes on without it, and its manifests say why
    legacy = json.loads(archive.read("manifest.json"))["jobs"]
    assert [r["file"] is None for r in legacy] == [True, False]
    assert legacy[0]["errors"] == ["result file missing from the results storage"]
    assert json.loads(archive.read(legacy[1]["file"])) == {"counter": {"1": 2}}
    lines = [json.loads(line) for line in archive.read("manifest.jsonl").splitlines()]
    assert lines[0]["error"] == "result file missing from the results storage" and lines[1]["error"] is None
    assert kept.result_path


@contextlib.contextmanager
def endpoint_that_never_answers() -> Iterator[str]:
    """A 127.0.0.1 port that accepts connections and never sends a byte (a stalled S3 endpoint)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_a_stalled_s3_endpoint_fails_a_call_within_its_timeout_instead_of_holding_it_for_minutes(
    settings, s3_bucket: Bucket
):
    """RESULTS_S3_TIMEOUT × RESULTS_S3_ATTEMPTS bounds a call (botocore's own: 60 s × 5 tries)."""
    results = copy.deepcopy(settings.STORAGES["results"])
    results["OPTIONS"].update(timeout=1, attempts=2)
    with endpoint_that_never_answers() as endpoint:
        results["OPTIONS"]["endpoint_url"] = endpoint
        settings.STORAGES = {**settings.STORAGES, "results": results}
        started = time.monotonic()
        with pytest.raises(Exception, match="Read timeout"):
            results_storage().exists("jobs/x.json")
    assert time.monotonic() - started < 10  # two tries of one second and a back-off; botocore's own: minutes
