"""Child processes the tests start (servers, simulators): one way to stop them."""

from __future__ import annotations

import subprocess
from typing import IO, Any


def stop(proc: subprocess.Popen[Any], log: IO[Any], *, timeout: float = 10) -> None:
    """Terminate `proc` (killed if it does not exit within `timeout` s) and close its log."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()
