"""gunicorn's settings: read from the working directory by `gunicorn portal.asgi:application -k
uvicorn.workers.UvicornWorker` (make run, the Dockerfile) and `gunicorn portal.wsgi`
(benchmarks); command-line options (bind, workers, threads) add to them."""

import gc


def post_worker_init(worker: object) -> None:
    """What the worker loaded at start lives as long as it: out of the garbage collector's walks."""
    gc.freeze()
