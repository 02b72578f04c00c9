"""Results of many jobs as one zip, streamed: one JSON file per job plus the manifests.

Nothing is held per job, so 10,000 jobs download with flat memory (bench/export_selection.py):
- the zip is written into a small buffer that is drained after every piece of a file;
- jobs are read from the database in chunks, and their result files a few at a time (one query
  per chunk with the database storage, each file inflated piece by piece);
- the manifests (manifest.json as it always was, manifest.csv and manifest.jsonl with ids, batch,
  variables, runs, status, error, credits and times) grow in temporary files on disk and are
  copied into the zip at the end: a zip member is written whole, one at a time;
- the members' list, which the format writes last as the central directory, grows in a temporary
  file too (`_MembersOnDisk`): zipfile keeps a ZipInfo per member in memory until it closes, about
  1 MiB per 1,000 jobs, the one thing that grew with the selection (found with tracemalloc).

One code path for every download: a batch's results, its selected jobs, and the export of a
filtered selection spanning batches (`per_batch=True` puts each batch's files in its folder).
"""

from __future__ import annotations

import csv
import json
import pickle
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import closing
from typing import IO, Any

from django.db.models import IntegerField, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import StreamingHttpResponse

from jobs.models import Job
from jobs.storage import openers
from portal.models import CreditTransaction

_CHUNK = 500
_FILES_CHUNK = 20  # result files read per query: what the zip holds in memory at once
_COPY = 64 * 1024
# A job with a result file the results storage lacks: the zip goes on without it, and says so.
MISSING_FILE = "result file missing from the results storage"
_SPILL = 2 * _COPY  # past this, the drain buffers on disk: only the central directory (written in one go) gets there
MANIFEST_COLUMNS = (
    "id", "batch_id", "order", "status", "runs", "variables", "error", "credits",
    "created_at", "start_timestamp", "end_timestamp", "file",
)  # fmt: skip


class _CsvLines:
    """csv.writer's file: each row comes back as its encoded line, for a binary temporary file."""

    def write(self, value: str) -> bytes:
        return value.encode()


class _Drain:
    """A write-only, unseekable file: zipfile then writes data descriptors and never seeks.

    What is written waits in a buffer until `take` reads it back in pieces; past `_SPILL` the
    buffer is a temporary file (the central directory arrives in one go, from `close`)."""

    def __init__(self) -> None:
        self.buffer = tempfile.SpooledTemporaryFile(max_size=_SPILL)  # noqa: SIM115 - closed by close()

    def write(self, data: bytes) -> int:
        return self.buffer.write(data)

    def flush(self) -> None:
        pass

    def take(self) -> Iterator[bytes]:
        self.buffer.seek(0)
        while piece := self.buffer.read(_COPY):
            yield piece
        self.buffer.seek(0)
        self.buffer.truncate()

    def close(self) -> None:
        self.buffer.close()


