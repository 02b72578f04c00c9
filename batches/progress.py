"""How a batch's jobs ended, for a person at a glance: an outcome bar and its words.

A pure function of the per-status counters kept on the batch row (`Batch.job_counts`): the
list and the batch page draw one bar per batch without reading its jobs.
"""

from __future__ import annotations

from typing import Any

from jobs.models import JobStatus

#: Left to right on the bar: what ended well, what failed, what was stopped, then what is to come.
OUTCOME_ORDER = (JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELED, JobStatus.RUNNING, JobStatus.PENDING)
_WORDS = {
    JobStatus.DONE: ("done", "done"),
    JobStatus.ERROR: ("error", "errors"),
    JobStatus.CANCELED: ("canceled", "canceled"),
    JobStatus.RUNNING: ("running", "running"),
    JobStatus.PENDING: ("pending", "pending"),
}
FINISHED = (JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELED)


def count_words(status: str, n: int) -> str:
    one, many = _WORDS[JobStatus(status)]
    return f"{n} {one if n == 1 else many}"


def outcome(counts: dict[str, int], total: int) -> dict[str, Any]:
    """The bar's segments (x and width in percent of the bar, as SVG attributes: the CSP forbids
    inline styles), the finished count and percentage, the failed count, and the same in words
    so that colour is never the only carrier of meaning."""
    finished = sum(counts.get(s, 0) for s in FINISHED)
    percent = round(100 * finished / total) if total else 0
    segments: list[dict[str, Any]] = []
    x = 0.0
    for status in OUTCOME_ORDER:
        n = counts.get(status, 0)
        if not n or not total:
            continue
        width = 100 * n / total
        segments.append(
            {"status": status, "n": n, "x": f"{x:.2f}", "width": f"{width:.2f}", "words": count_words(status, n)}
        )
        x += width
    summary = " · ".join(s["words"] for s in segments) or "no jobs"
    return {
        "finished": finished,
        "percent": percent,
        "segments": segments,
        "errors": counts.get(JobStatus.ERROR, 0),
        "summary": summary,
    }
