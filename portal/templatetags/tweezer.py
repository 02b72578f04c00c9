"""Small display filters of the portal."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo
from html import escape
from typing import Any
from uuid import UUID

from django import template
from django.core.cache import cache
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import get_current_timezone

register = template.Library()


@register.filter
def compact_json(value: Any, limit: int = 120) -> str:
    """Variables on one line, cut at `limit` characters (the job page shows them whole)."""
    if value is None:
        return "—"
    text = json.dumps(value, separators=(", ", ": "), sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) if value is not None else "{}"


@register.filter
def duration_short(value: timedelta | None) -> str:
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{max(seconds, 1)} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {round(seconds % 3600 / 60)} min"


# One row of the batch page's jobs table. Built in Python, not with {% for %} over template
# tags: 50 rows through the template engine (~15 variable nodes, 2 {% url %}, an {% include %}
# and a {% csrf_token %} each) cost ~15 ms, most of the page (bench/RESULTS.md §7).
# Same markup, byte for byte, as the template loop it replaces.
_JOB_ROW = (
    '\n    <tr data-job="{pk}">\n'
    '      <td class="check-col"><input type="checkbox" name="job" value="{pk}" form="bulk" id="sel-{pk}" '
    'hx-preserve="true" aria-label="Select job {order}"></td>\n'
    '      <td class="num">{order}</td>\n'
    '      <td><a class="mono" href="{detail}">{short}</a>{retry_of}</td>\n'
    '      <td><span class="badge status-{status_class}">{status}</span>\n</td>\n'
    '      <td class="num">{runs}</td>\n'
    '      <td class="mono small vars">{variables}</td>\n'
    '      <td class="small">{start}</td>\n'
    '      <td class="small">{end}</td>\n'
    '      <td class="row-actions">{results}{retry}</td>\n'
    "    </tr>\n  "
)
_RETRY_OF = ' <span class="small muted" title="retry of {parent}">retry</span>'
_RESULTS = '<a class="btn small" href="{download}" download aria-label="Download results of job {order}">Results</a>'
_CSRF_INPUT = '<input type="hidden" name="csrfmiddlewaretoken" value="{csrf}">'
_RETRY = (
    '<form method="post" action="{action}">'
    + _CSRF_INPUT
    + '<button class="btn small" type="submit" data-confirm="Retry job #{order}? A copy is added to this batch '
    'and charged {price} credits.">Retry</button></form>'
)
# reverse() once per page with this id, then the row's id is put in its place: a reverse()
# per row and link is ~25 µs each.
_ANY_ID = UUID(int=0)


def _time(value: datetime | None, tz: tzinfo) -> str:
    """As `value|date:"H:i:s"|default:"—"`, with the current time zone looked up once per page."""
    if value is None:
        return "—"
    value = value.astimezone(tz)
    return f"{value.hour:02}:{value.minute:02}:{value.second:02}"


@register.simple_tag(takes_context=True)
def job_rows(context: template.Context, jobs: Iterable[dict[str, Any]]) -> SafeString:
    """The <tr> of each job of the batch page (retry buttons when the context's `can_retry`).

    `jobs`: dicts of batches.views.JOB_ROW_FIELDS, read only when the rows are not in the cache
    under the context's `rows_cache_key` (set for a DONE batch: batches.views._done_rows_key)."""
    can_retry = context.get("can_retry")
    tz = get_current_timezone()
    # Never with Retry buttons: they hold the CSRF token of one session.
    cache_key = None if can_retry else context.get("rows_cache_key")
    if cache_key:
        cache_key = f"{cache_key}:{tz}"
        cached = cache.get(cache_key)
        if cached is not None:
            return mark_safe(cached)  # noqa: S308 - rendered below, by this function
    batch_id = context["batch"].pk
    any_id = str(_ANY_ID)
    detail = reverse("jobs:detail", args=[_ANY_ID])
    download = reverse("jobs:download", args=[_ANY_ID])
    retry_head, _, retry_tail = reverse("batches:retry", args=[batch_id, _ANY_ID]).rpartition(any_id)
    retry_form = _RETRY
    token = context.get("csrf_token")
    if not token or token == "NOTPROVIDED":  # as {% csrf_token %}: no hidden input without a token
        retry_form = retry_form.replace(_CSRF_INPUT, "")
    rows = []
    for job in jobs:
        pk = str(job["id"])
        order = job["order"]
        rows.append(
            _JOB_ROW.format(
                pk=pk,
                order=order,
                detail=detail.replace(any_id, pk),
                short=pk[:8],
                retry_of=_RETRY_OF.format(parent=job["parent_id"]) if job["parent_id"] else "",
                status_class=escape(job["status"].lower()),
                status=escape(job["status"]),
                runs=job["runs"],
                variables=escape(compact_json(job["variables"])),
                start=_time(job["start_timestamp"], tz),
                end=_time(job["end_timestamp"], tz),
                results=_RESULTS.format(download=download.replace(any_id, pk), order=order)
                if job["result_path"]
                else "",
                retry=retry_form.format(
                    action=f"{retry_head}{pk}{retry_tail}", csrf=escape(str(token)), order=order, price=job["price"]
                )
                if can_retry
                else "",
            )
        )
    html = "".join(rows)
    if cache_key:
        from batches.views import DONE_CACHE_SECONDS

        cache.set(cache_key, html, DONE_CACHE_SECONDS)
    return mark_safe(html)  # noqa: S308 - every value above is escaped or a number/UUID
