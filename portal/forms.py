"""Portal forms: parse query strings and uploads into what the services take."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, time
from types import SimpleNamespace
from typing import Any

from django import forms
from django.conf import settings
from django.utils import timezone

from backends.models import Device
from batches.filters import filter_batches
from batches.models import BatchStatus
from jobs.models import JobStatus
from portal.errors import InvalidInput
from portal.middleware import json_depth_ok
from portal.models import CreditTransaction
from portal.wire import check_json


def _day_start(day: Any) -> datetime | None:
    return timezone.make_aware(datetime.combine(day, time.min)) if day else None


def _day_end(day: Any) -> datetime | None:
    return timezone.make_aware(datetime.combine(day, time.max)) if day else None


class DateInput(forms.DateInput):
    input_type = "date"


class BatchFilterForm(forms.Form):
    SORTS = {
        "-created": "-created_at",
        "created": "created_at",
        "status": "status",
        "device": "device__name",
        "-jobs": "-jobs_count",
    }
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *BatchStatus.choices])
    device = forms.ModelChoiceField(
        required=False, queryset=Device.objects.all(), to_field_name="name", empty_label="Any device"
    )
    open = forms.ChoiceField(required=False, choices=[("", "Open or closed"), ("1", "Open"), ("0", "Closed")])
    # A batch's own status says whether it ran, not how its jobs ended: DONE batches can hold failed jobs.
    errors = forms.ChoiceField(  # type: ignore[assignment]  # a field named like Form.errors, as on JobFilterForm
        required=False,
        label="Failed jobs",
        choices=[("", "With or without"), ("1", "Has errors"), ("0", "No errors")],
    )
    tag = forms.CharField(required=False, max_length=100)
    user = forms.CharField(required=False, max_length=150, label="Submitted by")
    start = forms.DateField(required=False, widget=DateInput, label="From")
    end = forms.DateField(required=False, widget=DateInput, label="To")
    sort = forms.ChoiceField(
        required=False,
        choices=[
            ("-created", "Newest first"),
            ("created", "Oldest first"),
            ("status", "Status"),
            ("device", "Device"),
            ("-jobs", "Most jobs"),
        ],
    )

    def apply(self, qs: Any) -> Any:
        data = self.cleaned_data if self.is_valid() else {}
        qs = filter_batches(
            qs,
            statuses=[data["status"]] if data.get("status") else None,
            device_types=[data["device"].name] if data.get("device") else None,
            open=data["open"] == "1" if data.get("open") else None,
            tag=data.get("tag"),
            has_errors=data["errors"] == "1" if data.get("errors") else None,
            username=data.get("user"),
            start=_day_start(data.get("start")),
            end=_day_end(data.get("end")),
        )
        order = self.SORTS.get(data.get("sort") or "-created", "-created_at")
        return qs.order_by(order, "-pk")


class JobFilterForm(forms.Form):
    """The SDK's job filters (status, runs, errors, dates), from a query string."""

    status = forms.MultipleChoiceField(required=False, choices=JobStatus.choices, widget=forms.CheckboxSelectMultiple)
    min_runs = forms.IntegerField(required=False, min_value=0, label="Min runs")
    max_runs = forms.IntegerField(required=False, min_value=0, label="Max runs")
    # The metaclass moves declared fields into base_fields, so form.errors stays the ErrorDict at runtime.
    errors = forms.ChoiceField(  # type: ignore[assignment]
        required=False, choices=[("", "Any"), ("1", "With errors"), ("0", "Without errors")]
    )
    start = forms.DateField(required=False, widget=DateInput, label="Created from")
    end = forms.DateField(required=False, widget=DateInput, label="Created to")

    def as_filter(self) -> SimpleNamespace:
        data = self.cleaned_data if self.is_valid() else {}
        errors = data.get("errors")
        return SimpleNamespace(
            id=None,
            status=data.get("status") or None,
            min_runs=data.get("min_runs"),
            max_runs=data.get("max_runs"),
            errors=None if not errors else errors == "1",
            start_date=_day_start(data.get("start")),
            end_date=_day_end(data.get("end")),
        )

    @property
    def active(self) -> bool:
        return self.is_valid() and any(v not in (None, "", []) for v in self.cleaned_data.values())


class DeviceSelect(forms.Select):
    """A device list where a DOWN device shows, with its reason, but cannot be picked."""

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        device = getattr(value, "instance", None)
        if device is not None and device.status == Device.Status.DOWN:
            option["attrs"]["disabled"] = True
        return option


class DeviceChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]  # stubs: generic in newer django-stubs
    def label_from_instance(self, obj: Any) -> str:
        if obj.status == Device.Status.UP:
            return str(obj.name)
        reason = f": {obj.status_reason}" if obj.status_reason else ""
        return f"{obj.name} — {obj.status}{reason}"


def in_physicist_words(message: str) -> str:
    """The API's messages name its JSON fields; the form calls the sequence a sequence."""
    text = message.replace("'sequence_builder'", "the sequence").replace("sequence_builder", "sequence")
    return text[:1].upper() + text[1:]


