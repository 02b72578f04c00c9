"""Celery tasks: thin, idempotent, ids in. The rules live in runner.py and batches/scheduler.py."""

from __future__ import annotations

from celery import shared_task

from backends import maintenance, runner
from backends.models import Device
from batches import scheduler
from batches.webhooks import send_webhook

# Celery's autodiscovery imports `<app>.tasks` only: importing the webhook task here is what
# registers it in the workers (without this they discard every webhook as "unregistered").
__all__ = ["run_job", "send_webhook", "tick"]


@shared_task(acks_late=True, ignore_result=True)
def run_job(job_id: str) -> None:
    runner.execute(job_id)


@shared_task(ignore_result=True)
def tick() -> None:
    """The periodic repair: leases, downed devices, then every device's queue."""
    maintenance.reap_expired_leases()
    maintenance.fail_batches_on_down_devices()
    for device_id in Device.objects.values_list("pk", flat=True):
        scheduler.advance(device_id)
