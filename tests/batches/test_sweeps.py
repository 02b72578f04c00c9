"""Issue 21.1: a batch as a sweep, its numbers checked against a hand computation from the counters."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import pytest
from django.test import Client

from batches import services, sweeps
from batches.models import Batch
from jobs.models import Job, JobStatus, ResultBlob
from jobs.results import store_result
from portal.errors import InvalidInput
from tests.sequences import seed_mappable_sequence

pytestmark = pytest.mark.django_db

# Three atoms; omega_max × delta is a 2 × 2 sweep, (1.0, 0) twice (pooled), plus one ERROR job.
JOBS: list[tuple[dict[str, Any], dict[str, int] | None]] = [
    ({"omega_max": 1.0, "delta": [0.0]}, {"000": 6, "100": 3, "110": 1}),
    ({"omega_max": 2.0, "delta": [0.0]}, {"000": 2, "111": 8}),
    ({"omega_max": 1.0, "delta": [5.0]}, {"010": 5, "011": 5}),
    ({"omega_max": 2.0, "delta": [5.0]}, {"001": 20}),
    ({"omega_max": 1.0, "delta": [0.0]}, {"000": 10}),
    ({"omega_max": 3.0, "delta": [0.0]}, None),
]


def make_sweep(member: Any) -> Batch:
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[{"runs": sum((c or {"x": 10}).values()), "variables": v} for v, c in JOBS],
        device_type="EMU_FREE",
        validate=False,
    )
    for job, (_, counter) in zip(batch.jobs.order_by("order"), JOBS, strict=True):
        if counter is None:
            Job.objects.filter(pk=job.pk).update(status=JobStatus.ERROR, errors=["boom"])
        else:
            Job.objects.filter(pk=job.pk).update(
                status=JobStatus.DONE, result_path=store_result(job, {"counter": counter})
            )
    return batch


def by_x(dataset: dict[str, Any]) -> dict[Any, tuple[float, float, int]]:
    return {p["x"]: (p["y"], p["err"], p["shots"]) for p in dataset["points"]}


def test_mean_excited_against_omega_with_delta_as_series_matches_the_hand_computation(member, devices):
    result = sweeps.sweep(make_sweep(member), observable="mean_excited", x="omega_max", series="delta")
    assert [d["label"] for d in result["datasets"]] == ["delta = 0", "delta = 5"]
    assert result["numeric_x"] and result["finished_jobs"] == 5
    zero, five = (by_x(d) for d in result["datasets"])
    # delta 0, omega 1: two jobs pooled, 20 shots: n = 0 ×16, 1 ×3, 2 ×1 → mean 5/20, E[n²] 7/20.
    mean, err, shots = zero[1.0]
    assert shots == 20 and mean == pytest.approx(0.25)
    assert err == pytest.approx(math.sqrt((7 / 20 - 0.25**2) / 20))
    # delta 0, omega 2: n = 0 ×2, 3 ×8 → mean 2.4, E[n²] 7.2.
    assert zero[2.0][0] == pytest.approx(2.4) and zero[2.0][1] == pytest.approx(math.sqrt((7.2 - 2.4**2) / 10))
    # delta 5, omega 1: n = 1 ×5, 2 ×5 → 1.5; omega 2: n = 1 ×20 → 1, no spread.
    assert five[1.0][0] == pytest.approx(1.5) and five[2.0] == (pytest.approx(1.0), 0.0, 20)
    assert 3.0 not in zero, "the ERROR job has no point"


def test_excitation_of_one_atom_and_a_bitstring_probability_with_binomial_errors(member, devices):
    batch = make_sweep(member)
    atom0 = by_x(sweeps.sweep(batch, observable="excitation", x="omega_max", atom=0)["datasets"][0])
    # Pooled over delta: omega 1 → jobs 0, 2, 4, 30 shots; atom 0 excited in 100 ×3 + 110 ×1 = 4.
    p = 4 / 30
    assert atom0[1.0] == (pytest.approx(p), pytest.approx(math.sqrt(p * (1 - p) / 30)), 30)
    atom2 = by_x(sweeps.sweep(batch, observable="excitation", x="omega_max", atom=2)["datasets"][0])
    assert atom2[2.0][0] == pytest.approx((8 + 20) / 30)
    bits = sweeps.sweep(batch, observable="bitstring", bitstring="000", x="delta", series="omega_max")
    one = by_x(bits["datasets"][0])
    assert bits["datasets"][0]["label"] == "omega_max = 1"
    assert one[0.0][0] == pytest.approx(16 / 20) and one[5.0][0] == 0.0


def test_refusals_name_the_field(member, devices):
    batch = make_sweep(member)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"observable": "entropy"}, "observable"),
        ({"observable": "bitstring"}, "bitstring"),
        ({"observable": "bitstring", "bitstring": "01a"}, "bitstring"),
        ({"observable": "excitation", "atom": -1}, "atom"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidInput) as caught:
            sweeps.sweep(batch, x="omega_max", **kwargs)
        assert caught.value.field == field


def test_the_csv_has_one_row_per_job_with_variables_runs_status_and_values(member, devices):
    batch = make_sweep(member)
    rows = list(sweeps.csv_rows(batch, bitstring="111"))
    header, body = rows[0], rows[1:]
    assert header == [
        "order", "job_id", "status", "runs", "delta", "omega_max", "shots", "mean_excited", "mean_excited_err",
        "p_111", "p_111_err", "p_excited_atom_0", "p_excited_atom_1", "p_excited_atom_2",
    ]  # fmt: skip
    assert len(body) == 6
    second = dict(zip(header, body[1], strict=True))
    assert (second["status"], second["omega_max"], second["delta"], second["shots"]) == ("DONE", 2.0, 0.0, 10)
    assert second["p_111"] == pytest.approx(0.8) and second["p_excited_atom_1"] == pytest.approx(0.8)
    error = dict(zip(header, body[5], strict=True))
    assert error["status"] == "ERROR" and error["mean_excited"] == ""


def test_the_api_and_the_portal_answer_the_sweep_and_the_csv_to_members_only(member, make_member, devices):
    batch = make_sweep(member)
    url = f"/core/api/v1/batches/{batch.pk}/sweep?observable=mean_excited&x=omega_max&series=delta"
    response = Client().get(url, HTTP_AUTHORIZATION=f"Bearer {member.token}")
    assert response.status_code == 200, response.content
    assert response.json()["data"]["datasets"][0]["points"][0]["y"] == pytest.approx(0.25)
    assert response.json()["data"]["variables"] == ["delta", "omega_max"]
    stranger = make_member()
    assert Client().get(url, HTTP_AUTHORIZATION=f"Bearer {stranger.token}").status_code == 404

    browser: Any = Client()
    browser.force_login(member.user)
    page = browser.get(f"/batches/{batch.pk}/sweep/?observable=excitation&x=omega_max&atom=1")
    assert page.status_code == 200
    assert b'id="sweep-chart" data-sweep="{&quot;observable&quot;: &quot;excitation&quot;' in page.content
    download = browser.get(f"/batches/{batch.pk}/sweep.csv")
    assert download["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert len(lines) == 7 and lines[0][:4] == ["order", "job_id", "status", "runs"]
    outsider = Client()
    outsider.force_login(stranger.user)
    assert outsider.get(f"/batches/{batch.pk}/sweep.csv").status_code == 404


def test_results_are_read_one_at_a_time_as_the_jobs_stream(member, devices, monkeypatch):
    """What lets a 10,000-job batch answer: a result is read when its job comes, reduced to a few
    numbers, and dropped; the jobs themselves come in chunks of the (batch, order) index."""
    batch = make_sweep(member)
    reads: list[str] = []
    real = sweeps.read_result

    def counting(job: Job) -> Any:
        reads.append(str(job.pk))
        return real(job)

    monkeypatch.setattr(sweeps, "read_result", counting)
    rows = sweeps.job_rows(batch)
    first = next(rows)
    assert len(reads) == 1 and first.stats is not None and first.stats.shots == 10
    assert sum(1 for _ in rows) == 5 and len(reads) == 5  # the ERROR job has no result to read


def test_a_job_whose_result_file_is_missing_counts_as_one_without_results(member, devices):
    """Not a 500: the sweep answers from the other jobs, the CSV row of that job has no values."""
    batch = make_sweep(member)
    lost = batch.jobs.get(order=1)
    ResultBlob.objects.filter(name=lost.result_path).delete()

    result = sweeps.sweep(batch, observable="mean_excited", x="omega_max", series="delta")
    assert result["finished_jobs"] == 4
    browser: Any = Client()
    browser.force_login(member.user)
    assert browser.get(f"/batches/{batch.pk}/sweep/?observable=mean_excited&x=omega_max").status_code == 200
    rows = list(sweeps.csv_rows(batch))
    row = dict(zip(rows[0], rows[2], strict=True))
    assert (row["status"], row["mean_excited"]) == ("DONE", "")


def test_the_batch_page_loads_the_sweep_plot_inline_when_jobs_have_finished(member, devices):
    batch = make_sweep(member)
    browser: Any = Client()
    browser.force_login(member.user)
    page = browser.get(f"/batches/{batch.pk}/").content.decode()
    region = page[page.index('<div id="sweep"') :]
    assert f'hx-get="/batches/{batch.pk}/sweep/" hx-trigger="revealed" hx-swap="outerHTML"' in region
    assert "vendor/chart.umd.min.js" in page and "tweezer/sweep.js" in page
    # What the region swaps in: the chart alone (no page around it), with its pickers and CSV link.
    inline = browser.get(f"/batches/{batch.pk}/sweep/", HTTP_HX_REQUEST="true").content.decode()
    assert inline.startswith('<section class="card" id="sweep"') and "<html" not in inline
    assert 'id="sweep-chart"' in inline and f'href="/batches/{batch.pk}/sweep.csv"' in inline
    assert "against delta" in inline  # the first variable by name

    unfinished = services.create_batch(
        member.project, member.user, sequence_builder=seed_mappable_sequence(), validate=False,
        jobs=[{"runs": 5, "variables": {"omega_max": 1.0}}], device_type="EMU_FREE",
    )  # fmt: skip
    assert '<div id="sweep"' not in browser.get(f"/batches/{unfinished.pk}/").content.decode()
