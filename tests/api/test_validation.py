"""Validation at submission through the API: one test per error; each is a 400 that names the
field or the job, and creates no batch, no job and no ledger row."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from django.test import Client
from pulser import Pulse, Register, Sequence
from pulser.devices import AnalogDevice, MockDevice
from pulser.register.special_layouts import TriangularLatticeLayout

from backends.models import Device
from batches.models import Batch
from jobs.models import Job
from portal.models import CreditTransaction
from tests.sequences import seed_mappable_sequence

FRESNEL = dataclasses.replace(AnalogDevice, name="FRESNEL")
SEED = seed_mappable_sequence()
QUBITS = {"q0": 1, "q1": 5, "q2": 7}


def fresnel_sequence(*, device: Any = FRESNEL, spacing: float = 6, channel: str = "rydberg_global") -> str:
    seq = Sequence(Register.rectangle(1, 3, spacing=spacing, prefix="q"), device)
    seq.declare_channel("ch", channel)
    omega = seq.declare_variable("omega_max")
    seq.add(Pulse.ConstantPulse(duration=200, amplitude=omega, detuning=0, phase=0), "ch")
    return str(seq.to_abstract_repr())


def on_fresnel(text: str) -> str:
    """The same sequence JSON with FRESNEL's specs embedded (as if written for FRESNEL)."""
    data = json.loads(text)
    data["device"] = json.loads(FRESNEL.to_abstract_repr())
    return json.dumps(data)


@pytest.fixture
def submit(devices, member):  # type: ignore[no-untyped-def]
    """POST a batch; FRESNEL is UP for these tests (nothing reaches a QPU: validation comes first)."""
    Device.objects.filter(name="FRESNEL").update(status=Device.Status.UP, status_reason="")
    client = Client()

    def post(
        sequence: str | None = SEED, jobs: list[dict[str, Any]] | None = None, device: str = "EMU_FREE", **extra: Any
    ) -> Any:
        body = {
            "sequence_builder": sequence,
            "jobs": jobs if jobs is not None else [{"runs": 10, "variables": {"omega_max": 1.0, "qubits": QUBITS}}],
            "device_type": device,
            "project_id": str(member.project_id),
            **extra,
        }
        raw = extra.pop("_raw", None)
        data = raw if raw is not None else json.dumps(body)
        return client.post(
            "/core/api/v1/batches",
            data=data,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {member.token}",
        )

    return post


def refused(response: Any) -> str:
    """The 400's message, after checking that nothing was created or charged."""
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["status"] == "fail" and body["code"] == 400
    assert Batch.objects.count() == 0 and Job.objects.count() == 0
    assert not CreditTransaction.objects.exclude(kind="GRANT").exists()
    assert len(body["message"]) < 1000  # summarized, never pulser's whole schema dump
    return str(body["message"])


def good(**variables: Any) -> dict[str, Any]:
    return {"runs": 10, "variables": {"omega_max": 1.0, "qubits": QUBITS, **variables}}


def test_a_valid_batch_is_accepted_as_the_baseline(submit):
    assert submit(jobs=[good(), good()]).status_code == 200


def test_missing_variable_names_it_and_the_job(submit):
    message = refused(submit(jobs=[good(), {"runs": 10, "variables": {"qubits": QUBITS}}]))
    assert message == "Job 1: missing variable 'omega_max' declared by the sequence."


def test_unknown_variable_names_it_and_lists_the_declared_ones(submit):
    message = refused(submit(jobs=[good(omega_min=0.5)]))
    assert message == "Job 0: unknown variable 'omega_min'; the sequence declares: omega_max."


def test_trap_id_not_in_the_layout_uses_pulsers_message(submit):
    message = refused(submit(jobs=[good(), good(qubits={"q0": 1, "q1": 999})]))
    assert message == "Job 1: All 'trap_ids' must correspond to the ID of a trap."


def test_atoms_closer_than_the_device_minimum_distance(submit):
    close = on_fresnel(fresnel_sequence(device=MockDevice, spacing=3))

    message = refused(submit(close, jobs=[{"runs": 10, "variables": {"omega_max": 1.0}}], device="FRESNEL"))

    assert message.startswith("'sequence_builder' could not be loaded by Pulser: The minimal distance between atoms")
    assert "(5 µm) is not respected" in message


