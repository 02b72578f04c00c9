"""A slow job outlives many leases thanks to its heartbeat; 20 SDK loops + 5 pollers, no 5xx."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
import requests
from pulser import Pulse, Register, Sequence
from pulser.devices import MockDevice

from backends.models import Device
from jobs.models import Job, JobStatus
from tests.conftest import purge_broker, wait_until
from tests.reliability.conftest import assert_money_ok, figure, submit
from tests.sequences import analog_sequence

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def slow_sequence() -> str:
    """10 atoms for 15 µs: ~5 s of QuTiP on an idle machine (6 µs took only 2.0 s there, too close
    to the test's two-lease bar), so many one-second leases."""
    seq = Sequence(Register.rectangle(1, 10, spacing=6, prefix="q"), MockDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    omega = seq.declare_variable("omega_max")
    seq.add(Pulse.ConstantPulse(duration=15000, amplitude=omega, detuning=0, phase=0), "rydberg")
    return str(seq.to_abstract_repr())


def test_a_slow_job_kept_alive_by_its_heartbeat_is_not_run_again(transactional_db, devices, make_member, start_worker):
    purge_broker()
    member = make_member(credits=1_000_000)
    start_worker(JOB_LEASE_SECONDS="1", concurrency="1")
    batch = submit(member, 2, sequence=slow_sequence())
    leases: set[Any] = set()

    def done() -> bool:
        leases.update(Job.objects.filter(batch=batch, status=JobStatus.RUNNING).values_list("pk", "lease_expires_at"))
        return not Job.objects.filter(batch=batch, status__in=[JobStatus.PENDING, JobStatus.RUNNING]).exists()

    wait_until(done, timeout=240, interval=0.1)
    jobs = list(batch.jobs.order_by("order"))
    longest = max((j.end_timestamp - j.start_timestamp).total_seconds() for j in jobs)
    figure("slow job: longest run vs lease (s)", f"{longest:.1f} vs 1")
    figure("slow job: distinct leases seen while running", len(leases))
    figure("slow jobs re-run", sum(j.attempts - 1 for j in jobs))
    assert [j.status for j in jobs] == ["DONE", "DONE"], [j.errors for j in jobs]
    assert [j.attempts for j in jobs] == [1, 1]
    assert longest > 2  # the job outlived its lease more than once: only the heartbeat explains it
    assert len(leases) > len(jobs)  # the lease moved forward while the job ran
    assert_money_ok()


CLIENTS, ITERATIONS, POLLERS = 20, 10, 5


@pytest.mark.timeout(900)
def test_twenty_sdk_variational_loops_and_five_pollers_finish_without_a_5xx(
    live_server, devices, make_member, sdk_for, start_worker
):
    purge_broker()
    # Every loop holds an open batch (rule 4): give EMU_FREE a slot per client, so the two
    # worker processes, not the queue of open batches, are what the loops compete for.
    Device.objects.filter(name="EMU_FREE").update(slots=CLIENTS)
    # Production timings (tick 5 s, re-send after 30 s): with the battery's fast ones, re-sent
    # duplicates of queued jobs pile up in the queue faster than two busy workers drain it.
    timings = {"TICK_SECONDS": "5", "JOB_REDISPATCH_SECONDS": "30", "JOB_LEASE_SECONDS": "30"}
    start_worker(concurrency="1", **timings)
    start_worker(concurrency="1", beat="0", **timings)
    sequence = analog_sequence(2)
    members = [make_member(credits=1_000_000) for _ in range(CLIENTS)]
    finished: list[int] = []
    failures: list[str] = []
    batch_ids: dict[int, list[str]] = {}
    poll_codes: Counter[int] = Counter()
    stop = threading.Event()

    def loop(index: int, member: Any) -> None:
        try:
            sdk = sdk_for(member)
            omega = 1.0
            batch = sdk.create_batch(
                sequence, [{"runs": 20, "variables": {"omega_max": omega}}], device_type="EMU_FREE", open=True
            )
            batch_ids[index] = [batch.id]
            for iteration in range(ITERATIONS):
                job_id = batch.ordered_jobs[-1].id
                job = _wait_for_job(sdk, job_id)
                # The "optimizer": nudge the amplitude by the fraction of all-zero shots.
                zeros = job.result.get("00", 0) / max(sum(job.result.values()), 1)
                omega = min(max(omega + 0.5 * (0.5 - zeros), 0.1), 5.0)
                if iteration < ITERATIONS - 1:
                    batch.add_jobs([{"runs": 20, "variables": {"omega_max": omega}}])
            batch.close()
            finished.append(1)
        except Exception as exc:  # noqa: BLE001 - reported as a failure with its message
            failures.append(f"{type(exc).__name__}: {exc}")

    def poller(index: int, member: Any) -> None:
        headers = {"Authorization": f"Bearer {member.token}"}
        with requests.Session() as session:
            while not stop.is_set():
                urls = [f"{live_server.url}/core/api/v1/batches?limit=20"]
                urls += [f"{live_server.url}/core/api/v1/batches/{b}/status" for b in batch_ids.get(index, [])]
                for url in urls:
                    poll_codes[session.get(url, headers=headers, timeout=60).status_code] += 1
                time.sleep(0.2)

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i, m)) for i, m in enumerate(members)]
    pollers = [threading.Thread(target=poller, args=(i, members[i])) for i in range(POLLERS)]
    for thread in [*threads, *pollers]:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    stop.set()
    for thread in pollers:
        thread.join()
    elapsed = time.monotonic() - started

    figure("load: variational loops finished", f"{len(finished)} / {CLIENTS} ({CLIENTS * ITERATIONS} jobs)")
    figure("load: wall time (s)", f"{elapsed:.0f}")
    figure("load: poller responses by status", dict(sorted(poll_codes.items())))
    assert failures == [], failures[:3]
    assert len(finished) == CLIENTS
    assert set(poll_codes) == {200}, poll_codes
    assert Job.objects.filter(status=JobStatus.DONE).count() == CLIENTS * ITERATIONS
    assert_money_ok()


def _wait_for_job(sdk: Any, job_id: str) -> Any:
    """Poll the job ourselves (the SDK's own wait backs off to 8 s)."""
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        job = sdk.get_job(job_id)
        if job.status in ("DONE", "ERROR", "CANCELED"):
            assert job.status == "DONE", (job.status, job.errors)
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")
