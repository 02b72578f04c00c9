"""Small display filters of the portal."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django import template

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


@register.filter
def clock(value: timedelta | None) -> str:
    """A countdown as mm:ss (h:mm:ss past an hour)."""
    if value is None:
        return "—"
    seconds = max(0, int(value.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


@register.filter
def refund_of(ledger: list[Any]) -> Any:
    """The REFUND line among a job's ledger lines, if it was refunded."""
    return next((t for t in ledger if t.kind == "REFUND"), None)


@register.filter
def band(value: tuple[timedelta, timedelta] | dict[str, Any] | None) -> str:
    """A p10-p90 estimate in words: "~3 min" when both ends read the same, else "40 s – 2 min"."""
    if not value:
        return "unknown"
    low, high = (value["p10"], value["p90"]) if isinstance(value, dict) else value
    low_text, high_text = duration_short(max(low, timedelta())), duration_short(max(high, timedelta()))
    return f"~{low_text}" if low_text == high_text else f"{low_text} – {high_text}"
