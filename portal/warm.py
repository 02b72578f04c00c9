"""Long-running processes (web workers, Celery worker children) set aside what they loaded at start.

Python's cyclic garbage collector walks every tracked object on a full collection: with
Django, pulser, numpy and scipy loaded that is ~330,000 objects, 60–200 ms on this machine
kind, and a web worker did one every ~15 large submissions (bench/RESULTS.md §4). Objects
loaded at start live as long as the process, so they are frozen (`gc.freeze`): collections
then walk only what requests and jobs made since, 1–15 ms.
"""

from __future__ import annotations

import gc


def freeze_web_worker() -> None:
    """gunicorn's `post_worker_init` (gunicorn.conf.py): every view imported (and through them
    pulser and ninja's schemas; the URLconf imports them on the first request otherwise)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - evaluated for its imports
    _freeze()


def freeze_job_worker() -> None:
    """Celery's `worker_process_init` (portal/celery.py): the tasks and pulser come from the
    parent; the emulator every worker runs (EMU_FREE's QuTiP backend, ~0.2 s) is loaded now."""
    import pulser_simulation  # noqa: F401

    _freeze()


def _freeze() -> None:
    gc.collect()
    gc.freeze()
