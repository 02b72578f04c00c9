"""Small builders shared by the SDK tests: cheap sequences (2-3 atoms run in ~50 ms on EMU_FREE)."""

from __future__ import annotations

from typing import Any

from pulser import Pulse, Register, Sequence
from pulser.devices import MockDevice
from pulser.register.special_layouts import TriangularLatticeLayout

from tests.conftest import wait_until


def omega_sequence(n_atoms: int = 2) -> str:
    """The seed's open-batch example: a fixed register and a declared `omega_max`."""
    seq = Sequence(Register.rectangle(1, n_atoms, spacing=6, prefix="q"), MockDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    omega = seq.declare_variable("omega_max")
    seq.add(Pulse.ConstantPulse(duration=100, amplitude=omega, detuning=0, phase=0), "rydberg")
    return str(seq.to_abstract_repr())


def seed_mappable_sequence() -> str:
    """Exactly the seed's "different registers" sequence: no variable but the register."""
    layout = TriangularLatticeLayout(n_traps=100, spacing=5)
    seq = Sequence(layout.make_mappable_register(n_qubits=30), MockDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(Pulse.ConstantPulse(duration=100, amplitude=1, detuning=0, phase=0), "rydberg")
    return str(seq.to_abstract_repr())


def wait_batch_settled(sdk: Any, batch_id: str, timeout: float = 120) -> Any:
    """Poll the SDK's own status call (no 2-4-8 s back-off) until no job is pending or running."""

    def settled() -> Any:
        status = batch_data(sdk, batch_id)
        counts = status["jobs_count_per_status"]
        return status if not counts.get("PENDING") and not counts.get("RUNNING") else None

    return wait_until(settled, timeout=timeout, interval=0.2)


def wait_batch_done(sdk: Any, batch_id: str, timeout: float = 120) -> Any:
    """Poll until the (closed) batch itself is terminal; returns the refreshed SDK Batch."""
    wait_until(lambda: batch_data(sdk, batch_id)["status"] not in ("PENDING", "RUNNING"), timeout=timeout, interval=0.2)
    return sdk.get_batch(batch_id)


def batch_data(sdk: Any, batch_id: str) -> dict[str, Any]:
    """GET /api/v2/batches/{id} through the SDK's HTTP client (both SDK lines have it)."""
    return dict(sdk._client.get_batch(batch_id))


def sdk_version(sdk: Any) -> tuple[int, ...]:
    from pasqal_cloud._version import __version__

    return tuple(int(part) for part in __version__.split(".")[:3])
