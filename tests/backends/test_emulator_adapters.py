"""The emulator adapters against the real packages: counts, raw shots, Pulser results, the batch configuration."""

from __future__ import annotations

import sys

import pytest
from pulser import NoiseModel, Pulse, Register, Sequence
from pulser.backend.results import Results
from pulser.devices import MockDevice

from backends.adapters import RunConfig, get_adapter
from backends.adapters.emulator import DEFAULT_NOISE, _options
from backends.devices import sync_devices
from portal.errors import InvalidInput


def built_sequence(n_atoms: int = 3, omega: float = 2.0, device=MockDevice) -> Sequence:  # type: ignore[no-untyped-def]
    seq = Sequence(Register.rectangle(1, n_atoms, spacing=6, prefix="q"), device)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(Pulse.ConstantPulse(duration=300, amplitude=omega, detuning=0, phase=0), "rydberg")
    return seq


def check_result(result, runs: int, n_atoms: int) -> None:  # type: ignore[no-untyped-def]
    assert sum(result.counter.values()) == runs
    assert len(result.raw) == runs
    assert all(len(bits) == n_atoms for bits in result.raw)
    assert {bits: result.raw.count(bits) for bits in set(result.raw)} == result.counter
    restored = Results.from_abstract_repr(result.serialised_results)
    assert dict(restored.final_bitstrings) == result.counter
    assert list(restored.atom_order) == [f"q{i}" for i in range(n_atoms)]


def test_emu_free_runs_the_sequence_with_qutip(devices):
    result = get_adapter(devices["EMU_FREE"]).run(built_sequence(3), 200, RunConfig())

    check_result(result, runs=200, n_atoms=3)
    assert len(result.counter) > 1  # a 2 rad/µs pulse for 300 ns excites some atoms


def test_emu_free_without_noise_never_flips_an_atom_that_no_pulse_touches(devices):
    result = get_adapter(devices["EMU_FREE"]).run(built_sequence(2, omega=0.0), 300, RunConfig())

    assert result.counter == {"00": 300}


def test_emu_free_applies_the_batch_noise_model(devices):
    configuration = {"with_noise": True, "noise_model": {"p_false_pos": 0.4, "p_false_neg": 0.1}}

    result = get_adapter(devices["EMU_FREE"]).run(
        built_sequence(2, omega=0.0), 300, RunConfig(configuration=configuration)
    )

    assert sum(result.counter.values()) == 300
    assert result.counter.get("00", 0) < 300  # false positives only come from the noise model
    assert {"01", "10"} & set(result.counter)


def test_with_noise_and_no_model_uses_pulsers_spam_defaults(devices):
    adapter = get_adapter(devices["EMU_FREE"])

    options = _options(10, RunConfig(configuration={"with_noise": True}), adapter.pulser_device)

    assert options["noise_model"] == NoiseModel(**DEFAULT_NOISE)
    assert "noise_model" not in _options(10, RunConfig(configuration={"with_noise": False}), adapter.pulser_device)


def test_a_noise_model_given_as_pulser_json_is_used_as_is(devices):
    model = NoiseModel(state_prep_error=0.02, p_false_pos=0.03, p_false_neg=0.04)
    configuration = {"with_noise": True, "noise_model": model.to_abstract_repr()}

    options = _options(10, RunConfig(configuration=configuration), None)

    assert options["noise_model"] == model


def test_a_bad_noise_model_or_sampling_rate_is_the_users_error(devices):
    adapter = get_adapter(devices["EMU_FREE"])
    with pytest.raises(InvalidInput) as caught:
        adapter.run(built_sequence(2), 10, RunConfig(configuration={"with_noise": True, "noise_model": {"nope": 1}}))
    assert "configuration.noise_model is not a valid Pulser NoiseModel" in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        adapter.run(built_sequence(2), 10, RunConfig(configuration={"sampling_rate": 3}))
    assert "sampling_rate must be a number in (0, 1]" in caught.value.message


def test_emu_free_honours_the_sampling_rate(devices):
    result = get_adapter(devices["EMU_FREE"]).run(
        built_sequence(2), 50, RunConfig(configuration={"sampling_rate": 0.2})
    )

    assert sum(result.counter.values()) == 50


@pytest.mark.emulators
def test_emu_sv_runs_the_sequence(devices):
    pytest.importorskip("emu_sv")
    assert devices["EMU_SV"].status == "UP"

    result = get_adapter(devices["EMU_SV"]).run(built_sequence(3), 100, RunConfig())

    check_result(result, runs=100, n_atoms=3)


@pytest.mark.emulators
def test_emu_mps_runs_the_sequence(devices):
    pytest.importorskip("emu_mps")
    assert devices["EMU_MPS"].status == "UP"

    result = get_adapter(devices["EMU_MPS"]).run(built_sequence(3), 100, RunConfig())

    check_result(result, runs=100, n_atoms=3)


@pytest.mark.emulators
def test_emu_sv_applies_the_noise_model(devices):
    pytest.importorskip("emu_sv")
    configuration = {"with_noise": True, "noise_model": {"p_false_pos": 0.4}}

    result = get_adapter(devices["EMU_SV"]).run(
        built_sequence(2, omega=0.0), 200, RunConfig(configuration=configuration)
    )

    assert sum(result.counter.values()) == 200 and result.counter.get("00", 0) < 200


@pytest.mark.parametrize(
    ("name", "module", "package"), [("EMU_SV", "emu_sv", "emu-sv"), ("EMU_MPS", "emu_mps", "emu-mps")]
)
def test_a_device_whose_package_is_missing_is_down_with_the_reason(db, monkeypatch, name, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # what `import` sees when the package is not installed

    device = {d.name: d for d in sync_devices()}[name]

    assert device.status == "DOWN"
    assert device.status_reason == f"{package} is not installed on this server."
    assert {d.name: d.status for d in sync_devices()}["EMU_FREE"] == "UP"
