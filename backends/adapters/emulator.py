"""Emulators: pulser-simulation (QuTiP) for EMU_FREE; emu-sv and emu-mps when installed."""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

from pulser import Sequence
from pulser.backend import BitStrings

from backends.adapters.base import Adapter, Result, RunConfig, result_from_counter
from backends.models import Device


def _serialise(results: Any) -> str | None:
    try:
        return str(results.to_abstract_repr())
    except Exception:  # noqa: BLE001 - a result pulser cannot serialise still has its counts
        return None


def _noise_model(configuration: dict[str, Any]) -> Any:
    """The SDK's EmuFreeConfig-like dict: `with_noise` + an optional pulser NoiseModel."""
    from pulser import NoiseModel

    if not configuration.get("with_noise"):
        return None
    params = configuration.get("noise_model") or {}
    if isinstance(params, str):
        return NoiseModel.from_abstract_repr(params)
    if isinstance(params, dict) and params:
        return NoiseModel(**params)
    return None


class QutipAdapter(Adapter):
    """EMU_FREE: exact emulation with QuTiP through pulser-simulation's QutipBackendV2."""

    def status(self) -> tuple[str, str]:
        if importlib.util.find_spec("pulser_simulation") is None:
            return Device.Status.DOWN, "pulser-simulation is not installed on this server."
        return Device.Status.UP, ""

    def run(self, built: Sequence, runs: int, config: RunConfig) -> Result:
        from pulser_simulation import QutipBackendV2, QutipConfig

        options: dict[str, Any] = {"observables": [BitStrings(evaluation_times=[1.0], num_shots=runs)]}
        noise = _noise_model(config.configuration)
        if noise is not None:
            options["noise_model"] = noise
        if config.configuration.get("sampling_rate"):
            options["sampling_rate"] = float(config.configuration["sampling_rate"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = QutipBackendV2(built, config=QutipConfig(**options)).run()
        return result_from_counter(results.final_bitstrings, _serialise(results))


class EmuTorchAdapter(Adapter):
    """EMU_SV / EMU_MPS: Pasqal's torch emulators, optional (requirements-emu.txt)."""

    package = ""

    def status(self) -> tuple[str, str]:
        if importlib.util.find_spec(self.package) is None:
            return Device.Status.DOWN, f"{self.package.replace('_', '-')} is not installed on this server."
        return Device.Status.UP, ""

    def _backend(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def run(self, built: Sequence, runs: int, config: RunConfig) -> Result:
        backend_cls, config_cls = self._backend()
        import logging

        emu_config = config_cls(
            observables=[BitStrings(evaluation_times=[1.0], num_shots=runs)], log_level=logging.WARNING
        )
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
