"""Running one job: claim it, run the adapter under a renewed lease, store the result, end it.

Every step is a conditional UPDATE fenced by the lease owner, so a redelivered message,
a second worker or a worker that lost its lease can never end a job twice.
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from backends.adapters import BackendUnavailable, RunConfig, get_adapter
from backends.sequences import build, check_variables, sequence_cache
from batches import lifecycle, scheduler
from jobs.models import Job, JobStatus
from jobs.results import store_result
from portal.errors import TweezerError

log = logging.getLogger(__name__)


def claim(job_id: str, owner: str) -> Job | None:
    """The job, claimed for `owner` (PENDING → RUNNING), or None if it is not ours to run
    (gone, canceled, running elsewhere, or not its turn)."""
    return lifecycle.claim_job(job_id, owner)


class Heartbeat:
    """Renews the job's lease every third of its length while the backend runs."""

    def __init__(self, job_id: str, owner: str) -> None:
        self.job_id, self.owner = job_id, owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        interval = max(settings.JOB_LEASE_SECONDS / 3, 0.2)
        try:
            while not self._stop.wait(interval):
                try:
                    if not lifecycle.renew_lease(self.job_id, self.owner):
                        return  # lost: the tick re-queued or ended the job
                except Exception:  # noqa: BLE001 - a blip; the next beat tries again
                    log.warning("heartbeat for job %s failed", self.job_id, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()


def execute(job_id: str) -> None:
    """The body of the `run_job` task.

    After a job ends, the worker claims the next PENDING job of the same batch itself and
    runs it at once (the batch owns its slot, rule 2 keeps the order): no broker round trip
    and no full `advance` between the jobs of a batch. `advance` runs when the batch has no
    job left to chain and its slot may have moved (it ended, or was canceled meanwhile); an
    open batch left idle keeps its slot, and nothing is left to decide. A message later sent
    for a chained job finds it RUNNING or DONE and does nothing.
    """
    job = claim(job_id, uuid.uuid4().hex)
    if job is None:
        return
    device_id = job.batch.device_id
    while job is not None:
        ending = _run_claimed(job, job.lease_owner)
        job = ending.next_job
    if not ending.idle_open:
        scheduler.advance(device_id)


def stop_on_terminate() -> None:
    """In a worker process, before its first job: remember a SIGTERM, then exit as before.

    The pool's own handler raises SystemExit wherever the job is; inside a backend's C code that
    surfaces as an unrelated error (QuTiP: "Function to integrate must not return a tuple"),
    which must not be taken for the job's own failure. Installed once, from the main thread."""
    if _terminate_watched.is_set() or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        _terminating.set()
        if callable(previous):
            previous(signum, frame)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    _terminate_watched.set()


_terminate_watched = threading.Event()
_terminating = threading.Event()


def _run_claimed(job: Job, owner: str) -> lifecycle.Ending:
    """Runs the claimed job and ends it; the ending holds the batch's next job, claimed as it ended."""
    try:
        with Heartbeat(str(job.pk), owner):
            result = _run(job)
    except BaseException as exc:
        if _terminating.is_set() or not isinstance(exc, Exception):
            # The worker is being stopped (SIGTERM, interrupt): a lost worker, not a failed job.
            lifecycle.hand_back_job(job, owner)
            raise
        ending = _end_failed(job, owner, exc)
    else:
        ending = _end(job, owner, JobStatus.DONE, result_path=store_result(job, result.as_json()))
    return ending


def _end(job: Job, owner: str, status: str, **how: Any) -> lifecycle.Ending:
    return lifecycle.end_job(job, owner, status, claim_next_for=uuid.uuid4().hex, **how)


def _end_failed(job: Job, owner: str, exc: Exception) -> lifecycle.Ending:
    """The job's own failure: the user's input caught late (no refund), or the backend's (refund)."""
    device = job.batch.device
    if isinstance(exc, TweezerError):  # e.g. the device changed since submission
        return _end(job, owner, JobStatus.ERROR, errors=[exc.message])
    if isinstance(exc, BackendUnavailable):
        return _end(job, owner, JobStatus.ERROR, errors=[f"{device.name} failed: {exc}"], refund=True)
    # anything else is ours to pay for
    log.error("job %s failed on %s", job.pk, device.name, exc_info=exc)
    message = f"{device.name} could not run the job ({type(exc).__name__}: {exc}). Credits refunded."
    return _end(job, owner, JobStatus.ERROR, errors=[message[:1000]], refund=True)


def _run(job: Job) -> Any:
    batch = job.batch
    text = job.sequence or batch.sequence_builder or ""
    seq = sequence_cache.get(text)
    where = f"Job {job.order}"
    built = build(seq, check_variables(seq, job.variables, where=where), where=where)
    config = RunConfig(
        configuration=batch.configuration or {},
        backend_configuration=batch.backend_configuration,
        job_id=str(job.pk),
    )
    return get_adapter(batch.device).run(built, job.runs, config)
