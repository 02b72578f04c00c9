"""Worker heartbeats: each Celery node writes its row every WORKER_HEARTBEAT_SECONDS from a
thread of its main process, and deletes it when it stops cleanly. A lost machine's rows stay,
and their age (tweezer_worker_heartbeat_age_seconds) grows."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

log = logging.getLogger(__name__)

_stop = threading.Event()
_node: dict[str, Any] = {}


def beat(name: str, *, queues: list[str], concurrency: int, started_at: Any) -> None:
    from ops.models import WorkerHeartbeat

    WorkerHeartbeat.objects.update_or_create(
        name=name,
        defaults={
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "queues": queues,
            "concurrency": concurrency,
            "started_at": started_at,
            "seen_at": timezone.now(),
        },
    )


def _loop() -> None:
    while not _stop.is_set():
        try:
            beat(**_node)
        except Exception:  # noqa: BLE001 - a database hiccup must not stop the worker
            log.warning("worker heartbeat failed", exc_info=True)
        finally:
            connection.close()  # the thread's own connection: not held between beats
        _stop.wait(settings.WORKER_HEARTBEAT_SECONDS)


def start(consumer: Any) -> None:
    """On `worker_ready`, in the node's main process: start beating."""
    close_old_connections()
    queues = sorted(q.name for q in consumer.task_consumer.queues) if consumer.task_consumer else []
    _node.update(
        name=str(consumer.hostname),
        queues=queues,
        concurrency=int(getattr(consumer.pool, "num_processes", 0) or consumer.app.conf.worker_concurrency or 0),
        started_at=timezone.now(),
    )
    _stop.clear()
    threading.Thread(target=_loop, name="tweezer-worker-heartbeat", daemon=True).start()


def stop() -> None:
    """On `worker_shutdown`: a node that stops cleanly is no longer expected to beat."""
    from ops.models import WorkerHeartbeat

    _stop.set()
    if not _node:
        return
    try:
        WorkerHeartbeat.objects.filter(name=_node["name"], pid=os.getpid()).delete()
    except Exception:  # noqa: BLE001 - the database may be what is going away
        log.warning("could not remove the worker heartbeat", exc_info=True)


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    """The node's row in ops_workerheartbeat, written while it lives."""
    start(sender)


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    stop()
