"""Adapters are registered per device backend here, and only here."""

from __future__ import annotations

from backends.adapters.base import Adapter, BackendUnavailable, Result, RunConfig
from backends.adapters.emulator import EmuMpsAdapter, EmuSvAdapter, QutipAdapter
from backends.adapters.qpu import QpuAdapter
from backends.models import Device

ADAPTERS: dict[str, type[Adapter]] = {
    Device.Backend.QUTIP: QutipAdapter,
    Device.Backend.EMU_SV: EmuSvAdapter,
    Device.Backend.EMU_MPS: EmuMpsAdapter,
    Device.Backend.QPU: QpuAdapter,
}


def get_adapter(device: Device) -> Adapter:
    return ADAPTERS[device.backend](device)


__all__ = ["ADAPTERS", "Adapter", "BackendUnavailable", "Result", "RunConfig", "get_adapter"]
