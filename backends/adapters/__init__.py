"""Adapters are registered per device backend here, and only here."""

from __future__ import annotations

from backends.adapters.base import Adapter, BackendUnavailable, Result, RunConfig
from backends.adapters.emulator import EmuMpsAdapter, EmuSvAdapter, QutipAdapter
from backends.models import Device

ADAPTERS: dict[str, type[Adapter]] = {
    Device.Backend.QUTIP: QutipAdapter,
    Device.Backend.EMU_SV: EmuSvAdapter,
    Device.Backend.EMU_MPS: EmuMpsAdapter,
}


def get_adapter(device: Device) -> Adapter:
    if device.backend == Device.Backend.QPU:
        from backends.adapters.qpu import QpuAdapter

        return QpuAdapter(device)
    return ADAPTERS[device.backend](device)


__all__ = ["Adapter", "BackendUnavailable", "Result", "RunConfig", "get_adapter"]
