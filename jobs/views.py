"""Job pages and the portal's results download."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseNotFound
from django.http.response import HttpResponseBase
from django.shortcuts import render

from backends.sequences import sequence_cache
from jobs.filters import jobs_for
from jobs.models import Job
from jobs.results import ResultMissing, open_result, read_result
from portal.errors import TweezerError

TOP_BITSTRINGS = 20
SVG_SIZE = 360


def _job(request: HttpRequest, job_id: UUID) -> Job:
    job = jobs_for(request.user).select_related("batch", "batch__device", "user").filter(pk=job_id).first()
    if job is None:
        raise Http404(f"Job {job_id} not found.")
    return job


def register_drawing(job: Job) -> dict[str, Any] | None:
    """Traps of the layout (or atoms of a fixed register) scaled into an SVG, used ones marked.

    A mappable register's used traps are the values of the job's `qubits` variable; a fixed
    register's atoms are all used, drawn on its layout when it has one.
    """
    text = job.sequence or job.batch.sequence_builder
    if not text:
        return None
    try:
        seq = sequence_cache.get(text)
    except TweezerError:
        return None
    mappable = seq.is_register_mappable()
    register = seq.get_register(include_mappable=True)
    layout = getattr(register, "layout", None)
    points: list[dict[str, Any]] = []
    if mappable:
        qubits = (job.variables or {}).get("qubits") or {}
        trap_to_qubit = {int(trap): name for name, trap in qubits.items() if str(trap).lstrip("-").isdigit()}
        # a mappable register always has a layout
        for trap_id, coords in layout.traps_dict.items():  # type: ignore[union-attr]
            points.append({"x": coords[0], "y": coords[1], "id": trap_id, "qubit": trap_to_qubit.get(int(trap_id))})
    else:
        # not mappable: a plain register, which has qubits
        atoms = {name: tuple(coords) for name, coords in register.qubits.items()}  # type: ignore[union-attr]
        if layout is not None:
            used = {tuple(round(float(c), 6) for c in xy): name for name, xy in atoms.items()}
            for trap_id, coords in layout.traps_dict.items():
                key = tuple(round(float(c), 6) for c in coords)
                points.append({"x": coords[0], "y": coords[1], "id": trap_id, "qubit": used.get(key)})
        else:
            for name, coords in atoms.items():
                points.append({"x": coords[0], "y": coords[1], "id": None, "qubit": name})
    if not points:
        return None
    xs = [float(p["x"]) for p in points]
    ys = [float(p["y"]) for p in points]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1.0)
    margin = 24
    scale = (SVG_SIZE - 2 * margin) / span
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    pitch = _min_distance(points) * scale
    radius = max(2.0, min(9.0, pitch * 0.32)) if pitch else 6.0
    for p in points:
        p["sx"] = round(SVG_SIZE / 2 + (float(p["x"]) - cx) * scale, 2)
        p["sy"] = round(SVG_SIZE / 2 - (float(p["y"]) - cy) * scale, 2)  # SVG y grows downwards
    used = sum(1 for p in points if p["qubit"] is not None)  # type: ignore[assignment]  # name reused for a count
    return {
        "points": points,
        "size": SVG_SIZE,
        "radius": round(radius, 2),
        "label": radius >= 6,
        "used": used,
        "traps": len(points),
        "mappable": mappable,
        "has_layout": layout is not None,
        "span": round(span, 1),
    }


def _min_distance(points: list[dict[str, Any]]) -> float:
    if len(points) < 2 or len(points) > 400:
        return 0.0
    best = float("inf")
    for i, a in enumerate(points):
        for b in points[i + 1 :]:
            d = ((float(a["x"]) - float(b["x"])) ** 2 + (float(a["y"]) - float(b["y"])) ** 2) ** 0.5
            if 0 < d < best:
                best = d
    return best if best != float("inf") else 0.0


@login_required
def job_detail(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = _job(request, job_id)
    missing = None
    try:
        result = read_result(job) if job.result_path else None
    except ResultMissing as exc:
        result, missing = None, exc.message
    counter = (result or {}).get("counter") or {}
    top = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_BITSTRINGS]
    total = sum(counter.values())
    chart = {
        "labels": [bits for bits, _ in top],
        "datasets": [{"label": "shots", "data": [n for _, n in top]}],
        "unit": "shots",
    }
    context = {
        "job": job,
        "batch": job.batch,
        "result_missing": missing,
        "top": [(bits, n, round(100 * n / total, 1) if total else 0) for bits, n in top],
        "distinct": len(counter),
        "total_shots": total,
        "chart": chart if top else None,
        "register": register_drawing(job),
        "duration": (job.end_timestamp - job.start_timestamp) if job.start_timestamp and job.end_timestamp else None,
        # Its CHARGE and, if it was given back, its REFUND: what the job cost in the end.
        "ledger": list(job.transactions.order_by("created_at", "pk")),
    }
    return render(request, "jobs/detail.html", context)


@login_required
def download_result(request: HttpRequest, job_id: UUID) -> HttpResponseBase:
    job = _job(request, job_id)
    if not job.result_path:
        raise Http404("This job has no results yet.")
    try:
        handle = open_result(job)
    except ResultMissing as exc:
        return HttpResponseNotFound(exc.message, content_type="text/plain; charset=utf-8")
    return FileResponse(handle, as_attachment=True, filename=f"job-{job.pk}.json", content_type="application/json")
