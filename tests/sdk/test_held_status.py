"""Held status requests (issue 19) against the real ASGI server (gunicorn + uvicorn's worker, as
`make run` starts it) with a real Celery worker and the unmodified SDK's `wait=True`.

Runs on the embedded default (SQLite, wake-ups by a short poll) and on PostgreSQL + Redis
(wake-ups by Redis pub/sub), as the environment chooses. Timing bounds are generous: the
holds are much longer than the bounds, so passing proves holding and waking, not speed.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from backends.models import Device
from jobs.models import Job
from tests import processes
from tests.conftest import ROOT, wait_until, worker_env
from tests.sdk.helpers import omega_sequence

JOB = {"runs": 10, "variables": {"omega_max": 1.5}}


class AsgiServer:
    """The web role as `make run` starts it (runall.web_command), one worker, on a free port."""

    def __init__(self, log_path: Path, **env: str) -> None:
        from portal.management.commands.runall import web_command

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*web_command(f"127.0.0.1:{port}", workers=1), "--graceful-timeout", "5"],
            cwd=ROOT,
            env=worker_env(**env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"server exited:\n{log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/login/", timeout=10).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or still loading
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not up:\n{log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        processes.stop(self.proc, self.log, timeout=20)


@pytest.fixture
def asgi_server(worker: Any, tmp_path: Path) -> Iterator[Callable[..., AsgiServer]]:
    servers: list[AsgiServer] = []

    def start(**env: str) -> AsgiServer:
        server = AsgiServer(tmp_path / f"web-{len(servers)}.log", **env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def sdk_on(server: AsgiServer, member: Any) -> Any:
    """The real SDK (0.24, or 0.22 under run_pinned_sdk.sh) pointed at the ASGI server."""
    from pasqal_cloud.authentication import TokenProvider
    from pasqal_cloud.endpoints import Endpoints

    try:
        from pasqal_cloud.pasqal_cloud_client import PasqalCloudClient
    except ImportError:  # pasqal-cloud 0.22
        from pasqal_cloud import SDK as PasqalCloudClient  # type: ignore[no-redef]

    class StaticToken(TokenProvider):
        def get_token(self) -> str:
            return str(member.token)

    return PasqalCloudClient(
        project_id=str(member.project_id),
        token_provider=StaticToken(),
        endpoints=Endpoints(core=f"{server.url}/core", account=f"{server.url}/account"),
    )


def _api(server: AsgiServer, member: Any, path: str, timeout: float = 40) -> requests.Response:
    return requests.get(
        f"{server.url}/core{path}", headers={"Authorization": f"Bearer {member.token}"}, timeout=timeout
    )


def test_sdk_wait_returns_as_soon_as_the_job_ends(asgi_server, member, devices):
    """The job waits ~8 s for its device: without holds the SDK's polls (0, 2, 6, 14 s) would
    see its end ~6 s late; held, `add_jobs(wait=True)` returns within moments of it."""
    server = asgi_server(STATUS_HOLD_SECONDS="20")
    sdk = sdk_on(server, member)
    batch = sdk.create_batch(omega_sequence(), [], device_type="EMU_FREE", open=True)
    wait_until(lambda: sdk.get_batch(batch.id).status == "RUNNING", timeout=60)
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    returned: list[float] = []

    def add_and_wait() -> None:
        batch.add_jobs([JOB], wait=True)
        returned.append(time.time())

    waiter = threading.Thread(target=add_and_wait)
    waiter.start()
    time.sleep(8)
    assert waiter.is_alive(), "the SDK returned while its job could not run"
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.UP)
    waiter.join(timeout=60)
    assert returned, "add_jobs(wait=True) never returned"
    job = Job.objects.get(batch_id=batch.id)
    assert job.status == "DONE" and job.end_timestamp is not None
    assert returned[0] - job.end_timestamp.timestamp() < 2.5
    batch.close()


def test_held_job_status_answers_when_the_job_ends(asgi_server, member, devices):
    server = asgi_server(STATUS_HOLD_SECONDS="20")
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    sdk = sdk_on(server, member)
    batch = sdk.create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
    job_id = batch.ordered_jobs[0].id
    threading.Timer(4, lambda: Device.objects.filter(name="EMU_FREE").update(status=Device.Status.UP)).start()
    started = time.monotonic()
    body = _api(server, member, f"/api/v1/jobs/{job_id}/status").json()
    returned = time.time()
    assert body["data"]["status"] == "DONE"
    assert time.monotonic() - started >= 3.5  # held while the device was down
    end = Job.objects.get(pk=job_id).end_timestamp
    assert end is not None and returned - end.timestamp() < 2.5


def test_a_hold_ends_with_the_current_status(asgi_server, member, devices):
    server = asgi_server(STATUS_HOLD_SECONDS="2")
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    sdk = sdk_on(server, member)
    batch = sdk.create_batch(omega_sequence(), [JOB, JOB], device_type="EMU_FREE")
    started = time.monotonic()
    body = _api(server, member, f"/api/v1/batches/{batch.id}/status").json()
    assert 1.8 <= time.monotonic() - started < 10
    assert body["data"]["status"] == "PENDING" and body["data"]["jobs_count_per_status"]["PENDING"] == 2
    # A batch that is over answers at once.
    sdk.cancel_batch(batch.id)
    started = time.monotonic()
    body = _api(server, member, f"/api/v1/batches/{batch.id}/status").json()
    assert body["data"]["status"] == "CANCELED" and time.monotonic() - started < 1.5


def test_the_cap_answers_429_and_a_client_that_leaves_frees_its_slot(asgi_server, member, devices):
    server = asgi_server(STATUS_HOLD_SECONDS="20", HOLD_MAX_PER_TOKEN="2", HOLD_RETRY_AFTER_SECONDS="3")
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    sdk = sdk_on(server, member)
    batch = sdk.create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
    host, port = server.url.removeprefix("http://").split(":")
    raw = (
        f"GET /core/api/v1/batches/{batch.id}/status HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {member.token}\r\n\r\n"
    ).encode()
    held = []
    for _ in range(2):
        conn = socket.create_connection((host, int(port)))
        conn.sendall(raw)
        held.append(conn)
    time.sleep(1)  # both are in their hold

    def third() -> requests.Response:
        return _api(server, member, f"/api/v1/batches/{batch.id}/status", timeout=5)

    refused = third()
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "3"
    assert refused.json()["code"] == 429
    for conn in held:
        conn.close()  # the clients go away mid-hold: their slots and listeners must be freed
    # Freed: a new request is held (times out client-side) instead of refused.
    wait_until(lambda: _status_or_timeout(third) == "held", timeout=15, interval=0.5)


def _status_or_timeout(call: Callable[[], requests.Response]) -> str:
    try:
        return str(call().status_code)
    except requests.Timeout:
        return "held"


def test_portal_streams_push_batch_list_and_queue_changes(asgi_server, member, devices):
    """The list's and queue's stream (`/batches/events/`) with a signed-in session's cookie."""
    from django.test import Client

    from batches import services

    server = asgi_server(STATUS_HOLD_SECONDS="20")
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    client = Client()
    client.force_login(member.user)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    assert requests.get(f"{server.url}/batches/events/", timeout=5).status_code == 401
    with requests.get(f"{server.url}/batches/events/", cookies=cookies, stream=True, timeout=20) as stream:
        assert stream.status_code == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        lines = (str(line) for line in stream.iter_lines(decode_unicode=True))
        assert next(lines) == "retry: 3000"
        sdk_on(server, member).create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
        seen: set[str] = set()
        deadline = time.monotonic() + 15
        while seen != {"event: batches", "event: queue"} and time.monotonic() < deadline:
            line = next(lines)
            if line.startswith("event:"):
                seen.add(line)
        assert seen == {"event: batches", "event: queue"}
    services_batch = member.project.batches.get()
    services.cancel_batch(services_batch, by=member.user)


