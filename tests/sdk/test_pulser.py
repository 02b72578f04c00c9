"""pulser's remote backends through `pulser_pasqal.PasqalCloud` and `pasqal_cloud.PasqalCloudConnection`."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from django.core.files.base import ContentFile
from pasqal_cloud.authentication import TokenProvider
from pasqal_cloud.endpoints import Endpoints
from pulser import Pulse, Register, Sequence
from pulser.backend import QPUBackend
from pulser.backend.remote import BatchStatus
from pulser.json.abstract_repr.deserializer import deserialize_device
from pulser.register.special_layouts import TriangularLatticeLayout

from backends.models import Device
from batches.models import Batch
from jobs.models import Job
from jobs.storage import results_storage
from tests.conftest import wait_until


class StaticToken(TokenProvider):
    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self) -> str:
        return self._token


def _connection(kind: str, member, live_server):
    kwargs: dict[str, Any] = {
        "project_id": str(member.project_id),
        "token_provider": StaticToken(member.token),
        "endpoints": Endpoints(core=f"{live_server.url}/core", account=f"{live_server.url}/account"),
    }
    if kind == "PasqalCloud":
        from pulser_pasqal import PasqalCloud

        return PasqalCloud(**kwargs)
    try:
        from pasqal_cloud import PasqalCloudConnection
    except ImportError:
        pytest.skip("pasqal_cloud.PasqalCloudConnection arrived after 0.22: pulser_pasqal.PasqalCloud is the way there")
    return PasqalCloudConnection(**kwargs)


@pytest.fixture(params=["PasqalCloud", "PasqalCloudConnection"])
def connection(request, member, devices, live_server):
    return _connection(request.param, member, live_server)


def _sequence(device, n_atoms: int = 3, variable: bool = True) -> Sequence:
    # Atom ids in a deliberately non-sorted order: results must follow the register's order.
    ids = ["q2", "q0", "q1", "q3"][:n_atoms]
    if device.requires_layout:  # the QPU: a register defined from a trap layout
        reg = TriangularLatticeLayout(n_traps=61, spacing=6).define_register(*range(n_atoms), qubit_ids=ids)
    else:
        reg = Register({qid: (6.0 * i, 0.0) for i, qid in enumerate(ids)})
    seq = Sequence(reg, device)
    seq.declare_channel("rydberg", "rydberg_global")
    amplitude = seq.declare_variable("omega_max") if variable else 1.0
    seq.add(Pulse.ConstantPulse(duration=200, amplitude=amplitude, detuning=0, phase=0), "rydberg")
    seq.measure("ground-rydberg")
    return seq


def test_fetch_available_devices_deserialises_every_device(connection):
    available = connection.fetch_available_devices()
    assert set(available) == set(Device.objects.values_list("name", flat=True))
    assert available["EMU_FREE"] == deserialize_device(Device.objects.get(name="EMU_FREE").specs)


def test_emulator_backend_runs_a_closed_batch_and_results_follow_the_register_order(
    member, devices, live_server, worker
):
    from pulser_pasqal import EmuFreeBackendV2

    connection = _connection("PasqalCloud", member, live_server)
    device = connection.fetch_available_devices()["EMU_FREE"]
    seq = _sequence(device)
    backend = EmuFreeBackendV2(seq, connection)
    results = backend.run(
        job_params=[{"runs": 30, "variables": {"omega_max": 2.0}}, {"runs": 40, "variables": {"omega_max": 5.0}}]
    )
    wait_until(lambda: results.get_batch_status() == BatchStatus.DONE, timeout=120, interval=0.2)
    assert Batch.objects.get(pk=results.batch_id).backend_configuration  # the EmulationConfig, as sent
    assert len(results.job_ids) == 2
    for result, runs, job_id in zip(results.results, (30, 40), results.job_ids, strict=True):
        assert list(result.atom_order) == ["q2", "q0", "q1"]
        counts = result.final_bitstrings if hasattr(result, "final_bitstrings") else result.bitstring_counts
        assert sum(counts.values()) == runs
        stored = Job.objects.get(pk=job_id)
        assert Counter(dict(counts)) == Counter(_stored_counter(stored))


def _stored_counter(job: Job) -> dict[str, int]:
    from jobs.results import read_result

    return read_result(job)["counter"]  # type: ignore[index]  # DONE jobs have a result


def test_counter_only_results_become_sampled_results_with_the_register_order(member, devices, live_server, worker):
    """A result without `serialised_results` (e.g. from a QPU) is rebuilt from `counter`."""
    from pulser.result import SampledResult

    connection = _connection("PasqalCloudConnection", member, live_server)
    device = connection.fetch_available_devices()["EMU_FREE"]
    seq = _sequence(device, variable=False)
    remote = connection.submit(seq, job_params=[{"runs": 25}], device_type="EMU_FREE")
    wait_until(lambda: remote.get_batch_status() == BatchStatus.DONE, timeout=120, interval=0.2)
    job = Job.objects.get(pk=remote.job_ids[0])
    storage = results_storage()
    payload = json.loads(storage.open(job.result_path).read())
    payload["serialised_results"] = None
    storage.delete(job.result_path)
    storage.save(job.result_path, ContentFile(json.dumps(payload).encode()))
    (result,) = remote.results
    assert isinstance(result, SampledResult)
    assert list(result.atom_order) == ["q2", "q0", "q1"]
    assert dict(result.bitstring_counts) == payload["counter"]


def test_qpu_backend_open_batch_context_adds_jobs_then_closes(connection, member):
    # FRESNEL in maintenance: batches are accepted and wait in the queue (no QPU runs here).
    Device.objects.filter(name="FRESNEL").update(status=Device.Status.MAINTENANCE)
    fresnel = connection.fetch_available_devices()["FRESNEL"]
    seq = _sequence(fresnel, n_atoms=2)
    backend = QPUBackend(seq, connection)
    with backend.open_batch() as context:
        first = backend.run(job_params=[{"runs": 50, "variables": {"omega_max": 1.0}}])
        second = backend.run(job_params=[{"runs": 60, "variables": {"omega_max": 2.0}}])
        batch_id = context.backend._batch_id
        assert Batch.objects.get(pk=batch_id).open is True  # type: ignore[misc]  # _batch_id is set inside open_batch()
    batch = Batch.objects.get(pk=batch_id)  # type: ignore[misc]
    assert batch.open is False and batch.device.name == "FRESNEL"
    assert first.batch_id == second.batch_id == batch_id
    assert len(first.job_ids) == 1 and len(second.job_ids) == 1 and first.job_ids != second.job_ids
    assert [j.runs for j in batch.jobs.order_by("order")] == [50, 60]
    assert first.get_batch_status() == BatchStatus.PENDING


def test_qpu_backend_closed_batch(connection):
    Device.objects.filter(name="FRESNEL").update(status=Device.Status.MAINTENANCE)
    fresnel = connection.fetch_available_devices()["FRESNEL"]
    backend = QPUBackend(_sequence(fresnel, n_atoms=2), connection)
    remote = backend.run(job_params=[{"runs": 10, "variables": {"omega_max": 1.0}}] * 2)
    batch = Batch.objects.get(pk=remote.batch_id)
    assert batch.open is False and batch.jobs.count() == 2 and batch.device.name == "FRESNEL"
    assert remote.get_batch_status() == BatchStatus.PENDING
