"""The floor: a bare Celery app on the same broker, running the same pulser-simulation call.

No Django, no database, no leases, no credits: deserialize (cached per process, as Tweezer's
worker does), build, run QutipBackendV2, return the counts. Started by bench/common.py as
`celery -A bench.bare_app worker -Q bench.bare`.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from pathlib import Path
from typing import Any

import pulser  # noqa: F401 - imported at start, like Tweezer's worker, so forked children inherit it
import pulser_simulation  # noqa: F401
from celery import Celery

_BROKER = os.environ.get("CELERY_BROKER_URL", "filesystem://")
_VAR = Path(os.environ.get("TWEEZER_VAR_DIR", "var"))

app = Celery("bench_bare")
if _BROKER.startswith("filesystem://"):
    folder = _VAR / "bare-broker"
    for sub in ("queue", "processed", "results"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    app.conf.update(
        broker_url="filesystem://",
        broker_transport_options={
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            # As Tweezer's embedded default polls (portal/settings.py): the same broker, the same wait.
            "polling_interval": float(os.environ.get("CELERY_BROKER_POLL_SECONDS") or 0.1),
        },
        result_backend=f"file://{folder / 'results'}",
    )
else:
    app.conf.update(broker_url=_BROKER, result_backend=_BROKER)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_default_queue="bench.bare",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@functools.lru_cache(maxsize=8)
def _sequence(text: str) -> Any:
    from pulser import Sequence

    return Sequence.from_abstract_repr(text)


@app.task(name="bench.simulate")
def simulate(text: str, variables: dict[str, Any], runs: int) -> str:
    from pulser.backend import BitStrings
    from pulser_simulation import QutipBackendV2, QutipConfig

    built = _sequence(text).build(**variables)
    config = QutipConfig(observables=[BitStrings(evaluation_times=[1.0], num_shots=runs)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = QutipBackendV2(built, config=config).run()
    return json.dumps(dict(results.final_bitstrings))


@app.task(name="bench.noop")
def noop(x: Any) -> Any:
    return x
