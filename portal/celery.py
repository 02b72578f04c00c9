"""The Celery app: one queue per device, late acks, one prefetched message, a beat tick."""

from __future__ import annotations

import gc
import importlib
import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

#: The tasks (batches/tasks.py), by name: the lifecycle and the scheduler send them from below
#: the module that defines them.
RUN_JOB = "batches.tasks.run_job"
TICK = "batches.tasks.tick"
SEND_WEBHOOK = "batches.tasks.send_webhook"
REDELIVER_WEBHOOK = "batches.tasks.redeliver_webhook"

app = Celery("tweezer")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_acks_late=True,
    # A worker whose child dies (SIGKILL, OOM) requeues its message; the job lease in the
    # database decides whether the job runs again, so a poison message cannot loop forever.
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue="default",
    broker_connection_retry_on_startup=True,
    # A broker outage must not stop a running job: it finishes and stores its result; the
    # message it could not acknowledge comes back later and finds the job ended (a no-op).
    worker_cancel_long_running_tasks_on_connection_loss=False,
    worker_hijack_root_logger=False,
    beat_schedule={
        "tick": {
            "task": TICK,
            "schedule": float(os.environ.get("TICK_SECONDS", "5")),
            "options": {"queue": "default", "expires": 30},
        },
    },
)
# Celery's Django fix-up closes the database connections around every task unless told how many
# tasks may share one: each job would then open a new PostgreSQL connection, whose server
# process starts with cold catalog caches. Workers treat tasks as Django treats requests
# instead (`_recycle_connections`), so CONN_MAX_AGE and CONN_HEALTH_CHECKS decide.
app.conf.update(CELERY_DB_REUSE_MAX=2**62)
app.autodiscover_tasks(["batches"])


def send_task(name: str, *args: str, queue: str | None = None) -> None:
    """Send the task `name` with `args` (to `queue`, else its default one).

    With CELERY_TASK_ALWAYS_EAGER (debugging) it runs here instead, as `delay` would."""
    if app.conf.task_always_eager:
        app.loader.import_default_modules()  # registers the tasks, as a worker does at start
        app.tasks[name].apply(args=args)
        return
    app.send_task(name, args=args, queue=queue)


COMMIT_LEVELS = ("on", "off", "local", "remote_write", "remote_apply")


def worker_commit_level() -> str:
    """WORKER_SYNCHRONOUS_COMMIT, checked: a typo must not reach PostgreSQL on every commit."""
    from django.conf import settings

    level = str(settings.WORKER_SYNCHRONOUS_COMMIT)
    if level not in COMMIT_LEVELS:
        raise ValueError(f"WORKER_SYNCHRONOUS_COMMIT must be on, off, local, remote_write or remote_apply: {level!r}")
    return level


def _set_commit_level(connection: Any, level: str, *, transaction_only: bool) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('synchronous_commit', %s, %s)", [level, transaction_only])
    if not transaction_only:
        connection.tweezer_commit_level = level  # the session's level, for commit_as_workers


def commit_as_workers(connection: Any) -> None:
    """Let the current transaction commit at the workers' level (a web process's connection
    is durable). Nothing to do on a worker's connection, which commits so already."""
    if connection.vendor != "postgresql":
        return
    level = worker_commit_level()
    if level != "on" and getattr(connection, "tweezer_commit_level", None) != level:
        _set_commit_level(connection, level, transaction_only=True)


@worker_init.connect
def _worker_commit_durability(**_: Any) -> None:
    """Give every database connection of this worker (and its forked children) the
    WORKER_SYNCHRONOUS_COMMIT level; see the setting for the trade-off."""
    from django.db.backends.signals import connection_created

    level = worker_commit_level()

    def configure(sender: Any, connection: Any, **_: Any) -> None:
        if connection.vendor == "postgresql":
            _set_commit_level(connection, level, transaction_only=False)

    connection_created.connect(configure, weak=False, dispatch_uid="tweezer-worker-commit")


@task_prerun.connect
@task_postrun.connect
def _recycle_connections(sender: Any = None, **_: Any) -> None:
    """Around each task, as around each request: drop the connections that are too old or broken.
    Not around a task run eagerly (CELERY_TASK_ALWAYS_EAGER): that one runs inside its caller's
    request or transaction, whose connection is the caller's."""
    from django.db import close_old_connections

    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    close_old_connections()


@worker_process_init.connect
def _freeze_loaded_objects(**_: Any) -> None:
    """What a worker child inherits lives as long as it: out of the garbage collector's walks.
    The emulator every worker runs (EMU_FREE's QuTiP, which the adapter loads on first use) is
    loaded first, so that it is set aside too; a web process never loads it."""
    importlib.import_module("pulser_simulation")
    gc.freeze()


#: Every queue Tweezer's workers consume: `default` (tick, webhooks) and one per device.
DEVICE_QUEUES = ["default", "device.EMU_FREE", "device.EMU_SV", "device.EMU_MPS", "device.FRESNEL"]


def purge_queues(extra: tuple[str, ...] = ()) -> None:
    """Drop every message waiting in Tweezer's queues (tests and benchmarks start clean).

    Messages are only hints (the database is the truth), so this loses no work: the tick
    re-sends what a pending job still needs.
    """
    import shutil

    from django.conf import settings

    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        for folder in ("queue", "processed"):
            path = settings.BROKER_DIR / folder
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True, exist_ok=True)
        return
    with app.connection_for_write() as conn:
        for name in [*DEVICE_QUEUES, *extra]:
            try:
                conn.default_channel.queue_purge(name)
            except Exception:  # noqa: BLE001 - a queue never declared has nothing to purge
                pass
