"""Portal pages through Django's test client: membership (404), CSRF, query counts, actions."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from batches import services
from batches.models import Batch
from jobs.models import Job, JobStatus
from jobs.results import store_result
from portal import credits
from portal.models import CreditTransaction
from tests.sequences import job, seed_mappable_sequence

pytestmark = pytest.mark.django_db


def _batch(member, n_jobs: int = 3, **kwargs) -> Batch:
    jobs = [job(omega=1.0 + i / 10, runs=10 + i, qubits={"q0": 1, "q1": 5, "q2": 7}) for i in range(n_jobs)]
    return services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=jobs,
        device_type="EMU_FREE",
        **kwargs,
    )


def _finish(job_row: Job, counter: dict[str, int]) -> None:
    path = store_result(job_row, {"counter": counter})
    Job.objects.filter(pk=job_row.pk).update(status=JobStatus.DONE, result_path=path)


@pytest.fixture
def client_for():
    def make(member) -> Client:
        client = Client()
        client.force_login(member.user)
        return client

    return make


def test_every_page_renders_for_a_member(member, devices, client_for):
    batch = _batch(member)
    first = batch.jobs.order_by("order").first()
    assert first is not None  # typing: _batch() made 3 jobs
    _finish(first, {"000": 6, "101": 4})
    client = client_for(member)
    for url in [
        reverse("batches:list"),
        reverse("batches:new"),
        reverse("batches:detail", args=[batch.pk]),
        reverse("jobs:detail", args=[first.pk]),
        reverse("devices"),
        reverse("credits"),
        reverse("tokens"),
        reverse("password_change"),
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
    page = client.get(reverse("jobs:detail", args=[first.pk])).content.decode()
    assert 'id="register"' in page and page.count('class="trap used"') == 3
    assert 'id="histogram-data"' in page


@pytest.mark.parametrize("n_jobs", [3, 120])
def test_batch_pages_stay_under_50_queries_whatever_the_number_of_jobs(
    member, devices, client_for, django_assert_max_num_queries, n_jobs
):
    batch = _batch(member, n_jobs=n_jobs)
    for _ in range(3):
        _batch(member, n_jobs=2)
    some_job = batch.jobs.first()
    assert some_job is not None  # typing: _batch() made jobs
    client = client_for(member)
    for url in [
        reverse("batches:list"),
        reverse("batches:detail", args=[batch.pk]),
        reverse("jobs:detail", args=[some_job.pk]),
        reverse("devices"),
        reverse("credits"),
        reverse("tokens"),
    ]:
        with django_assert_max_num_queries(50):
            assert client.get(url).status_code == 200
    with django_assert_max_num_queries(50):
        assert client.get(reverse("batches:detail", args=[batch.pk]), HTTP_HX_REQUEST="true").status_code == 200


def test_another_projects_batch_and_job_are_404_and_its_actions_do_nothing(member, make_member, devices, client_for):
    batch = _batch(member)
    some_job = batch.jobs.first()
    assert some_job is not None  # typing: _batch() made jobs
    stranger = client_for(make_member())
    for url in [
        reverse("batches:detail", args=[batch.pk]),
        reverse("jobs:detail", args=[some_job.pk]),
        reverse("jobs:download", args=[some_job.pk]),
        reverse("batches:download", args=[batch.pk]),
    ]:
        assert stranger.get(url).status_code == 404, url
    for url in [
        reverse("batches:cancel", args=[batch.pk]),
        reverse("batches:close", args=[batch.pk]),
        reverse("batches:cancel_jobs", args=[batch.pk]),
        reverse("batches:rebatch", args=[batch.pk]),
        reverse("batches:retry", args=[batch.pk, some_job.pk]),
    ]:
        assert stranger.post(url, {"job": [str(some_job.pk)]}).status_code == 404, url
    assert Batch.objects.get(pk=batch.pk).status == "PENDING"
    assert not CreditTransaction.objects.filter(kind="REFUND").exists()


def test_posts_without_the_csrf_token_are_refused(member, devices):
    batch = _batch(member)
    client = Client(enforce_csrf_checks=True)
    client.force_login(member.user)
    response = client.post(reverse("batches:cancel", args=[batch.pk]))
    assert response.status_code == 403
    assert Batch.objects.get(pk=batch.pk).status == "PENDING"


def test_cancel_selected_jobs_reports_the_refund(member, devices, client_for):
    batch = _batch(member, n_jobs=3)
    jobs = list(batch.jobs.order_by("order"))
    client = client_for(member)
    response = client.post(
        reverse("batches:cancel_jobs", args=[batch.pk]), {"job": [str(jobs[0].pk), str(jobs[2].pk)]}, follow=True
    )
    refunded = jobs[0].price + jobs[2].price
    assert f"2 jobs canceled, {refunded} credits refunded." in response.content.decode()
    assert list(batch.jobs.order_by("order").values_list("status", flat=True)) == ["CANCELED", "PENDING", "CANCELED"]


def test_all_results_zip_needs_a_finished_job_and_holds_every_result_and_a_manifest(member, devices, client_for):
    batch = _batch(member, n_jobs=2)
    client = client_for(member)
    refused = client.get(reverse("batches:download", args=[batch.pk]), follow=True)
    assert "No job of this batch has finished with results yet" in refused.content.decode()
    jobs = list(batch.jobs.order_by("order"))
    _finish(jobs[0], {"000": 10})
    _finish(jobs[1], {"111": 11})
    Batch.objects.filter(pk=batch.pk).update(status="DONE")
    response = client.get(reverse("batches:download", args=[batch.pk]))
    assert response.streaming
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    manifest = json.loads(archive.read("manifest.json"))
    assert [row["id"] for row in manifest["jobs"]] == [str(j.pk) for j in jobs]
    assert json.loads(archive.read(manifest["jobs"][1]["file"])) == {"counter": {"111": 11}}


def test_new_batch_form_shows_the_apis_validation_message_and_creates_nothing(member, devices, client_for):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = client_for(member)
    response = client.post(
        reverse("batches:new"),
        {
            "sequence": SimpleUploadedFile("seq.json", b'{"not": "a sequence"'),
            "jobs_text": '[{"runs": 10}]',
            "device_type": "EMU_FREE",
        },
    )
    assert response.status_code == 200
    assert "not valid JSON" in response.content.decode()
    assert not Batch.objects.exists()
    ok = client.post(
        reverse("batches:new"),
        {
            "sequence": SimpleUploadedFile("seq.json", seed_mappable_sequence().encode()),
            "jobs": SimpleUploadedFile("jobs.json", json.dumps([job(runs=12, qubits={"q0": 3})]).encode()),
            "device_type": "EMU_FREE",
            "tags": "scan, test",
        },
        follow=True,
    )
    batch = Batch.objects.get()
    assert batch.tags == ["scan", "test"] and batch.jobs_count == 1
    assert "Batch created with 1 job" in ok.content.decode()


def test_a_member_sees_the_balance_their_usage_and_cap_but_not_others_spending_nor_the_ledger(
    member, make_member, devices, client_for
):
    """Issue 21.4: "the credits page shows balance for every member"; the ledger and what other
    members spent stay for project ADMINs."""
    plain = make_member(role="MEMBER", project=member.project)
    services.create_batch(
        member.project, member.user, sequence_builder=seed_mappable_sequence(),
        jobs=[job(runs=70, qubits={"q0": 1})], device_type="EMU_FREE", validate=False,
    )  # fmt: skip
    services.create_batch(
        member.project, plain.user, sequence_builder=seed_mappable_sequence(),
        jobs=[job(runs=20, qubits={"q0": 1})], device_type="EMU_FREE", validate=False,
    )  # fmt: skip
    credits.set_cap(member.project, plain.user, 50, "MONTH", by=member.user)
    client = client_for(plain)
    page = client.get(reverse("credits")).content.decode()
    balance = credits.balance_of(member.project)
    assert f'id="balance">{balance}<' in page and balance == 100_000 - 90
    assert 'id="spent-30d">20<' in page, "their own spending, not the project's 90"
    assert 'id="cap-left">30<' in page and "of 50 per calendar month (20 used)" in page
    assert 'id="ledger"' not in page and member.user.username not in page
    assert client.get(reverse("credits_csv")).status_code == 404
    admin_page = client_for(member).get(reverse("credits")).content.decode()
    assert 'id="ledger"' in admin_page
    csv_response = client_for(member).get(reverse("credits_csv"))
    assert b"GRANT" in b"".join(csv_response.streaming_content)


def test_token_is_shown_once_then_only_its_prefix_and_can_be_revoked(member, client_for):
    client = client_for(member)
    page = client.post(reverse("tokens"), {"name": "laptop"}, follow=True).content.decode()
    token = member.user.api_tokens.get(name="laptop")
    start = page.index('id="token-value">') + len('id="token-value">')
    plain = page[start : page.index("<", start)]
    assert plain.startswith(token.prefix) and len(plain) > 30
    again = client.get(reverse("tokens")).content.decode()
    assert plain not in again and token.prefix in again
    client.post(reverse("token_revoke", args=[token.pk]))
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_retry_close_and_rebatch_call_the_services_and_report_what_they_did(member, devices, client_for):
    batch = _batch(member, n_jobs=2, open=True)
    jobs = list(batch.jobs.order_by("order"))
    client = client_for(member)
    page = client.post(reverse("batches:retry", args=[batch.pk, jobs[0].pk]), follow=True).content.decode()
    assert f"Job #0 retried as job #2, charged {jobs[0].price} credits." in page
    copy = batch.jobs.get(order=2)
    assert copy.parent_id == jobs[0].pk and copy.runs == jobs[0].runs

    refused = client.post(reverse("batches:rebatch", args=[batch.pk]), follow=True).content.decode()
    assert "still open" in refused
    closed = client.post(reverse("batches:close", args=[batch.pk]), follow=True).content.decode()
    assert "Batch closed" in closed and not Batch.objects.get(pk=batch.pk).open

    response = client.post(reverse("batches:rebatch", args=[batch.pk]), {"min_runs": 11}, follow=True)
    new = Batch.objects.get(parent=batch)
    assert list(new.jobs.order_by("order").values_list("runs", flat=True)) == [11]
    assert f"Rebatched 1 job of batch {str(batch.pk)[:8]}" in response.content.decode()
    assert response.redirect_chain[-1][0] == reverse("batches:detail", args=[new.pk])


def test_batches_list_filters_by_status_tag_and_open(member, devices, client_for):
    tagged = _batch(member, n_jobs=1, tags=["scan"])
    _batch(member, n_jobs=1, open=True)
    client = client_for(member)
    by_tag = client.get(reverse("batches:list"), {"tag": "scan"}).content.decode()
    assert by_tag.count('class="mono" href="/batches/') == 1 and str(tagged.pk)[:8] in by_tag
    open_only = client.get(reverse("batches:list"), {"open": "1"}).content.decode()
    assert open_only.count('class="mono" href="/batches/') == 1 and str(tagged.pk)[:8] not in open_only
    none = client.get(reverse("batches:list"), {"status": "DONE"}).content.decode()
    assert "No batch matches these filters" in none


def _live_attrs(html: str) -> tuple[str, str]:
    import re

    # Refreshed on the batch's server-sent event (issue 19), and by a backed-off poll as the fallback.
    match = re.search(r'id="batch-live"[^>]*hx-get="([^"]+)" hx-trigger="sse:batch, every (\d+)s"', html)
    assert match, "the live region does not poll"
    return match.group(1).replace("&amp;", "&"), match.group(2)


def test_live_region_backs_off_while_nothing_changes_and_stops_when_terminal(member, devices, client_for):
    batch = _batch(member, n_jobs=2)
    client = client_for(member)
    url, every = _live_attrs(client.get(reverse("batches:detail", args=[batch.pk])).content.decode())
    assert every == "2"
    intervals = []
    for _ in range(4):
        url, every = _live_attrs(client.get(url, HTTP_HX_REQUEST="true").content.decode())
        intervals.append(int(every))
    assert intervals == [4, 8, 16, 20]
    services.cancel_jobs(batch, batch.jobs.filter(order=0), by=member.user)
    url, every = _live_attrs(client.get(url, HTTP_HX_REQUEST="true").content.decode())
    assert every == "2", "a change resets the polling interval"
    services.cancel_batch(batch, by=member.user)
    final = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="batch-live"' in final and "hx-trigger" not in final


def test_project_switcher_changes_the_batches_shown_and_refuses_foreign_projects(
    member, make_member, devices, client_for
):
    from tests.factories import MembershipFactory

    mine = _batch(member, n_jobs=1)
    second = make_member()
    MembershipFactory(user=member.user, project=second.project)
    theirs = _batch(second, n_jobs=1)
    client = client_for(member)
    first_project = client.get(reverse("batches:list")).content.decode()
    assert 'id="project-switch"' in first_project
    client.post(reverse("switch_project"), {"project_id": str(second.project_id)})
    switched = client.get(reverse("batches:list")).content.decode()
    assert str(theirs.pk)[:8] in switched and str(mine.pk)[:8] not in switched
    outsider = make_member()
    assert client.post(reverse("switch_project"), {"project_id": str(outsider.project_id)}).status_code == 404
    assert client.post(reverse("switch_project"), {"project_id": "not-a-uuid"}).status_code == 404


def test_job_errors_are_shown_verbatim(member, devices, client_for):
    batch = _batch(member, n_jobs=1)
    error = "QutipEmulator failed: <ValueError> amplitude 'omega' > 12.57 rad/µs\n  at step 3"
    Job.objects.filter(batch=batch).update(status=JobStatus.ERROR, errors=[error])
    page = client_for(member).get(reverse("jobs:detail", args=[batch.jobs.get().pk])).content.decode()
    assert "QutipEmulator failed: &lt;ValueError&gt; amplitude &#x27;omega&#x27; &gt; 12.57 rad/µs\n  at step 3" in page


def test_new_batch_form_reads_a_table_of_variables_and_reports_the_apis_errors(member, devices, client_for):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = client_for(member)

    def submit(table: str):
        return client.post(
            reverse("batches:new"),
            {
                "sequence": SimpleUploadedFile("seq.json", seed_mappable_sequence().encode()),
                "jobs_text": table,
                "device_type": "EMU_FREE",
            },
            follow=True,
        )

    bad = submit('runs,omega_max,qubits\n0,1.5,"{""q0"": 1}"').content.decode()
    assert "Job 0: &#x27;runs&#x27; must be between 1 and" in bad
    assert not Batch.objects.exists()
    submit('runs\tomega_max\tqubits\n10\t1.5\t{"q0": 1}\n20\t2.5\t{"q0": 2, "q1": 4}')
    batch = Batch.objects.get()
    specs = list(batch.jobs.order_by("order").values_list("runs", "variables"))
    assert specs == [
        (10, {"omega_max": 1.5, "qubits": {"q0": 1}}),
        (20, {"omega_max": 2.5, "qubits": {"q0": 2, "q1": 4}}),
    ]


def test_batches_list_counts_at_most_the_cap_and_still_pages(member, devices, client_for, monkeypatch):
    from batches.views import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "COUNT_CAP", 30)
    for _ in range(2):
        _batch(member, n_jobs=1)
    Batch.objects.bulk_create(
        [Batch(project=member.project, user=member.user, device=devices["EMU_FREE"]) for _ in range(40)]
    )
    client = client_for(member)
    first = client.get(reverse("batches:list")).content.decode()
    assert "more than 30 in all" in first and first.count('class="mono" href="/batches/') == 25
    second = client.get(reverse("batches:list"), {"page": 2}).content.decode()
    # Beyond the cap, pages stop: older batches are reached with the date filters.
    assert second.count('class="mono" href="/batches/') == 6
    assert "use the filters" in second


def test_password_change_page_changes_the_password_and_says_so(member, client_for):
    client = client_for(member)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": "correct-horse-battery",
            "new_password1": "battery-staple-horse-9",
            "new_password2": "battery-staple-horse-9",
        },
        follow=True,
    )
    assert "Your password was changed." in response.content.decode()
    member.user.refresh_from_db()
    assert member.user.check_password("battery-staple-horse-9")


def test_a_fixed_register_is_drawn_with_every_atom_used(member, devices, client_for):
    from tests.sequences import analog_sequence

    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=analog_sequence(3),
        jobs=[{"runs": 10, "variables": {"omega_max": 1.0}}],
        device_type="EMU_FREE",
    )
    page = client_for(member).get(reverse("jobs:detail", args=[batch.jobs.get().pk])).content.decode()
    assert page.count('class="trap used"') == 3 and 'class="trap"' not in page
    assert "3 atoms" in page


def _row(html: str, job_id: object) -> str:
    start = html.index(f'<tr data-job="{job_id}">')
    return html[start : html.index("</tr>", start)]


def test_batch_page_rows_show_each_jobs_columns_links_and_actions(member, devices, client_for):
    """The rows are built in Python (portal/templatetags/tweezer.py, job_rows): what each one shows."""
    batch = _batch(member, n_jobs=2, open=True)
    first, second = batch.jobs.order_by("order")
    _finish(first, {"00": 1})
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    Job.objects.filter(pk=first.pk).update(start_timestamp=started, variables={"label": "<b>&"})
    Job.objects.filter(pk=second.pk).update(parent=first)
    page = client_for(member).get(reverse("batches:detail", args=[batch.pk])).content.decode()

    row = _row(page, first.pk)
    assert f'<a class="mono" href="{reverse("jobs:detail", args=[first.pk])}">{str(first.pk)[:8]}</a></td>' in row
    assert '<span class="badge status-done">DONE</span>' in row
    assert f'<td class="num">{first.runs}</td>' in row
    assert '<td class="mono small vars">{&quot;label&quot;: &quot;&lt;b&gt;&amp;&quot;}</td>' in row
    assert '<td class="small">03:04:05</td>\n      <td class="small">—</td>' in row
    assert f'href="{reverse("jobs:download", args=[first.pk])}" download aria-label="Download results of job 0"' in row
    retry = reverse("batches:retry", args=[batch.pk, first.pk])
    assert f'<form method="post" action="{retry}"><input type="hidden" name="csrfmiddlewaretoken" value="' in row
    assert f"charged {first.price} credits." in row

    other = _row(page, second.pk)
    assert f'title="retry of {first.pk}">retry</span>' in other and "results.json" not in other
    assert '<span class="badge status-pending">PENDING</span>' in other and '<td class="small">—</td>' in other

    services.close_batch(batch, by=member.user)
    closed = client_for(member).get(reverse("batches:detail", args=[batch.pk])).content.decode()
    assert "Retry" not in _row(closed, first.pk)


def test_batch_page_pages_from_its_status_counts_unless_other_filters_apply(member, devices, client_for):
    batch = _batch(member, n_jobs=120)
    Job.objects.filter(batch=batch, order__lt=30).update(status=JobStatus.DONE)
    client = client_for(member)
    url = reverse("batches:detail", args=[batch.pk])
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url).content.decode()
    assert "Page 1 of 3 · 120 in all" in page
    jobs_counts = [q for q in queries.captured_queries if '"__count" FROM "jobs_job"' in q["sql"]]
    assert not jobs_counts, "a COUNT(*) of the jobs besides the status counts"
    assert "Page 1 of 2 · 90 in all" in client.get(url, {"status": "PENDING"}).content.decode()
    # runs are 10…129: a filter on them needs the paginator's own count
    assert "Page 1 of 2 · 60 in all" in client.get(url, {"min_runs": 70}).content.decode()
    last = client.get(url, {"min_runs": 70, "status": "PENDING", "page": 2}).content.decode()
    assert "Page 2 of 2 · 60 in all" in last


def test_a_batch_pages_rows_are_one_query_and_its_counts_come_with_the_batch(member, devices, client_for):
    """The page reads its rows in one query; its counts and credits are columns of the batch row
    (kept by triggers): no query of their own, the same page each time."""
    batch = _batch(member, n_jobs=2)
    batch.jobs.update(status=JobStatus.DONE)
    Batch.objects.filter(pk=batch.pk).update(status="DONE")
    client = client_for(member)
    url = reverse("batches:detail", args=[batch.pk])
    pages = []
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            pages.append(client.get(url).content.decode())
        jobs_or_ledger = [
            q for q in queries.captured_queries if "jobs_job" in q["sql"] or "credittransaction" in q["sql"]
        ]
        assert len(jobs_or_ledger) == 1  # the rows
    first, second = (re.sub(r'value="[^"]{64}"|"X-CSRFToken": "[^"]+"', "", page) for page in pages)
    assert first == second and '<span class="count status-done">2</span>' in first
    assert first.count('<span class="badge status-done">DONE</span>') == 2 + 1  # the rows and the batch


def test_batches_list_shows_counts_in_lifecycle_order_from_the_batch_rows_alone(member, devices, client_for):
    running = _batch(member, n_jobs=3)
    Job.objects.filter(batch=running, order=0).update(status=JobStatus.CANCELED)
    done = _batch(member, n_jobs=2)
    done.jobs.update(status=JobStatus.DONE)
    Batch.objects.filter(pk=done.pk).update(status="DONE")
    client = client_for(member)
    page = client.get(reverse("batches:list")).content.decode()
    assert page.index('title="PENDING">2<') < page.index('title="CANCELED">1<')
    assert 'title="DONE">2<' in page
    with CaptureQueriesContext(connection) as queries:
        client.get(reverse("batches:list"))
    assert not [q["sql"] for q in queries.captured_queries if "jobs_job" in q["sql"]]  # no count of jobs


def test_batch_event_stream_checks_access_like_the_page(member, make_member, devices, client_for):
    """The stream itself runs under ASGI (tests/browser/test_batch_page_sse.py); here, its checks."""
    batch = _batch(member, n_jobs=1)
    url = reverse("batches:events", args=[batch.pk])
    assert Client().get(url).status_code == 401
    assert client_for(make_member()).get(url).status_code == 404  # another project's batch: no leak
    # Under WSGI (this test client, the live server) a stream would take a thread for its whole
    # life: 204, and the page polls.
    assert client_for(member).get(url).status_code == 204
    html = client_for(member).get(reverse("batches:detail", args=[batch.pk])).content.decode()
    assert f'sse-connect="{url}"' in html and 'hx-ext="sse"' in html
    services.cancel_batch(batch, by=member.user)
    assert client_for(member).get(url).status_code == 204  # over: EventSource stops reconnecting


def test_the_navigation_links_to_webhooks_for_project_admins_only(member, make_member, client_for):
    plain = make_member(role="MEMBER", project=member.project)
    admin_page = client_for(member).get(reverse("batches:list")).content.decode()
    assert '<a href="/webhooks/" id="nav-webhooks"' in admin_page
    webhooks_page = client_for(member).get(reverse("webhooks")).content.decode()
    assert 'id="nav-webhooks" aria-current="page">Webhooks</a>' in webhooks_page
    assert 'id="nav-webhooks"' not in client_for(plain).get(reverse("batches:list")).content.decode()
    assert client_for(plain).get(reverse("webhooks")).status_code == 404
