"""gunicorn's settings: read from the working directory by `gunicorn portal.wsgi` (make run,
the Dockerfile, the benchmarks); command-line options (bind, workers, threads) add to them."""


def post_worker_init(worker: object) -> None:
    """The application is loaded in this worker: set its long-lived objects aside (portal/warm.py)."""
    from portal.warm import freeze_web_worker  # importable now: the worker has loaded portal.wsgi

    freeze_web_worker()
