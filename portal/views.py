"""Portal pages that are not about one batch or job: devices, credits, API tokens."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import PasswordChangeView
from django.contrib.messages.views import SuccessMessageMixin
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_POST

from backends.models import Device
from backends.sequences import device_from_specs
from batches.models import BatchStatus
from portal import usage
from portal.access import current_project_for, is_admin, project_for, request_user
from portal.credits import cap_of, cap_usage
from portal.errors import NotFound
from portal.forms import LedgerFilterForm
from portal.models import ApiToken, Project
from portal.onboarding import python_snippet
from portal.tokens import create_token, revoke


class PasswordChange(SuccessMessageMixin, PasswordChangeView):
    success_url = reverse_lazy("batches:list")
    success_message = "Your password was changed."


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("batches:list")


@login_required
@require_POST
def switch_project(request: HttpRequest) -> HttpResponse:
    try:
        project = project_for(request_user(request), request.POST.get("project_id"))
    except NotFound as exc:
        raise Http404(exc.message) from exc
    request.session["project_id"] = str(project.pk)
    return redirect("batches:list")


def _project(request: HttpRequest) -> Project:
    project, _ = current_project_for(request)
    if project is None:
        raise Http404("You are not a member of any project.")
    return project


# --- devices ----------------------------------------------------------------------------------


def describe_specs(specs: str) -> dict[str, Any]:
    """The Pulser device specs a physicist looks for, as label/value rows and a channel table."""
    try:
        device = device_from_specs(specs)
    except Exception:  # noqa: BLE001 - a device row with unreadable specs still lists
        return {"rows": [], "channels": [], "error": "These specs could not be read by Pulser."}

    def unit(value: Any, suffix: str) -> str:
        return "—" if value is None else f"{value:.4g} {suffix}" if isinstance(value, float) else f"{value} {suffix}"

    rows = [
        ("Pulser device", device.name),
        ("Dimensions", f"{device.dimensions}D"),
        ("Max atoms", device.max_atom_num if device.max_atom_num is not None else "no limit"),
        ("Min atom distance", unit(device.min_atom_distance, "µm")),
        ("Max distance from centre", unit(device.max_radial_distance, "µm")),
        ("Rydberg level", device.rydberg_level),
        ("Max sequence duration", unit(device.max_sequence_duration, "ns")),
        ("Max runs per job", device.max_runs if device.max_runs is not None else "no limit"),
        ("Requires a layout", "yes" if device.requires_layout else "no"),
        ("Accepts new layouts", "yes" if getattr(device, "accepts_new_layouts", True) else "no"),
        ("Pre-calibrated layouts", len(getattr(device, "pre_calibrated_layouts", ()) or ())),
    ]
    channels = [
        {
            "id": name,
            "basis": ch.basis,
            "addressing": ch.addressing,
            "max_amp": unit(ch.max_amp, "rad/µs"),
            "max_detuning": unit(ch.max_abs_detuning, "rad/µs"),
            "min_duration": unit(ch.min_duration, "ns"),
        }
        for name, ch in device.channels.items()
    ]
    return {"rows": rows, "channels": channels, "error": None}


@login_required
def devices(request: HttpRequest) -> HttpResponse:
    queued = Q(batches__status=BatchStatus.PENDING)
    running = Q(batches__status=BatchStatus.RUNNING)
    rows = Device.objects.filter(is_public=True).annotate(
        queue_length=Count("batches", filter=queued), running=Count("batches", filter=running)
    )
    cards = [{"device": d, "specs": describe_specs(d.specs)} for d in rows]
    context = {
        "cards": cards,
        "open_slots": settings.OPEN_BATCH_SLOTS_PER_PROJECT,
        "open_max": timedelta(seconds=settings.OPEN_BATCH_MAX_SECONDS),
        "open_idle": timedelta(seconds=settings.OPEN_BATCH_TIMEOUT),
    }
    return render(request, "portal/devices.html", context)


# --- credits ----------------------------------------------------------------------------------


@login_required
def credits(request: HttpRequest) -> HttpResponse:
    """Every member sees the balance, what they spent and their cap; project ADMINs also see
    every member's spending and the ledger (issue 21.4: "balance for every member")."""
    project = _project(request)
    user = request_user(request)
    admin = is_admin(user, project)
    cap = cap_of(project, user)
    cap_used = cap_usage(cap) if cap else None
    context: dict[str, Any] = {
        "project": project,
        "admin": admin,
        "cap": cap,
        "cap_used": cap_used,
        "cap_left": max(cap.amount - cap_used, 0) if cap and cap_used is not None else None,
    }
    spent = usage.spending(project, user=None if admin else request.user)
    context["by_device"] = usage.daily_chart(spent, "batch__device__name")
    if admin:
        context["by_user"] = usage.daily_chart(spent, "job__user__username")
        context["top"] = usage.top_batches(spent)
        form = LedgerFilterForm(request.GET or None)
        ledger = form.apply(project.transactions.select_related("user", "batch").order_by("-created_at", "-id"))
        context["form"] = form
        context["ledger"] = Paginator(ledger, 50).get_page(request.GET.get("page"))
        context["csv_query"] = request.GET.urlencode()
    else:
        context["top"] = usage.top_batches(spent)
    return render(request, "portal/credits.html", context)


