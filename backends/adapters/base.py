"""The adapter interface every backend implements, and the checks they share."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from pulser import Sequence
from pulser.devices._device_datacls import BaseDevice

from backends.models import Device
from backends.sequences import device_from_specs


@dataclass
class Result:
    """What a run produces: counts per bitstring, the raw shots, Pulser's own result JSON."""

    counter: dict[str, int]
    raw: list[str]
    serialised_results: str | None = None
    handle: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"counter": self.counter, "raw": self.raw, "serialised_results": self.serialised_results}


@dataclass
class RunConfig:
    """Batch-level options: the SDK's `configuration` dict and `backend_configuration` string."""

    configuration: dict[str, Any] = field(default_factory=dict)
    backend_configuration: str | None = None
    job_id: str = ""


class BackendUnavailable(Exception):
    """The backend could not run the job (not the user's fault): the job is refunded."""


class Adapter:
    """A backend. Subclasses implement `run`; `validate` holds the checks every device needs."""

    #: QPUs only run sequences written for exactly their device.
    requires_exact_device = False

    def __init__(self, device: Device) -> None:
        self.device = device

    @functools.cached_property
    def pulser_device(self) -> BaseDevice:
        return device_from_specs(self.device.specs)

    def status(self) -> tuple[str, str]:
        """(UP / DOWN / MAINTENANCE, reason). Adapters whose package is missing say DOWN."""
        return Device.Status.UP, ""

    def specs(self) -> str:
        return self.device.specs

    def max_runs(self) -> int:
        device_max = getattr(self.pulser_device, "max_runs", None)
        return min(device_max or settings.MAX_RUNS_PER_JOB, settings.MAX_RUNS_PER_JOB)

    def validate_sequence(self, seq: Sequence) -> list[str]:
        """Checks on the (unbuilt) sequence, done once per batch."""
        errors = []
        target = self.pulser_device
        if self.requires_exact_device and seq.device != target:
            # Compared with ==: a tampered or outdated spec keeps the device's name.
            declared = (
                f"embeds specs of '{seq.device.name}' that differ from {self.device.name}'s current specs"
                if seq.device.name == target.name
                else f"is declared for device '{seq.device.name}', not for {self.device.name}"
            )
            errors.append(
                f"The sequence {declared}: build it with the device from get_device_specs_dict()['{self.device.name}']."
            )
        available = set(target.channels)
        for name, channel_obj in seq.declared_channels.items():
            channel_id = _channel_id(seq, name, channel_obj)
            if channel_id is not None and channel_id not in available:
                errors.append(
                    f"Channel '{name}' uses '{channel_id}', which {self.device.name} does not have "
                    f"(it has: {', '.join(sorted(available))})."
                )
        return errors

    def validate(self, built: Sequence, runs: int) -> list[str]:
        """Checks on one job's built sequence and runs."""
        errors = []
        limit = self.max_runs()
        if runs < 1 or runs > limit:
            errors.append(f"'runs' must be between 1 and {limit} on {self.device.name}; got {runs}.")
        n_atoms = len(built.register.qubit_ids)
        max_atoms = getattr(self.pulser_device, "max_atom_num", None)
        if n_atoms == 0:
            errors.append("The register has no atom: give at least one qubit.")
        elif max_atoms and n_atoms > max_atoms:
            errors.append(f"The register has {n_atoms} atoms; {self.device.name} allows at most {max_atoms}.")
        return errors

    def validate_configuration(self, configuration: dict[str, Any] | None) -> list[str]:
        """Checks on the batch's `configuration` (noise model, sampling rate…), at submission."""
        return []

    def run(self, built: Sequence, runs: int, config: RunConfig) -> Result:
        raise NotImplementedError

    def cancel(self, handle: str) -> None:
        """Stop a run started elsewhere (QPU). Local emulators finish what they started."""


def _channel_id(seq: Sequence, name: str, channel_obj: Any) -> str | None:
    for channel_id, channel in seq.device.channels.items():
        if channel == channel_obj:
            return str(channel_id)
    return None


def result_from_counter(counter: Counter[str] | dict[str, int], serialised: str | None) -> Result:
    """`raw` lists each shot's bitstring, most frequent first (shots are exchangeable)."""
    counts = {str(k): int(v) for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))}
    raw = [bits for bits, n in counts.items() for _ in range(n)]
    return Result(counter=counts, raw=raw, serialised_results=serialised)