class _MembersOnDisk:
    """ZipFile's list of the members written so far (`filelist`), kept in a temporary file.

    zipfile needs each member's ZipInfo once more, at `close`, to write the central directory,
    and reads the list only there (`for zinfo in filelist`, `len(filelist)`): the ZipInfos are
    pickled as they are added and read back one at a time then."""

    def __init__(self, spool: IO[bytes]) -> None:
        self.spool = spool
        self.count = 0

    def append(self, info: zipfile.ZipInfo) -> None:
        pickle.dump(info, self.spool, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[zipfile.ZipInfo]:
        self.spool.seek(0)
        for _ in range(self.count):
            yield pickle.load(self.spool)  # noqa: S301 - our own temporary file, written above


class _NoNameIndex(dict[str, zipfile.ZipInfo]):
    """ZipFile's index of members by name (`NameToInfo`), for reading back and for a warning on a
    duplicate name: a written export is never read back, and its names are unique (order + id)."""

    def __setitem__(self, name: str, info: zipfile.ZipInfo) -> None:
        pass


class _StreamedZip(zipfile.ZipFile):
    """A deflated zip written to `drain` that holds nothing per member in memory."""

    def __init__(self, drain: _Drain, members: IO[bytes]) -> None:
        # _Drain is a write-only file object (write/flush); the stubs' protocols don't see it
        super().__init__(drain, mode="w", compression=zipfile.ZIP_DEFLATED)  # type: ignore[call-overload]
        self.filelist = _MembersOnDisk(members)  # type: ignore[assignment]  # a list for what zipfile does with it
        self.NameToInfo = _NoNameIndex()


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _errors(job: Job, name: str | None) -> list[Any]:
    """The job's errors, and a word on its result file when the results storage lacks it."""
    missing = [MISSING_FILE] if job.result_path and name is None else []
    return [*(job.errors or []), *missing]


def _legacy_row(job: Job, name: str | None) -> dict[str, Any]:
    """A manifest.json row, as batch downloads have always written it."""
    return {
        "id": str(job.pk),
        "order": job.order,
        "status": job.status,
        "runs": job.runs,
        "variables": job.variables,
        "errors": _errors(job, name),
        "file": name,
    }


def manifest_row(job: Job, name: str | None) -> dict[str, Any]:
    """A manifest.csv / manifest.jsonl row: `credits` is what the job costs after any refund."""
    return {
        "id": str(job.pk),
        "batch_id": str(job.batch_id),
        "order": job.order,
        "status": job.status,
        "runs": job.runs,
        "variables": job.variables,
        "error": "; ".join(str(e) for e in _errors(job, name)) or None,
        "credits": int(getattr(job, "net_credits", job.price) or 0),
        "created_at": _iso(job.created_at),
        "start_timestamp": _iso(job.start_timestamp),
        "end_timestamp": _iso(job.end_timestamp),
        "file": name,
    }


def with_credits(jobs: QuerySet[Job]) -> QuerySet[Job]:
    """Each job's charge minus its refund from the ledger (its unique (job, kind) index: two rows)."""
    spent = (
        CreditTransaction.objects.filter(job=OuterRef("pk"), kind__in=["CHARGE", "REFUND"])
        .order_by()
        .values("job")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    return jobs.annotate(net_credits=-Coalesce(Subquery(spent, output_field=IntegerField()), 0))


def _copy(source: IO[bytes], archive: zipfile.ZipFile, name: str, drain: _Drain) -> Iterator[bytes]:
    with archive.open(name, mode="w") as target:
        while chunk := source.read(_COPY):
            target.write(chunk)
            yield from drain.take()


def iter_results_zip(jobs: QuerySet[Job], *, batch_id: object = None, per_batch: bool = False) -> Iterator[bytes]:
    fields = (
        "id", "order", "status", "runs", "variables", "errors", "result_path", "batch_id", "price",
        "created_at", "start_timestamp", "end_timestamp",
    )  # fmt: skip
    ordering = ("batch_id", "order") if per_batch else ("order",)
    with (
        tempfile.TemporaryFile() as legacy,
        tempfile.TemporaryFile() as jsonl,
        tempfile.TemporaryFile() as table,
        tempfile.TemporaryFile() as members,
        closing(_Drain()) as drain,
    ):
        writer = csv.writer(_CsvLines())
        table.write(writer.writerow(MANIFEST_COLUMNS))
        legacy.write(json.dumps({"batch_id": str(batch_id) if batch_id else None})[:-1].encode() + b', "jobs": [')
        with _StreamedZip(drain, members) as archive:
            index = 0

            def write(group: list[Job]) -> Iterator[bytes]:
                nonlocal index
                opening = openers([job.result_path for job in group if job.result_path])
                for job in group:
                    name = None
                    opener = opening.get(job.result_path) if job.result_path else None
                    try:
                        source = opener() if opener is not None else None
                    except FileNotFoundError:
                        source = None
                    if source is not None:
                        folder = f"batches/{job.batch_id}/" if per_batch else "jobs/"
                        name = f"{folder}{job.order:05d}-{job.pk}.json"
                        with source:
                            yield from _copy(source, archive, name, drain)
                    legacy.write((", " if index else "\n").encode() + json.dumps(_legacy_row(job, name)).encode())
                    row = manifest_row(job, name)
                    jsonl.write(json.dumps(row).encode() + b"\n")
                    table.write(writer.writerow([json.dumps(v) if k == "variables" else v for k, v in row.items()]))
                    index += 1
                    yield from drain.take()

            pending: list[Job] = []
            for job in with_credits(jobs.only(*fields)).order_by(*ordering).iterator(_CHUNK):
                pending.append(job)
                if len(pending) >= _FILES_CHUNK:
                    yield from write(pending)
                    pending = []
            yield from write(pending)
            legacy.write(b"\n]}")
            for member, handle in (("manifest.json", legacy), ("manifest.jsonl", jsonl), ("manifest.csv", table)):
                handle.seek(0)
                yield from _copy(handle, archive, member, drain)
        yield from drain.take()


def results_zip_response(
    jobs: QuerySet[Job], *, batch_id: object = None, filename: str, per_batch: bool = False
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        iter_results_zip(jobs, batch_id=batch_id, per_batch=per_batch), content_type="application/zip"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