def test_more_atoms_than_the_device_allows(submit):
    layout = TriangularLatticeLayout(n_traps=61, spacing=5)
    seq = Sequence(layout.make_mappable_register(n_qubits=20), MockDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(
        Pulse.ConstantPulse(duration=100, amplitude=seq.declare_variable("omega_max"), detuning=0, phase=0), "rydberg"
    )
    qubits = {f"q{i}": i for i in range(13)}

    message = refused(
        submit(seq.to_abstract_repr(), jobs=[{"runs": 5, "variables": {"omega_max": 1.0, "qubits": qubits}}])
    )

    assert message == "Job 0: The register has 13 atoms; EMU_FREE allows at most 12."


def test_a_channel_the_device_lacks(submit):
    raman = on_fresnel(fresnel_sequence(device=MockDevice, channel="raman_local"))

    message = refused(submit(raman, jobs=[{"runs": 10, "variables": {"omega_max": 1.0}}], device="FRESNEL"))

    assert message == "'sequence_builder' could not be loaded by Pulser: No channel raman_local in the device."


def test_a_sequence_declared_for_another_device(submit):
    message = refused(
        submit(
            fresnel_sequence(device=AnalogDevice),
            jobs=[{"runs": 10, "variables": {"omega_max": 1.0}}],
            device="FRESNEL",
        )
    )
    assert message == (
        "The sequence is declared for device 'AnalogDevice', not for FRESNEL: build it with the device from "
        "get_device_specs_dict()['FRESNEL']."
    )


def test_a_sequence_with_tampered_specs_under_the_right_name(submit):
    tampered = fresnel_sequence(device=dataclasses.replace(FRESNEL, max_atom_num=200))

    message = refused(submit(tampered, jobs=[{"runs": 10, "variables": {"omega_max": 1.0}}], device="FRESNEL"))

    assert message.startswith("The sequence embeds specs of 'FRESNEL' that differ from FRESNEL's current specs")


def test_runs_above_the_device_maximum(submit):
    jobs = [{"runs": 2000, "variables": {"omega_max": 1.0}}, {"runs": 2001, "variables": {"omega_max": 1.0}}]

    message = refused(submit(fresnel_sequence(), jobs=jobs, device="FRESNEL"))

    assert message == "Job 1: 'runs' must be between 1 and 2000 on FRESNEL; got 2001."


def test_runs_above_the_platform_maximum(submit, settings):
    settings.MAX_RUNS_PER_JOB = 500
    message = refused(submit(jobs=[good(), {"runs": 501, "variables": {"omega_max": 1.0, "qubits": QUBITS}}]))
    assert message == "Job 1: 'runs' must be between 1 and 500; got 501."


def test_too_many_jobs_in_one_batch(submit, settings):
    settings.MAX_JOBS_PER_BATCH = 3
    message = refused(submit(jobs=[good()] * 4))
    assert message == "Too many jobs: 4 given, at most 3 per request."


def test_too_many_jobs_is_refused_before_any_job_is_validated(submit, settings):
    # Every job is malformed: the count answers first, before the per-job schema validation
    # that costs 10-20 s of CPU for 100,000 jobs.
    settings.MAX_JOBS_PER_BATCH = 3
    message = refused(submit(jobs=[{"runs": "many", "variables": 7}] * 4))
    assert message == "Too many jobs: 4 given, at most 3 per request."


def test_too_many_jobs_in_one_add_jobs_request_is_refused_before_any_job_is_validated(submit, member, settings):
    opened = submit(jobs=[], open=True).json()["data"]["id"]
    settings.MAX_JOBS_PER_BATCH = 3
    response = Client().post(
        f"/core/api/v2/batches/{opened}/jobs",
        data=json.dumps([{"runs": "many", "variables": 7}] * 4),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {member.token}",
    )
    assert response.status_code == 400, response.content
    assert response.json()["message"] == "Too many jobs: 4 given, at most 3 per request."
    assert response.json()["data"]["field"] == "jobs"
    assert Job.objects.count() == 0


def test_a_sequence_above_the_size_limit(submit, settings):
    settings.MAX_SEQUENCE_BYTES = 1000
    message = refused(submit())
    assert message == f"'sequence_builder' is {len(SEED.encode())} bytes; the limit is 1000 bytes."


def test_a_malformed_sequence(submit):
    message = refused(submit(SEED[:-40]))
    assert message.startswith("'sequence_builder' is not valid JSON: ")


def test_a_malformed_request_body(submit):
    message = refused(submit(_raw='{"sequence_builder": "x", "jobs": [}'))
    assert message == "Cannot parse request body"


def test_valid_json_that_is_not_a_sequence_gets_a_short_summary(submit):
    message = refused(submit('{"register": []}'))
    assert message.startswith("'sequence_builder' is not a valid Pulser abstract representation")


@pytest.mark.parametrize("value", [None, [1.0, None]], ids=["null", "null-in-list"])
def test_a_null_variable(submit, value):
    message = refused(submit(jobs=[good(omega_max=value)]))
    assert message == "Job 0: variable 'omega_max' must be a number (or a list of numbers)."


def test_a_nan_variable_is_refused_naming_it_before_it_reaches_the_database(submit):
    message = refused(submit(jobs=[good(omega_max=float("nan"))]))
    assert message == "jobs[0].variables.omega_max: NaN is not a finite number; give a finite number."


def test_empty_qubits(submit):
    message = refused(submit(jobs=[good(), good(qubits={})]))
    assert message.startswith("Job 1: the sequence uses a mappable register, so 'qubits' must map qubit ids")


def test_a_float_trap_id(submit):
    message = refused(submit(jobs=[good(qubits={"q0": 1.0})]))
    assert message == "Job 0: 'qubits' must map qubit ids to integer trap ids."


@pytest.mark.parametrize(
    ("configuration", "expected"),
    [
        (
            {"with_noise": True, "noise_model": {"p_false_pos": 2}},
            "configuration.noise_model is not a valid Pulser NoiseModel: ",
        ),
        ({"with_noise": True, "noise_model": [1, 2]}, "configuration.noise_model is not a valid Pulser NoiseModel: "),
        ({"sampling_rate": 0}, "configuration.sampling_rate must be a number in (0, 1]; got 0."),
    ],
    ids=["noise-out-of-range", "noise-not-an-object", "sampling-rate"],
)
def test_a_bad_emulator_configuration(submit, configuration, expected):
    message = refused(submit(configuration=configuration))
    assert message.startswith(expected)


def test_a_good_noise_configuration_is_accepted(submit):
    configuration = {"with_noise": True, "noise_model": {"p_false_pos": 0.1}, "sampling_rate": 0.5}
    assert submit(configuration=configuration).status_code == 200