def test_a_restart_answers_held_requests_at_once_and_the_next_server_holds_again(asgi_server, member, devices):
    """SIGTERM (a deploy, `make run` stopping): held requests answer their current status at once
    instead of keeping the old process up for the rest of their hold; the client's next request,
    to the new process, is held again."""
    server = asgi_server(STATUS_HOLD_SECONDS="20")
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    batch = sdk_on(server, member).create_batch(omega_sequence(), [JOB], device_type="EMU_FREE")
    answers: list[tuple[float, Any]] = []

    def held() -> None:
        response = _api(server, member, f"/api/v1/batches/{batch.id}/status")
        answers.append((time.monotonic(), response.json()))

    waiter = threading.Thread(target=held)
    waiter.start()
    time.sleep(2)
    stopped = time.monotonic()
    server.proc.terminate()
    waiter.join(timeout=30)
    assert answers, "the held request got no answer"
    answered, body = answers[0]
    assert answered - stopped < 8 and body["data"]["status"] == "PENDING"
    server.proc.wait(timeout=30)
    again = asgi_server(STATUS_HOLD_SECONDS="3")
    started = time.monotonic()
    body = _api(again, member, f"/api/v1/batches/{batch.id}/status").json()
    assert body["data"]["jobs_count_per_status"]["PENDING"] == 1 and time.monotonic() - started >= 2.5
