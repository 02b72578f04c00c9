"""The device catalogue: (re)loaded from pulser's device definitions and the QPU endpoint."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from django.conf import settings
from django.utils import timezone
from pulser.devices import AnalogDevice, MockDevice

from backends.models import Device

log = logging.getLogger(__name__)

# name -> (backend, price per run, slots, pulser device spec)
_EMULATOR_ATOMS = {"EMU_FREE": 12, "EMU_SV": 25, "EMU_MPS": 50}


def _emulator_specs(name: str) -> str:
    """Emulators accept any channel (MockDevice) but cap the register at what they can hold."""
    return str(dataclasses.replace(MockDevice, name=name, max_atom_num=_EMULATOR_ATOMS[name]).to_abstract_repr())


def _qpu_specs_fallback() -> str:
    return str(dataclasses.replace(AnalogDevice, name="FRESNEL").to_abstract_repr())


def catalogue() -> list[dict[str, Any]]:
    emu_slots = max(1, int(getattr(settings, "EMULATOR_SLOTS", 2)))
    return [
        {"name": "EMU_FREE", "backend": Device.Backend.QUTIP, "price_per_run": 1, "slots": emu_slots},
        {"name": "EMU_SV", "backend": Device.Backend.EMU_SV, "price_per_run": 2, "slots": emu_slots},
        {"name": "EMU_MPS", "backend": Device.Backend.EMU_MPS, "price_per_run": 2, "slots": emu_slots},
        {"name": "FRESNEL", "backend": Device.Backend.QPU, "price_per_run": 10, "slots": 1},
    ]


def sync_devices() -> list[Device]:
    """Create missing devices and refresh specs and status; keeps prices and slots set by staff.

    Emulator specs come from pulser's device definitions; FRESNEL's from the QPU endpoint's
    `/specs` when it answers (else it keeps the last known specs). Status comes from each adapter.
    """
    from backends.adapters import get_adapter

    devices = []
    for entry in catalogue():
        name = str(entry["name"])
        device, created = Device.objects.get_or_create(
            name=name,
            defaults={
                "backend": entry["backend"],
                "price_per_run": entry["price_per_run"],
                "slots": entry["slots"],
                "specs": _qpu_specs_fallback() if name == "FRESNEL" else _emulator_specs(name),
            },
        )
        adapter = get_adapter(device)
        if name == "FRESNEL":
            specs = _fetch_qpu_specs(adapter)
            if specs:
                device.specs = specs
        else:
            device.specs = _emulator_specs(name)  # reload from pulser's definitions (a pulser upgrade)
        status, reason = adapter.status()
        if device.status != Device.Status.MAINTENANCE and (status, reason) != (device.status, device.status_reason):
            device.status, device.status_reason = status, reason
            device.status_changed_at = timezone.now()
        device.save()
        devices.append(device)
    return devices


def _fetch_qpu_specs(adapter: object) -> str | None:
    fetch = getattr(adapter, "fetch_specs", None)
    if fetch is None or not settings.QPU_URL:
        return None
    try:
        return str(fetch())
    except Exception as exc:  # noqa: BLE001 - an unreachable QPU keeps its last known specs
        log.warning("could not fetch QPU specs: %s", exc)
        return None
