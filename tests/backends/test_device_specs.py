"""Device specs: pulser JSON the SDK hands back to pulser, reloaded by `manage.py sync_devices`."""

from __future__ import annotations

import dataclasses
import io

import pytest
from django.core.management import call_command
from pulser.devices import AnalogDevice, MockDevice
from pulser.json.abstract_repr.deserializer import deserialize_device

from backends.models import Device
from backends.sequences import device_from_specs
from tests.backends.conftest import QpuSimulator


def test_get_device_specs_dict_through_the_sdk_gives_specs_pulser_deserializes(sdk, devices):
    specs = sdk.get_device_specs_dict()

    assert set(specs) >= {"EMU_FREE", "EMU_SV", "EMU_MPS", "FRESNEL"}
    for name, text in specs.items():
        device = deserialize_device(text)
        assert device == device_from_specs(Device.objects.get(name=name).specs)
        assert device.name == name
    assert deserialize_device(specs["FRESNEL"]) == dataclasses.replace(AnalogDevice, name="FRESNEL")
    assert deserialize_device(specs["EMU_FREE"]) == dataclasses.replace(MockDevice, name="EMU_FREE", max_atom_num=12)


def test_sync_devices_reloads_emulator_specs_from_pulser(devices):
    Device.objects.filter(name="EMU_FREE").update(specs=AnalogDevice.to_abstract_repr(), price_per_run=7)
    out = io.StringIO()

    call_command("sync_devices", stdout=out)

    device = Device.objects.get(name="EMU_FREE")
    assert deserialize_device(device.specs) == dataclasses.replace(MockDevice, name="EMU_FREE", max_atom_num=12)
    assert device.price_per_run == 7  # staff's price is kept
    assert "EMU_FREE   UP" in out.getvalue()
    assert "FRESNEL    DOWN (No QPU endpoint is configured (QPU_URL).)" in out.getvalue()


@pytest.fixture
def small_qpu(tmp_path):  # type: ignore[no-untyped-def]
    """A simulator serving a different FRESNEL: at most 20 atoms, 500 runs."""
    specs = tmp_path / "fresnel.json"
    specs.write_text(
        dataclasses.replace(AnalogDevice, name="FRESNEL", max_atom_num=20, max_runs=500).to_abstract_repr()
    )
    # Its first /specs answer is a 503 (set from the command line): sync_devices retries.
    sim = QpuSimulator(tmp_path / "qpu.log", "--specs-file", str(specs), "--faults", '{"specs": ["503"]}')
    yield sim
    sim.stop()


def test_sync_devices_loads_fresnel_specs_and_status_from_the_qpu_endpoint(db, small_qpu, settings):
    call_command("sync_devices", stdout=io.StringIO())
    assert Device.objects.get(name="FRESNEL").status == "DOWN"  # no QPU_URL yet

    settings.QPU_URL = small_qpu.url
    settings.QPU_BACKOFF_SECONDS = 0.05
    assert small_qpu.stats()["faults"] == {"specs": ["503"]}
    out = io.StringIO()
    call_command("sync_devices", stdout=out)

    fresnel = Device.objects.get(name="FRESNEL")
    assert deserialize_device(fresnel.specs).max_atom_num == 20
    assert deserialize_device(fresnel.specs).max_runs == 500
    assert (fresnel.status, fresnel.status_reason) == ("UP", "")
    assert "FRESNEL    UP" in out.getvalue()
    assert small_qpu.stats()["faults"] == {}  # the 503 was met and retried

    small_qpu.faults(health="MAINTENANCE", reason="recalibrating")
    call_command("sync_devices", stdout=io.StringIO())
    fresnel.refresh_from_db()
    assert (fresnel.status, fresnel.status_reason) == ("MAINTENANCE", "recalibrating")
