"""The QPU adapter against the simulator process: every injected fault ends DONE or ERROR, never a double run."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from pulser import Pulse, Register, Sequence
from pulser.backend.results import Results
from pulser.devices import AnalogDevice

from backends.adapters import BackendUnavailable, RunConfig, get_adapter
from backends.adapters.qpu import QpuAdapter
from backends.models import Device
from tests.conftest import wait_until

FRESNEL = dataclasses.replace(AnalogDevice, name="FRESNEL")


def built_sequence(n_atoms: int = 2, omega: float = 1.0) -> Sequence:
    seq = Sequence(Register.rectangle(1, n_atoms, spacing=6, prefix="q"), FRESNEL)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(Pulse.ConstantPulse(duration=200, amplitude=omega, detuning=0, phase=0), "rydberg")
    return seq


@pytest.fixture
def adapter(qpu, db) -> QpuAdapter:  # type: ignore[no-untyped-def]
    device = Device(name="FRESNEL", backend=Device.Backend.QPU, specs=FRESNEL.to_abstract_repr())
    made = get_adapter(device)
    assert isinstance(made, QpuAdapter)
    return made


def run(adapter: QpuAdapter, key: str, runs: int = 50):  # type: ignore[no-untyped-def]
    return adapter.run(built_sequence(), runs, RunConfig(job_id=key))


def test_a_clean_run_returns_counts_raw_shots_and_pulser_results(adapter, qpu):
    result = run(adapter, "job-clean", runs=50)

    assert sum(result.counter.values()) == 50
    assert sorted(result.raw) == sorted(bits for bits, n in result.counter.items() for _ in range(n))
    restored = Results.from_abstract_repr(result.serialised_results)
    assert dict(restored.final_bitstrings) == result.counter
    assert qpu.stats()["runs"] == {"job-clean": 1}


@pytest.mark.parametrize(
    ("faults", "submissions"),
    [
        ({"submit": ["503", "503"]}, 3),  # refused twice before it accepted
        ({"submit": ["500_after"]}, 2),  # accepted, then answered 500: the retry finds the same job
        ({"submit": ["drop_after"]}, 2),  # accepted, then the connection dropped
        ({"submit": ["drop"]}, 2),  # dropped before anything happened
        ({"submit": ["slow"]}, 2),  # accepted, answered after our read timeout
        ({"status": ["503", "drop", "slow"], "result": ["500_after", "drop"]}, 1),
    ],
    ids=["submit-503", "submit-500-after", "submit-drop-after", "submit-drop", "submit-timeout", "poll-and-fetch"],
)
def test_transient_faults_are_retried_and_the_job_runs_exactly_once(adapter, qpu, faults, submissions):
    qpu.faults(**faults)

    result = run(adapter, "job-retried", runs=30)

    assert sum(result.counter.values()) == 30
    stats = qpu.stats()
    assert stats["submissions"] == {"job-retried": submissions}
    assert stats["runs"] == {"job-retried": 1}
    assert stats["faults"] == {}  # every injected fault was met


def test_a_resubmitted_job_after_a_worker_crash_gets_the_first_run_back(adapter, qpu):
    first = run(adapter, "job-crashed-worker")
    again = run(adapter, "job-crashed-worker")

    assert again.counter == first.counter and again.handle == first.handle
    assert qpu.stats()["runs"] == {"job-crashed-worker": 1}


def test_a_qpu_that_keeps_failing_raises_backend_unavailable_with_a_clear_message(adapter, qpu):
    qpu.faults(submit=["503"] * 4)  # QPU_RETRIES = 3: four attempts, all refused

    with pytest.raises(BackendUnavailable) as caught:
        run(adapter, "job-down")

    assert str(caught.value) == ("the QPU endpoint did not answer POST /jobs after 4 attempts (last: HTTP 503).")
    assert qpu.stats()["runs"] == {}


def test_a_job_that_never_finishes_is_canceled_after_the_maximum_wait(adapter, qpu, settings):
    settings.QPU_MAX_WAIT_SECONDS = 1
    qpu.faults(never_finish=1)

    with pytest.raises(BackendUnavailable) as caught:
        run(adapter, "job-forever")

    assert "did not finish the job within 1 s" in str(caught.value)
    jobs = list(qpu.stats()["jobs"].values())
    assert [(j["idempotency_key"], j["status"]) for j in jobs] == [("job-forever", "CANCELED")]


def test_cancel_stops_a_queued_job(adapter, qpu):
    qpu.faults(never_finish=1)
    handle = adapter.submit(built_sequence(), 10, "job-to-cancel")

    adapter.cancel(handle)

    assert adapter.poll(handle)["status"] == "CANCELED"


def test_a_sequence_for_another_device_ends_the_qpu_job_in_error(adapter, qpu):
    seq = Sequence(Register.rectangle(1, 2, spacing=6, prefix="q"), AnalogDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(Pulse.ConstantPulse(duration=100, amplitude=1, detuning=0, phase=0), "rydberg")

    with pytest.raises(BackendUnavailable) as caught:
        adapter.run(seq, 10, RunConfig(job_id="job-wrong-device"))

    assert "ended the job ERROR" in str(caught.value) and "not for this QPU" in str(caught.value)


def test_status_follows_the_qpu_health(adapter, qpu):
    assert adapter.status() == ("UP", "")
    qpu.faults(health="MAINTENANCE", reason="calibration until 15:00")
    assert adapter.status() == ("MAINTENANCE", "calibration until 15:00")
    qpu.faults(health="DOWN", reason="cryostat warming up")
    assert adapter.status() == ("DOWN", "cryostat warming up")


def test_an_unreachable_or_unconfigured_qpu_is_down(adapter, settings):
    from tests.backends.conftest import free_port

    settings.QPU_URL = f"http://127.0.0.1:{free_port()}"
    status, reason = get_adapter(adapter.device).status()
    assert status == "DOWN" and "unreachable" in reason and "connection failed" in reason

    settings.QPU_URL = ""
    assert get_adapter(adapter.device).status() == ("DOWN", "No QPU endpoint is configured (QPU_URL).")


def test_a_wrong_token_is_refused_without_retrying(adapter, qpu, settings):
    settings.QPU_TOKEN = "not-the-token"

    with pytest.raises(BackendUnavailable) as caught:
        run(get_adapter(adapter.device), "job-bad-token")  # type: ignore[arg-type]

    assert "HTTP 401" in str(caught.value)
    assert qpu.stats()["submissions"] == {}


def test_fetch_specs_returns_the_device_the_qpu_serves(adapter, qpu):
    from pulser.json.abstract_repr.deserializer import deserialize_device

    assert deserialize_device(adapter.fetch_specs()) == FRESNEL


def test_counts_only_results_still_get_pulser_serialised_results(qpu):
    from backends.adapters.qpu import _serialise_counter

    text = _serialise_counter(built_sequence(3), {"000": 7, "101": 3})

    assert text is not None
    restored = Results.from_abstract_repr(text)
    assert restored.final_bitstrings == Counter({"000": 7, "101": 3})
    assert list(restored.atom_order) == ["q0", "q1", "q2"]


def test_health_polling_sees_the_queue(adapter, qpu):
    qpu.faults(never_finish=1)
    adapter.submit(built_sequence(), 10, "job-queued")
    wait_until(lambda: qpu.stats()["jobs"] and list(qpu.stats()["jobs"].values())[0]["status"] == "RUNNING")
    import requests

    health = requests.get(f"{qpu.url}/health", headers={"Authorization": "Bearer qpu-secret"}, timeout=5).json()
    assert health["queue"] == 1
