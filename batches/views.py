"""Batch pages: thin views over the batch services."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from batches import services
from portal.access import current_project_for
from portal.errors import NotFound


@login_required
def batch_list(request: HttpRequest) -> HttpResponse:
    project, _ = current_project_for(request)
    batches = services.batches_for(request.user).filter(project=project).select_related("device")
    page = Paginator(batches.order_by("-created_at"), 25).get_page(request.GET.get("page"))
    return render(request, "batches/list.html", {"page": page})


@login_required
def batch_detail(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    try:
        batch = services.get_batch_for(request.user, batch_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    jobs = Paginator(batch.jobs.order_by("order"), 50).get_page(request.GET.get("page"))
    context = {"batch": batch, "jobs": jobs, "counts": services.jobs_count_per_status(batch)}
    if request.htmx:
        return render(request, "batches/partials/_live.html", context)
    return render(request, "batches/detail.html", context)