class NewBatchForm(forms.Form):
    sequence = forms.FileField(required=False, label="Sequence file (Pulser abstract representation, JSON)")
    sequence_text = forms.CharField(
        required=False,
        label="Or paste the sequence",
        help_text="An uploaded sequence is kept here after an error, so it need not be uploaded again.",
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": '{"version": "1", "name": "pulser-exported", …}'}),
    )
    jobs = forms.FileField(
        required=False, label="Jobs (JSON list of {runs, variables})", help_text="Or type them as JSON below."
    )
    jobs_text = forms.CharField(
        required=False,
        label="Jobs as JSON or as a table of variables",
        help_text="A table has a header row, e.g. runs,omega_max,qubits, then one job per row; "
        "separate columns with commas or tabs (pasted from a spreadsheet). Cells holding JSON (like qubits) "
        "are read as JSON.",
        widget=forms.Textarea(attrs={"rows": 5, "placeholder": "runs,omega_max\n100,9.5\n100,10.5"}),
    )
    device_type = DeviceChoiceField(
        queryset=Device.objects.all(),
        to_field_name="name",
        label="Device",
        initial="EMU_FREE",
        empty_label=None,
        widget=DeviceSelect,
        error_messages={"invalid_choice": "Pick a device that is not DOWN."},
    )
    open = forms.BooleanField(required=False, label="Keep the batch open to add jobs later")
    tags = forms.CharField(required=False, max_length=500, help_text="Comma-separated.")

    def clean(self) -> dict[str, Any]:
        """Uploaded files are read into the text fields, and the form's data keeps them: after any
        error the page shows them again instead of an emptied file input."""
        data = super().clean() or {}
        kept: dict[str, Any] = dict(self.data.items())
        for upload, text in (("sequence", "sequence_text"), ("jobs", "jobs_text")):
            if data.get(upload):
                data[text] = data[upload].read().decode("utf-8", errors="replace")
                kept[text] = data[text]
        self.data = kept
        if not (data.get("sequence_text") or "").strip():
            self.add_error("sequence_text", "Give the sequence: upload its JSON file or paste it.")
        device = data.get("device_type")
        if device is not None and device.status == Device.Status.DOWN:
            self.add_error("device_type", f"{device.name} is DOWN: {device.status_reason or 'it takes no batch'}.")
        return data

    def read(self) -> tuple[str, Any]:
        """The sequence text and the raw jobs list; JSON errors become form errors."""
        return self.cleaned_data["sequence_text"], parse_jobs(self.cleaned_data.get("jobs_text") or "")

    def tag_list(self) -> list[str]:
        return [t.strip() for t in (self.cleaned_data.get("tags") or "").split(",") if t.strip()]


def parse_jobs(raw: str) -> Any:
    """Jobs typed as JSON or as a table of variables, as the API's jobs list (the API checks them)."""
    if not raw.strip():
        raise forms.ValidationError("Give the jobs: upload a JSON file, or type them as JSON or as a table.")
    if raw.lstrip().startswith(("[", "{")):
        limit = settings.MAX_JSON_DEPTH
        if not json_depth_ok(raw, limit):
            raise forms.ValidationError(f"The jobs are nested deeper than {limit} levels.")
        try:
            jobs = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"The jobs are not valid JSON: {exc}") from exc
    else:
        jobs = jobs_from_table(raw)
    try:
        check_json(jobs, "jobs")
    except InvalidInput as exc:
        raise forms.ValidationError(exc.message) from exc
    return jobs


class AddJobsForm(forms.Form):
    """Jobs for an open batch, typed as on the new-batch form; `services.add_jobs` checks them."""

    jobs_text = forms.CharField(
        label="Jobs as JSON or as a table of variables",
        help_text="A header row (runs, then the sequence's variables), one job per row; or a JSON list of "
        "{runs, variables}.",
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "runs,omega_max\n100,9.5"}),
    )

    def read(self) -> Any:
        return parse_jobs(self.cleaned_data["jobs_text"])


def _cell(text: str) -> Any:
    text = text.strip()
    if not json_depth_ok(text, settings.MAX_JSON_DEPTH):
        return text  # not a value a variable takes: left as text, for the sequence's check to refuse
    try:
        return json.loads(text)
    except ValueError:
        return text


def jobs_from_table(raw: str) -> list[dict[str, Any]]:
    """A header row (`runs` plus variable names) and one job per row, as the API's jobs list."""
    lines = [line for line in raw.strip().splitlines() if line.strip()]
    dialect = csv.excel_tab if "\t" in lines[0] else csv.excel
    rows = list(csv.reader(io.StringIO("\n".join(lines)), dialect))
    header = [name.strip() for name in rows[0]]
    if "runs" not in header:
        raise forms.ValidationError("The table needs a 'runs' column; the other columns are variables.")
    jobs = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise forms.ValidationError(f"Table row {number} has {len(row)} cells; the header has {len(header)}.")
        cells = dict(zip(header, (_cell(c) for c in row), strict=True))
        runs = cells.pop("runs")
        jobs.append({"runs": runs, "variables": cells})
    if not jobs:
        raise forms.ValidationError("The table has a header but no job rows.")
    return jobs


class LedgerFilterForm(forms.Form):
    kind = forms.ChoiceField(required=False, choices=[("", "Any kind"), *CreditTransaction.Kind.choices])
    user = forms.CharField(required=False, max_length=150)
    start = forms.DateField(required=False, widget=DateInput, label="From")
    end = forms.DateField(required=False, widget=DateInput, label="To")

    def apply(self, qs: Any) -> Any:
        data = self.cleaned_data if self.is_valid() else {}
        if data.get("kind"):
            qs = qs.filter(kind=data["kind"])
        if data.get("user"):
            qs = qs.filter(user__username=data["user"])
        if data.get("start"):
            qs = qs.filter(created_at__gte=_day_start(data["start"]))
        if data.get("end"):
            qs = qs.filter(created_at__lte=_day_end(data["end"]))
        return qs
