"""gunicorn's settings: read from the working directory by `gunicorn portal.wsgi` (make run,
the Dockerfile, the benchmarks); command-line options (bind, workers, threads) add to them."""

import gc


def post_worker_init(worker: object) -> None:
    """What the worker loaded at start lives as long as it: out of the garbage collector's walks."""
    gc.freeze()
