"""The QPU simulator as a real process on a free port, with its admin controls."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import processes

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class QpuSimulator:
    """`python -m backends.qpu_simulator` in a child process."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backends.qpu_simulator", "--port", str(self.port), *args],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the QPU simulator exited:\n{log_path.read_text()[-3000:]}")
            if "listening on" in log_path.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"the QPU simulator did not start:\n{log_path.read_text()[-3000:]}")

    def faults(self, **faults: Any) -> None:
        requests.post(f"{self.url}/admin/faults", json=faults, timeout=5).raise_for_status()

    def reset(self) -> None:
        requests.post(f"{self.url}/admin/reset", json={}, timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.url}/admin/stats", timeout=5).json())

    def stop(self) -> None:
        processes.stop(self.proc, self.log)


@pytest.fixture(scope="session")
def qpu_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QpuSimulator]:
    sim = QpuSimulator(tmp_path_factory.mktemp("qpu") / "qpu.log", "--token", "qpu-secret", "--slow-seconds", "3")
    yield sim
    sim.stop()


@pytest.fixture
def qpu(qpu_process: QpuSimulator, settings: Any) -> QpuSimulator:
    """The simulator, faults cleared, and this process's settings pointed at it (fast retries)."""
    if qpu_process.proc.poll() is not None:
        pytest.fail(f"the QPU simulator died:\n{qpu_process.log_path.read_text()[-3000:]}")
    qpu_process.reset()
    settings.QPU_URL = qpu_process.url
    settings.QPU_TOKEN = "qpu-secret"
    settings.QPU_POLL_SECONDS = 0.05
    settings.QPU_BACKOFF_SECONDS = 0.05
    settings.QPU_RETRIES = 3
    settings.QPU_CONNECT_TIMEOUT = 2
    settings.QPU_READ_TIMEOUT = 1
    settings.QPU_MAX_WAIT_SECONDS = 30
    return qpu_process
