"""Issue 18: the portal tells the truth at a glance (outcomes, live actions, open batches, job errors, downloads)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from batches import services
from batches.models import Batch
from jobs.models import Job, JobStatus
from jobs.results import store_result
from portal import credits
from tests.sequences import job, seed_mappable_sequence

pytestmark = pytest.mark.django_db


def _batch(member, n_jobs: int = 2, **kwargs) -> Batch:
    jobs = [job(omega=1.0 + i / 10, runs=10, qubits={"q0": 1, "q1": 5}) for i in range(n_jobs)]
    return services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=jobs,
        device_type="EMU_FREE",
        **kwargs,
    )


def _end(batch: Batch, status: str = "DONE", **jobs_by_status: list[int]) -> None:
    """Jobs by order to DONE (with a result), ERROR or CANCELED; the batch to `status`."""
    for order in jobs_by_status.get("done", []):
        row = batch.jobs.get(order=order)
        Job.objects.filter(pk=row.pk).update(
            status=JobStatus.DONE, result_path=store_result(row, {"counter": {"01": 10}})
        )
    batch.jobs.filter(order__in=jobs_by_status.get("error", [])).update(
        status=JobStatus.ERROR, errors=["QutipBackendV2 failed: amplitude too large"]
    )
    batch.jobs.filter(order__in=jobs_by_status.get("canceled", [])).update(status=JobStatus.CANCELED)
    now = timezone.now()
    Batch.objects.filter(pk=batch.pk).update(status=status, open=False, start_datetime=now, end_datetime=now)


@pytest.fixture
def client(member) -> Client:
    c = Client()
    c.force_login(member.user)
    return c


def _text(html: str, element_id: str) -> str:
    """The text of the element with this id (tags dropped, spaces collapsed)."""
    match = re.search(rf'<(\w+)[^>]*id="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, element_id
    return " ".join(re.sub(r"<[^>]+>", "", match.group(2)).split())


# --- 1. Failed work does not look successful --------------------------------------------------


def test_a_done_batch_whose_jobs_failed_reads_done_with_its_errors_in_the_list_and_on_its_page(member, devices, client):
    failed = _batch(member)
    _end(failed, error=[0, 1])
    listing = client.get(reverse("batches:list")).content.decode()
    assert 'DONE</span><span class="errors-note"> · 2 errors</span>' in listing
    # The bar is split by outcome: all red, nothing green.
    assert 'data-outcome="ERROR" x="0.00" width="100.00"' in listing
    assert 'data-outcome="DONE"' not in listing
    assert 'aria-label="2 jobs: 2 errors"' in listing
    page = client.get(reverse("batches:detail", args=[failed.pk])).content.decode()
    assert _text(page, "batch-status") == "DONE · 2 errors"


def test_the_progress_bar_shows_done_error_canceled_and_pending_jobs_apart(member, devices, client):
    mixed = _batch(member, n_jobs=4)
    _end(mixed, status="CANCELED", done=[0], error=[1], canceled=[2, 3])
    page = client.get(reverse("batches:detail", args=[mixed.pk])).content.decode()
    segments = re.findall(r'data-outcome="(\w+)" x="([\d.]+)" width="([\d.]+)"', page)
    assert segments == [("DONE", "0.00", "25.00"), ("ERROR", "25.00", "25.00"), ("CANCELED", "50.00", "50.00")]
    assert "1 done · 1 error · 2 canceled" in page  # the words, not the colours alone


def test_the_batches_list_filters_batches_that_have_failed_jobs(member, devices, client):
    failed, clean = _batch(member), _batch(member)
    _end(failed, done=[0], error=[1])
    _end(clean, done=[0, 1])
    with_errors = client.get(reverse("batches:list"), {"errors": "1"}).content.decode()
    assert str(failed.pk)[:8] in with_errors and str(clean.pk)[:8] not in with_errors
    without = client.get(reverse("batches:list"), {"errors": "0"}).content.decode()
    assert str(clean.pk)[:8] in without and str(failed.pk)[:8] not in without


def test_the_api_still_says_done_for_a_batch_with_failed_jobs(member, devices):
    failed = _batch(member)
    _end(failed, error=[0, 1])
    api = Client().get(f"/core/api/v2/batches/{failed.pk}", HTTP_AUTHORIZATION=f"Bearer {member.token}")
    assert api.status_code == 200
    assert api.json()["data"]["status"] == "DONE"


# --- 2. The live region refreshes everything that depends on the status ------------------------


def test_when_the_batch_ends_the_live_update_drops_cancel_and_offers_the_download(member, devices, client):
    batch = _batch(member)
    url = reverse("batches:detail", args=[batch.pk])
    live = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="cancel-batch"' in live and 'id="download-all"' not in live
    _end(batch, done=[0, 1])
    live = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="cancel-batch"' not in live and 'id="download-all"' in live
    assert 'id="batch-ended"' in live and "hx-trigger" not in live
    # The full page carries the actions only inside the live region.
    page = client.get(url).content.decode()
    live_region = page[page.index('id="batch-live"') : page.index("</section>", page.index('id="batch-live"'))]
    assert 'id="download-all"' in live_region and page.count('id="download-all"') == 1


def test_the_add_jobs_and_rebatch_forms_follow_the_status_without_wiping_what_is_typed(member, devices, client):
    batch = _batch(member, n_jobs=1, open=True)
    page = client.get(reverse("batches:detail", args=[batch.pk])).content.decode()
    assert 'id="add-jobs"' in page and 'id="rebatch"' not in page
    live_url = re.search(r'id="batch-live"[^>]*hx-get="([^"]+)"', page)
    assert live_url
    url = live_url.group(1).replace("&amp;", "&")
    quiet = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="batch-add-jobs" hx-swap-oob' not in quiet  # nothing changed: the form is left alone
    services.close_batch(batch, by=member.user)
    changed = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert re.search(r'<div id="batch-add-jobs" hx-swap-oob="true">\s*</div>', changed)  # the form goes
    assert re.search(r'id="batch-rebatch" hx-swap-oob="true">\s*<details class="card" id="rebatch">', changed)


# --- 4. Open batches say what they are doing ----------------------------------------------------


def test_an_idle_open_batch_says_it_accepts_jobs_and_when_it_closes(member, devices, client, settings):
    settings.OPEN_BATCH_TIMEOUT = 300
    batch = _batch(member, n_jobs=1, open=True)
    batch.jobs.update(status=JobStatus.DONE)
    idle_since = timezone.now() - timedelta(seconds=28)
    Batch.objects.filter(pk=batch.pk).update(status="RUNNING", start_datetime=idle_since, last_activity_at=idle_since)
    page = client.get(reverse("batches:detail", args=[batch.pk])).content.decode()
    state = _text(page, "open-state")
    assert re.fullmatch(r"open accepting jobs · closes in 04:3[12] if idle", state), state
    assert re.search(r'data-seconds="27[123]"', page)


def test_jobs_added_from_the_portal_are_checked_and_charged_as_the_apis(member, devices, client):
    batch = _batch(member, n_jobs=1, open=True)
    url = reverse("batches:add_jobs", args=[batch.pk])
    refused = client.post(url, {"jobs_text": "runs,omega_max\n10,1.0"})
    assert refused.status_code == 200
    html = refused.content.decode()
    assert "qubits" in _text(html, "add-jobs-errors")  # the sequence's own check, as the API says it
    assert "runs,omega_max\n10,1.0" in html  # what was typed stays
    assert Batch.objects.get(pk=batch.pk).jobs_count == 1
    added = client.post(url, {"jobs_text": 'runs,omega_max,qubits\n10,1.5,"{""q0"": 1, ""q1"": 5}"'}, follow=True)
    assert "1 job added to the batch." in added.content.decode()
    batch.refresh_from_db()
    assert batch.jobs_count == 2 and batch.credits_spent == 2 * 10 * devices["EMU_FREE"].price_per_run


def test_a_timed_out_batch_says_why_and_when(member, devices, client, settings):
    settings.OPEN_BATCH_TIMEOUT = 300
    batch = _batch(member, n_jobs=1, open=True)
    batch.jobs.update(status=JobStatus.DONE)
    now = timezone.now()
    Batch.objects.filter(pk=batch.pk).update(
        status="TIMED_OUT", open=False, last_activity_at=now - timedelta(minutes=5), end_datetime=now
    )
    page = client.get(reverse("batches:detail", args=[batch.pk])).content.decode()
    reason = _text(page, "timed-out-reason")
    assert reason.startswith(
        f"Timed out at {timezone.localtime(now):%H:%M:%S}: this open batch had no job to run for 5 min"
    )


# --- 5. A failed job's page: its error, its refund, its configuration ---------------------------


def test_a_failed_jobs_page_shows_the_error_the_refund_and_the_emulator_configuration(member, devices, client):
    batch = _batch(member, n_jobs=1, configuration={"dt": 10})
    row = batch.jobs.get()
    error = "QutipBackendV2 failed: <ValueError> amplitude 'omega' > 12.57 rad/µs"
    Job.objects.filter(pk=row.pk).update(status=JobStatus.ERROR, errors=[error])
    credits.refund_job(row, by=None, reason="The backend failed.")
    page = client.get(reverse("jobs:detail", args=[row.pk])).content.decode()
    assert "QutipBackendV2 failed: &lt;ValueError&gt; amplitude" in page
    assert "No results yet" not in page
    assert _text(page, "job-cost") == f"{row.price} credits refunded"
    ledger = page[page.index('id="job-ledger"') :]
    assert "REFUND" in ledger and "The backend failed." in ledger
    assert "&quot;dt&quot;: 10" in _text(page, "job-configuration") or '"dt": 10' in page


# --- 6. Whatever finished can be downloaded, and a selection spans pages -----------------------


def test_a_canceled_batch_offers_and_downloads_the_results_of_its_finished_jobs(member, devices, client):
    batch = _batch(member, n_jobs=3)
    _end(batch, status="CANCELED", done=[0, 1], canceled=[2])
    page = client.get(reverse("batches:detail", args=[batch.pk])).content.decode()
    assert "Download results (2 finished jobs)" in page
    response = client.get(reverse("batches:download", args=[batch.pk]))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    manifest = json.loads(archive.read("manifest.json"))
    assert sum(1 for row in manifest["jobs"] if row.get("file")) == 2


def test_download_selected_can_take_every_job_matching_the_filter_across_pages(member, devices, client):
    batch = _batch(member, n_jobs=60)  # two pages of 50
    _end(batch, done=list(range(60)))
    page = client.get(reverse("batches:detail", args=[batch.pk]), {"status": "DONE"}).content.decode()
    assert 'id="all-matching"' in page and "all 60 matching jobs, every page" in page
    response = client.post(reverse("batches:download", args=[batch.pk]), {"all_matching": "1", "status": "DONE"})
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert len(json.loads(archive.read("manifest.json"))["jobs"]) == 60


# --- 8. The new-batch form keeps what was given and speaks a physicist's words ------------------


def test_after_an_error_the_new_batch_form_keeps_the_uploaded_sequence_and_says_sequence(member, devices, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    sequence = seed_mappable_sequence()
    response = client.post(
        reverse("batches:new"),
        {
            "sequence": SimpleUploadedFile("seq.json", sequence.encode()),
            "jobs_text": "runs,omega_max\n10,1.0",  # no qubits for a mappable register: refused
            "device_type": "EMU_FREE",
        },
    )
    html = response.content.decode()
    assert not Batch.objects.exists()
    assert "qubits" in _text(html, "form-errors")
    # The sequence is now in the text area: sending the form again (jobs fixed) needs no upload.
    kept = re.search(r'<textarea name="sequence_text"[^>]*>\n?(.*?)</textarea>', html, re.S)
    assert kept and kept.group(1).replace("&quot;", '"') == sequence
    again = client.post(
        reverse("batches:new"),
        {
            "sequence_text": sequence,
            "jobs_text": 'runs,omega_max,qubits\n10,1.0,"{""q0"": 1}"',
            "device_type": "EMU_FREE",
        },
        follow=True,
    )
    assert "Batch created with 1 job" in again.content.decode()
    broken = client.post(
        reverse("batches:new"), {"sequence_text": '{"not": "a sequence"', "jobs_text": "[]", "device_type": "EMU_FREE"}
    ).content.decode()
    assert _text(broken, "form-errors").startswith("The sequence is not valid JSON:")


def test_a_down_device_is_listed_with_its_reason_but_cannot_be_picked(member, devices, client):
    from backends.models import Device

    Device.objects.filter(name="FRESNEL").update(status="DOWN", status_reason="Recalibrating the SLM")
    page = client.get(reverse("batches:new")).content.decode()
    assert re.search(r'<option value="FRESNEL" disabled[^>]*>FRESNEL — DOWN: Recalibrating the SLM</option>', page)
    refused = client.post(
        reverse("batches:new"),
        {"sequence_text": seed_mappable_sequence(), "jobs_text": "[]", "device_type": "FRESNEL"},
    ).content.decode()
    assert "FRESNEL is DOWN: Recalibrating the SLM." in refused
    assert not Batch.objects.exists()
