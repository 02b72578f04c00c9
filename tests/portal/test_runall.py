"""Issue 17 point 5: `make run` restarts a process that dies, with a back-off; stopping stops all."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

import pytest

from portal.management.commands.runall import Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def supervised() -> Iterator[tuple[Supervisor, Clock, list[str]]]:
    clock, lines = Clock(), list[str]()
    supervisor = Supervisor({"web": SLEEPER, "worker": SLEEPER, "beat": SLEEPER}, log=lines.append, clock=clock)
    supervisor.start()
    yield supervisor, clock, lines
    supervisor.stop()


def _kill(supervisor: Supervisor, name: str) -> int:
    proc = supervisor.procs[name]
    os.kill(proc.pid, signal.SIGKILL)  # the main process only, as `kill -9 <worker pid>` does
    proc.wait()
    return proc.pid


def test_a_killed_worker_is_restarted_after_a_back_off_and_the_others_keep_running(supervised):
    supervisor, clock, lines = supervised
    web, beat = supervisor.procs["web"].pid, supervisor.procs["beat"].pid
    killed = _kill(supervisor, "worker")
    supervisor.check()
    assert lines == ["worker exited with -9; restarting it in 1 s."]
    assert supervisor.procs["worker"].pid == killed  # not yet: the back-off first
    clock.now += 1
    supervisor.check()
    assert supervisor.procs["worker"].pid != killed and supervisor.procs["worker"].poll() is None
    assert lines[-1] == f"worker restarted (pid {supervisor.procs['worker'].pid})."
    assert (supervisor.procs["web"].pid, supervisor.procs["beat"].pid) == (web, beat)
    assert all(proc.poll() is None for proc in supervisor.procs.values())


def test_the_back_off_doubles_while_a_process_keeps_dying_and_resets_once_it_stays_up(supervised):
    supervisor, clock, lines = supervised
    delays = []
    for _ in range(7):
        _kill(supervisor, "beat")
        supervisor.check()
        delays.append(lines[-1])
        clock.now += supervisor.MAX_DELAY
        supervisor.check()
    assert [line.split(" in ")[1] for line in delays] == ["1 s.", "2 s.", "4 s.", "8 s.", "16 s.", "30 s.", "30 s."]
    clock.now += supervisor.STABLE_SECONDS
    _kill(supervisor, "beat")
    supervisor.check()
    assert lines[-1] == "beat exited with -9; restarting it in 1 s."


def test_stopping_stops_every_process_and_restarts_none(supervised):
    supervisor, clock, _ = supervised
    _kill(supervisor, "worker")
    supervisor.check()
    supervisor.stop()
    clock.now += 100
    supervisor.check()
    supervisor.check()
    assert all(proc.poll() is not None for proc in supervisor.procs.values())
    assert supervisor.restarts == {"web": 0, "worker": 0, "beat": 0}