class _Echo:
    def write(self, value: str) -> str:
        return value


@login_required
def credits_csv(request: HttpRequest) -> HttpResponseBase:
    project = _project(request)
    if not is_admin(request_user(request), project):
        raise Http404("Only project ADMINs see the ledger.")
    form = LedgerFilterForm(request.GET or None)
    ledger = form.apply(project.transactions.order_by("created_at", "id")).values_list(
        "created_at", "kind", "amount", "user__username", "batch_id", "job_id", "reason"
    )
    writer = csv.writer(_Echo())

    def rows() -> Iterator[str]:
        yield writer.writerow(["created_at", "kind", "amount", "user", "batch_id", "job_id", "reason"])
        for created, kind, amount, user, batch_id, job_id, reason in ledger.iterator(chunk_size=2000):
            yield writer.writerow([created.isoformat(), kind, amount, user or "", batch_id or "", job_id or "", reason])

    response = StreamingHttpResponse(rows(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="ledger-{str(project.pk)[:8]}.csv"'
    return response


# --- API tokens -------------------------------------------------------------------------------


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    """POST creates a token, then redirects: the plain token is shown on the next page only."""
    if request.method == "POST":
        name = (request.POST.get("name") or "").strip()
        if not name:
            messages.error(request, "Give the token a name, e.g. the machine or notebook that uses it.")
        else:
            token, plain = create_token(request_user(request), name)
            request.session["new_token"] = {"id": str(token.pk), "plain": plain}
        return redirect("tokens")
    created = None
    fresh = request.session.pop("new_token", None)
    if fresh:
        # the name also holds the new token in the POST branch above
        token = ApiToken.objects.filter(pk=fresh["id"], user=request_user(request)).first()  # type: ignore[assignment]
        created = {"token": token, "plain": fresh["plain"]} if token else None
    rows = ApiToken.objects.filter(user=request_user(request)).order_by("revoked_at", "-created_at")
    project, _ = current_project_for(request)
    # The addresses as this browser reached the portal: the SDK on the same machine reaches them too.
    url = request.build_absolute_uri("/").rstrip("/")
    python = None
    if project is not None:
        plain = created["plain"] if created else "<your API token>"
        python = {
            "project": project,
            "core": f"{url}/core",
            "account": f"{url}/account",
            "snippet": python_snippet(token=plain, project=project.pk, url=url),
        }
    return render(request, "portal/tokens.html", {"tokens": rows, "created": created, "python": python})


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: UUID) -> HttpResponse:
    token = ApiToken.objects.filter(pk=token_id, user=request_user(request)).first()
    if token is None:
        raise Http404("Token not found.")
    revoke(token)
    messages.success(request, f"Token “{token.name}” ({token.prefix}…) revoked: it no longer works.")
    return redirect("tokens")
