"""Issue 21 credits pages beside the credits page: the overview (balance for every member, the
burn-down and its forecast, usage for any date range, the ledger grouped by action), and the
project admins' spending caps."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal import credits, usage
from portal.access import current_project_for, is_admin, request_user
from portal.errors import TweezerError
from portal.models import Membership, Project, SpendingCap


def _project(request: HttpRequest) -> Project:
    project, _ = current_project_for(request)
    if project is None:
        raise Http404("You are not a member of any project.")
    return project


class RangeForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")

    def span(self) -> tuple[date, date]:
        """The chosen dates, by default the last 30 days; swapped if given backwards."""
        data = self.cleaned_data if self.is_valid() else {}
        end = data.get("end") or timezone.localdate()
        start = data.get("start") or end - timedelta(days=29)
        return (start, end) if start <= end else (end, start)


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    """Every member sees the balance, the burn-down and their own usage and cap; admins see
    every member's, and the ledger grouped by submission and by cancel."""
    project = _project(request)
    user = request_user(request)
    admin = is_admin(user, project)
    form = RangeForm(request.GET or None)
    start, end = form.span()
    spent = usage.usage_between(project, start, end)
    people = usage.members(project)
    if not admin:
        spent["rows"] = [r for r in spent["rows"] if r["user"] == user.username]
        spent["by_user"] = [(name, n) for name, n in spent["by_user"] if name == user.username]
        people = [p for p in people if p["user"] == user]
    context: dict[str, Any] = {
        "project": project,
        "admin": admin,
        "form": form,
        "usage": spent,
        "burn": usage.burn_down(project),
        "members": people,
        "periods": SpendingCap.Period.choices,
    }
    if admin:
        groups = usage.grouped_ledger(project.transactions.all())
        page = Paginator(groups, 50).get_page(request.GET.get("page"))
        for group in page.object_list:
            group["label"] = usage.describe_group(group)
        context["ledger"] = page
    return render(request, "portal/credits_overview.html", context)


@login_required
def ledger_group(request: HttpRequest) -> HttpResponse:
    """The jobs behind one grouped ledger line (HTMX: the line's expansion)."""
    project = _project(request)
    if not is_admin(request_user(request), project):
        raise Http404("Only project ADMINs see the ledger.")
    rows = usage.group_rows(project, request.GET.get("key") or "")
    return render(request, "portal/partials/_ledger_group.html", {"rows": rows.order_by("id")[:1000]})


@login_required
@require_POST
def set_cap(request: HttpRequest) -> HttpResponse:
    """A project ADMIN sets, changes or (empty amount) removes a member's spending cap."""
    project = _project(request)
    admin = request_user(request)
    if not is_admin(admin, project):
        raise Http404("Only project ADMINs set spending caps.")
    user_id = request.POST.get("user") or ""
    member = None
    if user_id.isdigit():
        member = Membership.objects.filter(project=project, user_id=int(user_id)).select_related("user").first()
    if member is None:
        raise Http404("Not a member of this project.")
    raw = (request.POST.get("amount") or "").replace(",", "").strip()
    period = request.POST.get("period") or SpendingCap.Period.MONTH
    if period not in SpendingCap.Period.values or (raw and not raw.isdigit()):
        messages.error(request, "A cap is a whole number of credits, per month or in total.")
        return redirect("credits_overview")
    amount = int(raw) if raw else None
    try:
        credits.set_cap(project, member.user, amount, period, by=admin)
    except TweezerError as exc:
        messages.error(request, exc.message)
        return redirect("credits_overview")
    if amount is None:
        messages.success(request, f"{member.user.username} has no spending cap now.")
    else:
        when = "per month" if period == SpendingCap.Period.MONTH else "in total"
        messages.success(request, f"{member.user.username} may now spend {amount:,} credits {when}.")
    return redirect("credits_overview")
