"""Celery tasks: thin, idempotent, ids in. The rules live in the runner, the scheduler and the lifecycle.

`batches.lifecycle` and `batches.scheduler` send these by name (`portal.celery.RUN_JOB`, …):
they sit below this module, which imports them.
"""

from __future__ import annotations

from typing import Any

import requests
from celery import shared_task

from batches import runner, scheduler, webhooks


@shared_task(name="batches.tasks.run_job", acks_late=True, ignore_result=True)
def run_job(job_id: str) -> None:
    runner.stop_on_terminate()  # here, not at process start: the pool sets its own handlers after that
    runner.execute(job_id)


@shared_task(name="batches.tasks.tick", ignore_result=True)
def tick() -> None:
    scheduler.tick()


@shared_task(name="batches.tasks.send_webhook", bind=True, ignore_result=True, max_retries=5, acks_late=True)
def send_webhook(self: Any, batch_id: str) -> None:
    """POST the ended batch's summary to its webhook; a failed delivery is retried with a back-off."""
    try:
        webhooks.deliver(batch_id)
    except requests.RequestException as exc:
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc


@shared_task(name="batches.tasks.redeliver_webhook", ignore_result=True, acks_late=True)
def redeliver_webhook(delivery_id: str) -> None:
    """One more attempt at a logged delivery, asked for from the portal (no retries: the log shows it)."""
    webhooks.redeliver(int(delivery_id))
