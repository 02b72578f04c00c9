"""Emulators: pulser-simulation (QuTiP) for EMU_FREE; emu-sv and emu-mps when installed."""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

from pulser import Sequence
from pulser.backend import BitStrings

from backends.adapters.base import Adapter, Result, RunConfig, result_from_counter
from backends.models import Device
from portal.errors import InvalidInput


def _serialise(results: Any) -> str | None:
    try:
        return str(results.to_abstract_repr())
    except Exception:  # noqa: BLE001 - a result pulser cannot serialise still has its counts
        return None


#: With `with_noise` and no model, the SPAM errors pulser used as its defaults (eta, epsilon, epsilon').
DEFAULT_NOISE: dict[str, Any] = {"state_prep_error": 0.005, "p_false_pos": 0.01, "p_false_neg": 0.05}


def _noise_model(configuration: dict[str, Any], device: Any = None) -> Any:
    """The SDK's EmuFreeConfig: `with_noise`, and optionally a `noise_model` (kwargs or abstract repr)."""
    from pulser import NoiseModel

    if not configuration.get("with_noise"):
        return None
    import jsonschema

    params = configuration.get("noise_model")
    try:
        if isinstance(params, str):
            return NoiseModel.from_abstract_repr(params)
        if isinstance(params, dict) and params:
            return NoiseModel(**params)
        if params is not None and not isinstance(params, dict):
            raise TypeError("give NoiseModel keyword arguments (an object) or its abstract representation (a string)")
    except jsonschema.ValidationError as exc:
        raise InvalidInput(f"configuration.noise_model is not a valid Pulser NoiseModel: {exc.message}") from exc
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"configuration.noise_model is not a valid Pulser NoiseModel: {exc}"[:400]) from exc
    default = getattr(device, "default_noise_model", None)
    return default if default is not None else NoiseModel(**DEFAULT_NOISE)


def _options(runs: int, config: RunConfig, device: Any) -> dict[str, Any]:
    """Options every pulser EmulationConfig takes, from the batch's `configuration`."""
    options: dict[str, Any] = {"observables": [BitStrings(evaluation_times=[1.0], num_shots=runs)]}
    noise = _noise_model(config.configuration, device)
    if noise is not None:
        options["noise_model"] = noise
    return options


def _check_options(adapter: Adapter, configuration: dict[str, Any] | None, extra: Any = None) -> list[str]:
    try:
        _options(1, RunConfig(configuration=configuration or {}), adapter.pulser_device)
        if extra is not None:
            extra(configuration or {})
    except InvalidInput as exc:
        return [exc.message]
    return []


def _sampling_rate(configuration: dict[str, Any]) -> float | None:
    rate = configuration.get("sampling_rate")
    if rate is None:
        return None
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 < rate <= 1:
        raise InvalidInput(f"configuration.sampling_rate must be a number in (0, 1]; got {rate!r}.")
    return float(rate)


class QutipAdapter(Adapter):
    """EMU_FREE: exact emulation with QuTiP through pulser-simulation's QutipBackendV2."""

    def validate_configuration(self, configuration: dict[str, Any] | None) -> list[str]:
        return _check_options(self, configuration, _sampling_rate)

    def status(self) -> tuple[str, str]:
        if importlib.util.find_spec("pulser_simulation") is None:
            return Device.Status.DOWN, "pulser-simulation is not installed on this server."
        return Device.Status.UP, ""

    def run(self, built: Sequence, runs: int, config: RunConfig) -> Result:
        from pulser_simulation import QutipBackendV2, QutipConfig

        options = _options(runs, config, self.pulser_device)
        rate = _sampling_rate(config.configuration)
        if rate is not None:
            options["sampling_rate"] = rate
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = QutipBackendV2(built, config=QutipConfig(**options)).run()
        return result_from_counter(results.final_bitstrings, _serialise(results))


class EmuTorchAdapter(Adapter):
    """EMU_SV / EMU_MPS: Pasqal's torch emulators, optional (the `emulators` extra: `make emulators`)."""

    package = ""

    def validate_configuration(self, configuration: dict[str, Any] | None) -> list[str]:
        return _check_options(self, configuration)

    def status(self) -> tuple[str, str]:
        if importlib.util.find_spec(self.package) is None:
            return Device.Status.DOWN, f"{self.package.replace('_', '-')} is not installed on this server."
        return Device.Status.UP, ""

    def _backend(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def run(self, built: Sequence, runs: int, config: RunConfig) -> Result:
        backend_cls, config_cls = self._backend()
        import logging

        options = _options(runs, config, self.pulser_device)
        dt = config.configuration.get("dt")
        if isinstance(dt, (int, float)) and not isinstance(dt, bool) and dt > 0:
            options["dt"] = int(dt)  # EmuTNConfig's time step (ns)
        emu_config = config_cls(**options, log_level=logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = backend_cls(built, config=emu_config).run()
        return result_from_counter(results.final_bitstrings, _serialise(results))


class EmuSvAdapter(EmuTorchAdapter):
    package = "emu_sv"

    def _backend(self) -> tuple[Any, Any]:
        from emu_sv import SVBackend, SVConfig

        return SVBackend, SVConfig


class EmuMpsAdapter(EmuTorchAdapter):
    package = "emu_mps"

    def _backend(self) -> tuple[Any, Any]:
        from emu_mps import MPSBackend, MPSConfig

        return MPSBackend, MPSConfig
