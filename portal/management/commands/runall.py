"""`make run`: web (gunicorn), a Celery worker for every device queue, and beat, in one command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
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


def _answers(bind: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{bind}/login/", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class Command(BaseCommand):
    help = "Start the web server, a Celery worker and Celery beat; Ctrl-C stops them all."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument("--announce", help="a file to print once the web server answers (make run's demo summary)")

    def handle(self, *args: Any, **options: Any) -> None:
        queues = ["default", *(d.queue for d in Device.objects.all())]
        beat_schedule = str(settings.VAR_DIR / "celerybeat-schedule")
        commands = {
            "web": [
                sys.executable,
                "-m",
                "gunicorn",
                "portal.wsgi",
                "-b",
                options["bind"],
                "-w",
                "2",
                "--threads",
                "4",
            ],
            "worker": worker_command(queues, concurrency=options["concurrency"]),
            "beat": [sys.executable, "-m", "celery", "-A", "portal", "beat", "-l", "warning", "-s", beat_schedule],
        }
        # Quiet the worker and beat banners: the demo summary is what a new user needs to see.
        for name in ("worker", "beat"):
            commands[name].insert(commands[name].index("-A"), "--quiet")
        procs = {name: subprocess.Popen(cmd, start_new_session=True) for name, cmd in commands.items()}
        stopping = False
        announced = not options["announce"]

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with {proc.returncode}; stopping everything.")
                        stopping = True
                if not announced and _answers(options["bind"]):
                    self.stdout.write(Path(options["announce"]).read_text())
                    announced = True
                time.sleep(0.5)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
