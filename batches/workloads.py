"""Workloads: one standalone run on a backend (the SDK's create/get/cancel_workload).

A workload owns a one-job closed batch made by `services.create_batch`, so the device queue,
the credits (charged on acceptance, 402 when the project cannot pay, refunded once on cancel
or platform ERROR), the worker, the lease and the result file are the batches' own. Its
status and timestamps are read from that job; its batch carries the tag `workload`.

Workload types and their `config` (unknown keys are refused, so typos do not pass silently):

``"pulser"`` — run a Pulser sequence for some shots:

=======================  ========  ==================================================================
key                      type      meaning
=======================  ========  ==================================================================
sequence                 str       required: ``Sequence.to_abstract_repr()`` (may be parametrized)
runs                     int       required: shots, from 1 to the backend's maximum
variables                object    optional: the sequence's declared variables (and ``qubits`` for
                                   a mappable register), exactly as a batch job's ``variables``
configuration            object    optional: emulator options, as a batch's ``configuration``
                                   (``with_noise``, ``noise_model``, ``sampling_rate``, ``dt``…)
=======================  ========  ==================================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet

from backends.adapters import get_adapter
from backends.models import Device
from batches import services
from batches.models import WORKLOAD_TAG, Batch, Workload
from jobs.models import Job, JobStatus
from portal.errors import Conflict, InvalidInput, NotFound
from portal.models import Project

PULSER = "pulser"
WORKLOAD_TYPES = (PULSER,)
PULSER_CONFIG_REQUIRED = ("sequence", "runs")
PULSER_CONFIG_OPTIONAL = ("variables", "configuration")


@dataclass(frozen=True)
class PulserRun:
    """A checked `pulser` config: what the workload's one job runs."""

    sequence: str
    runs: int
    variables: dict[str, Any] | None
    configuration: dict[str, Any] | None


def check_workload_type(workload_type: Any) -> str:
    if workload_type not in WORKLOAD_TYPES:
        supported = ", ".join(repr(t) for t in WORKLOAD_TYPES)
        raise InvalidInput(
            f"Unknown workload_type {workload_type!r}. Supported workload types: {supported}.", field="workload_type"
        )
    return str(workload_type)


def parse_pulser_config(config: Any, device: Device) -> PulserRun:
    """Every check a batch job gets at submission (pulser deserialize + build, device limits),
    with messages that name the `config.<key>` at fault. Nothing is written."""
    if not isinstance(config, dict):
        raise InvalidInput("'config' must be an object.", field="config")
    allowed = PULSER_CONFIG_REQUIRED + PULSER_CONFIG_OPTIONAL
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"config: unknown key {', '.join(repr(k) for k in unknown)}; a '{PULSER}' workload takes: "
            f"{', '.join(allowed)}.",
            field=f"config.{unknown[0]}",
        )
    # NUL cannot be stored in PostgreSQL's jsonb (a 500 there); the sequence is text, checked by pulser.
    if "\\u0000" in json.dumps({k: v for k, v in config.items() if k != "sequence"}):
        raise InvalidInput("config may not contain NUL characters.", field="config")
    for key in PULSER_CONFIG_REQUIRED:
        if config.get(key) is None:
            raise InvalidInput(
                f"config.{key} is required for a '{PULSER}' workload ({_PULSER_KEYS[key]}).", field=f"config.{key}"
            )
    adapter = get_adapter(device)
    runs = config["runs"]
    limit = adapter.max_runs()
    if not isinstance(runs, int) or isinstance(runs, bool) or not 1 <= runs <= limit:
        raise InvalidInput(
            f"config.runs must be a whole number of shots from 1 to {limit} on {device.name}; got {runs!r}.",
            field="config.runs",
        )
    configuration = config.get("configuration")
    if configuration is not None and not isinstance(configuration, dict):
        raise InvalidInput(
            f"config.configuration must be an object ({_PULSER_KEYS['configuration']}).", field="config.configuration"
        )
    errors = adapter.validate_configuration(configuration)
    if errors:
        raise InvalidInput(" ".join(f"config.{e}" for e in errors), field="config.configuration")
    # The checks of a batch's job, with the workload's field names.
    try:
        seq = services.check_sequence(adapter, config["sequence"], field="config.sequence")
    except InvalidInput as exc:
        prefix = "" if exc.message.startswith("'config.sequence'") else "config.sequence: "
        raise InvalidInput(prefix + exc.message, field="config.sequence") from exc
    run = PulserRun(
        sequence=config["sequence"], runs=runs, variables=config.get("variables"), configuration=configuration
    )
    try:
        services.check_job(adapter, seq, services.JobSpec(runs=runs, variables=run.variables), where="config.variables")
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="config.variables") from exc
    return run


