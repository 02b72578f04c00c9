"""Pulser sequences the tests submit, built like the seed document's."""

from __future__ import annotations

from pulser import Pulse, Register, Sequence
from pulser.devices import AnalogDevice, MockDevice
from pulser.register.special_layouts import TriangularLatticeLayout


def seed_mappable_sequence(*, variable: bool = True, duration: int = 100) -> str:
    """The seed's example: 100-trap triangular layout, 30-qubit mappable register, MockDevice."""
    layout = TriangularLatticeLayout(n_traps=100, spacing=5)
    seq = Sequence(layout.make_mappable_register(n_qubits=30), MockDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    amplitude = seq.declare_variable("omega_max") if variable else 1
    seq.add(Pulse.ConstantPulse(duration=duration, amplitude=amplitude, detuning=0, phase=0), "rydberg")
    return str(seq.to_abstract_repr())


def analog_sequence(n_atoms: int = 3, *, device=AnalogDevice) -> str:  # type: ignore[no-untyped-def]
    """A fixed register with a declared `omega_max`."""
    seq = Sequence(Register.rectangle(1, n_atoms, spacing=6, prefix="q"), device)
    seq.declare_channel("rydberg", "rydberg_global")
    omega = seq.declare_variable("omega_max")
    seq.add(Pulse.ConstantPulse(duration=200, amplitude=omega, detuning=0, phase=0), "rydberg")
    return str(seq.to_abstract_repr())


def job(omega: float = 1.0, runs: int = 20, qubits: dict[str, int] | None = None) -> dict[str, object]:
    variables: dict[str, object] = {"omega_max": omega}
    if qubits is not None:
        variables["qubits"] = qubits
    return {"runs": runs, "variables": variables}
