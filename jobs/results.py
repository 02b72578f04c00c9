"""Result files: one JSON file per job in the results storage (jobs.storage), and signed links to them."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile

from jobs.models import Job
from jobs.storage import results_storage
from portal.errors import NotFound

_SALT = "tweezer.results-link"


class ResultMissing(NotFound):
    """A job says it has a result file, and the results storage has no such file: it was deleted,
    or this process looks in another place (RESULTS_STORAGE, bucket or prefix) than the worker
    that wrote it. A 404 with this message, never a 500."""

    def __init__(self, job: Job) -> None:
        super().__init__(
            f"The result file of job {job.pk} ({job.result_path}) is missing from the results storage: "
            "it was deleted, or RESULTS_STORAGE (or its bucket and prefix) differs between the machines."
        )


def result_name(job_id: object) -> str:
    return f"jobs/{job_id}.json"


def store_result(job: Job, payload: dict[str, Any]) -> str:
    storage = results_storage()
    name = result_name(job.pk)
    # A re-run after a lost lease: the latest run wins. The database storage and S3 (file_overwrite)
    # replace a name as they save it, with no further round trip; a storage that would rename
    # instead (the file system's, when the file exists) has the old file deleted first.
    if storage.get_available_name(name) != name:
        storage.delete(name)
    return str(storage.save(name, ContentFile(json.dumps(payload).encode())))


def open_result(job: Job) -> Any:
    """The job's result file, open for reading; ResultMissing if the storage does not have it."""
    try:
        return results_storage().open(job.result_path or result_name(job.pk), "rb")
    except FileNotFoundError as exc:
        raise ResultMissing(job) from exc


def read_result(job: Job) -> dict[str, Any] | None:
    if not job.result_path:
        return None
    with open_result(job) as handle:
        return json.load(handle)  # type: ignore[no-any-return]


def sign_job(job: Job) -> str:
    return signing.TimestampSigner(salt=_SALT).sign(str(job.pk))


def unsign_job(token: str) -> str:
    """The job id in a results token; raises signing.BadSignature (or SignatureExpired)."""
    return signing.TimestampSigner(salt=_SALT).unsign(token, max_age=settings.RESULTS_LINK_MAX_AGE)
