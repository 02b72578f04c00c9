"""Emulators through the whole pipeline: the real SDK (with its configuration objects) → API → worker."""

from __future__ import annotations

import pytest
from pasqal_cloud.device.configuration import EmuFreeConfig
from pulser.backend.results import Results

from jobs.models import Job
from jobs.results import read_result
from tests.sequences import seed_mappable_sequence

QUBITS = {"q0": 1, "q1": 5}


def test_the_sdks_emu_free_noise_config_reaches_the_emulator(sdk, worker):
    # omega_max = 0: without noise every shot reads "00"; SPAM false positives flip some.
    config = EmuFreeConfig(with_noise=True, extra_config={"noise_model": {"p_false_pos": 0.4}})
    jobs = [{"runs": 200, "variables": {"omega_max": 0.0, "qubits": QUBITS}}]

    noisy = sdk.create_batch(seed_mappable_sequence(), jobs, device_type="EMU_FREE", configuration=config, wait=True)
    clean = sdk.create_batch(seed_mappable_sequence(), jobs, device_type="EMU_FREE", wait=True)

    assert noisy.status == "DONE"
    noisy_counts = noisy.ordered_jobs[0].result
    assert sum(noisy_counts.values()) == 200 and noisy_counts.get("00", 0) < 200
    assert clean.ordered_jobs[0].result == {"00": 200}


@pytest.mark.emulators
def test_an_emu_sv_batch_runs_end_to_end(sdk, worker, devices):
    pytest.importorskip("emu_sv")
    assert devices["EMU_SV"].status == "UP"

    batch = sdk.create_batch(
        seed_mappable_sequence(),
        [{"runs": 50, "variables": {"omega_max": 2.0, "qubits": {"q0": 1, "q1": 5, "q2": 7}}}],
        device_type="EMU_SV",
        wait=True,
    )

    job = batch.ordered_jobs[0]
    assert job.status == "DONE" and sum(job.result.values()) == 50
    stored = read_result(Job.objects.get(pk=job.id))
    assert stored is not None
    assert dict(Results.from_abstract_repr(stored["serialised_results"]).final_bitstrings) == stored["counter"]
