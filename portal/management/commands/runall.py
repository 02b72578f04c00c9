"""`make run`: web (gunicorn, ASGI), a Celery worker for every device queue, and beat, in one command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from backends.models import Device


def worker_command(queues: list[str], *, concurrency: int, name: str = "worker") -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "portal",
        "worker",
        "-l",
        "warning",
        "-O",
        "fair",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "-Q",
        ",".join(queues),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
    ]


def web_command(bind: str, *, workers: int) -> list[str]:
    """gunicorn with uvicorn's workers: ASGI, so held requests and event streams take no thread
    (issue 19); sync views run in asgiref's threads."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "portal.asgi:application",
        "-k",
        "uvicorn.workers.UvicornWorker",
        "-b",
        bind,
        "-w",
        str(workers),
    ]


def _answers(bind: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{bind}/login/", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class Command(BaseCommand):
    help = "Start the web server, a Celery worker and Celery beat, restarting any that dies; Ctrl-C stops them all."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument("--announce", help="a file to print once the web server answers (make run's demo summary)")

    def handle(self, *args: Any, **options: Any) -> None:
        queues = ["default", *(d.queue for d in Device.objects.all())]
        beat_schedule = str(settings.VAR_DIR / "celerybeat-schedule")
        commands = {
            "web": web_command(options["bind"], workers=2),
            "worker": worker_command(queues, concurrency=options["concurrency"]),
            "beat": [sys.executable, "-m", "celery", "-A", "portal", "beat", "-l", "warning", "-s", beat_schedule],
        }
        # Quiet the worker and beat banners: the demo summary is what a new user needs to see.
        for name in ("worker", "beat"):
            commands[name].insert(commands[name].index("-A"), "--quiet")
        supervisor = Supervisor(commands, log=self.stderr.write)
        stopping = False
        announced = not options["announce"]

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            supervisor.start()
            while not stopping:
                supervisor.check()
                if not announced and _answers(options["bind"]):
                    self.stdout.write(Path(options["announce"]).read_text())
                    announced = True
                time.sleep(0.5)
        finally:
            supervisor.stop()


class Supervisor:
    """Keep every process running: one that dies is started again after a back-off, as a
    supervisor would, so a killed worker does not take the web server and beat down with it.

    The back-off doubles on each death in a row (a process that cannot start does not spin)
    and is forgotten once the process has stayed up for `STABLE_SECONDS`.
    """

    FIRST_DELAY = 1.0
    MAX_DELAY = 30.0
    STABLE_SECONDS = 60.0

    def __init__(
        self,
        commands: dict[str, list[str]],
        *,
        log: Callable[[str], Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.commands = commands
        self.log = log
        self.clock = clock
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[str, float] = {}
        self.delay = dict.fromkeys(commands, self.FIRST_DELAY)
        self.restart_at: dict[str, float] = {}
        self.restarts = dict.fromkeys(commands, 0)
        self.stopped = False

    def start(self) -> None:
        for name in self.commands:
            self._spawn(name)

    def _spawn(self, name: str) -> None:
        # Own session: Ctrl-C reaches this process only, which then stops each group in order.
        self.procs[name] = subprocess.Popen(self.commands[name], start_new_session=True)
        self.started_at[name] = self.clock()

    def check(self) -> None:
        """Notice deaths, and start again the processes whose back-off is over."""
        if self.stopped:
            return
        now = self.clock()
        for name, proc in self.procs.items():
            if name in self.restart_at or proc.poll() is None:
                continue
            if now - self.started_at[name] >= self.STABLE_SECONDS:
                self.delay[name] = self.FIRST_DELAY
            delay = self.delay[name]
            self.log(f"{name} exited with {proc.returncode}; restarting it in {delay:g} s.")
            self.restart_at[name] = now + delay
            self.delay[name] = min(delay * 2, self.MAX_DELAY)
        for name, when in list(self.restart_at.items()):
            if now >= when:
                del self.restart_at[name]
                self._spawn(name)
                self.restarts[name] += 1
                self.log(f"{name} restarted (pid {self.procs[name].pid}).")

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL those still there after a grace period."""
        self.stopped = True
        self.restart_at.clear()
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
