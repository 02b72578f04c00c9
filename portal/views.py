"""Portal pages that are not about one batch or job."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from portal.access import project_for


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("batches:list")


@login_required
@require_POST
def switch_project(request: HttpRequest) -> HttpResponse:
    project = project_for(request.user, request.POST.get("project_id"))
    request.session["project_id"] = str(project.pk)
    return redirect("batches:list")