_PULSER_KEYS = {
    "sequence": "a Pulser sequence's abstract representation, Sequence.to_abstract_repr()",
    "runs": "the number of shots",
    "configuration": "emulator options, as a batch's configuration",
}


def create_workload(project: Project, user: User, *, workload_type: Any, backend: Any, config: Any) -> Workload:
    """Validate, then create the workload and its one-job batch and charge it, all or nothing (402)."""
    check_workload_type(workload_type)
    device = services.resolve_device(backend, field="backend", label="Backend")
    run = parse_pulser_config(config, device)
    with transaction.atomic():
        batch = services.create_batch(
            project,
            user,
            sequence_builder=run.sequence,
            jobs=[services.JobSpec(runs=run.runs, variables=run.variables)],
            device_type=device.name,
            tags=[WORKLOAD_TAG],
            configuration=run.configuration,
            validate=False,  # done above, with the workload's field names
        )
        # The sequence is kept once, in the batch; `workload_config` puts it back.
        stored = {key: value for key, value in config.items() if key != "sequence"}
        return Workload.objects.create(
            project=project, user=user, batch=batch, workload_type=workload_type, config=stored
        )


def workload_config(workload: Workload) -> dict[str, Any]:
    """The config as it was sent."""
    return {"sequence": workload.batch.sequence_builder, **workload.config}


def workload_job(workload: Workload) -> Job:
    return workload.batch.jobs.get()


def workload_status(workload: Workload, job: Job) -> str:
    """The job's status; a job still PENDING in an ended batch (never, today) takes the batch's."""
    if job.status == JobStatus.PENDING and workload.batch.is_terminal:
        return str(workload.batch.status)
    return str(job.status)


def workloads_for(user: User) -> QuerySet[Workload]:
    return Workload.objects.filter(project__memberships__user=user)


def _with_batch(workloads: QuerySet[Workload]) -> QuerySet[Workload]:
    """With what a response reads: the batch and its device."""
    return workloads.select_related("batch", "batch__device")


def reload(workload: Workload) -> Workload:
    """The workload as it is now, with its batch and device."""
    return _with_batch(Workload.objects.all()).get(pk=workload.pk)


def get_workload_for(user: User, workload_id: UUID | str) -> Workload:
    """A workload of one of the user's projects, else NotFound (404, never 403: ids don't leak)."""
    workload = _with_batch(workloads_for(user)).filter(pk=workload_id).first()
    if workload is None:
        raise NotFound(f"Workload {workload_id} not found.")
    return workload


class _StartedMeanwhile(Exception):
    """The job left PENDING between our read and the cancel: undo the batch's cancel."""


def cancel_workload(workload: Workload, *, by: User | None) -> Workload:
    """Only a PENDING workload can be canceled (as a job, DESIGN rule 7): it leaves the queue and
    is refunded once. A running one finishes and keeps its result; an ended one is a 409."""
    try:
        with transaction.atomic():
            report = services.cancel_batch(workload.batch, by=by)
            if not report.canceled:
                raise _StartedMeanwhile
    except (Conflict, _StartedMeanwhile):
        status = workload_status(workload, workload_job(workload))
        if status == JobStatus.RUNNING:
            raise Conflict(
                f"Workload {workload.id} is RUNNING: only a PENDING workload can be canceled; "
                "a running one finishes and keeps its result."
            ) from None
        raise Conflict(f"Workload {workload.id} is {status}: it can no longer be canceled.") from None
    return reload(workload)


def workload_id_of(batch: Batch) -> UUID | None:
    """The workload a batch runs, if it is one (the portal labels such batches).

    Only a batch tagged `workload` can be one: the others (nearly all) cost no query."""
    if WORKLOAD_TAG not in (batch.tags or []):
        return None
    return Workload.objects.filter(batch=batch).values_list("pk", flat=True).first()
