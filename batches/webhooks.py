"""Webhooks: when a batch ends, POST its summary, signed, never to private addresses, to the
batch's own webhook and to the endpoints its project's admins registered; every delivery logged."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from batches.models import Batch, WebhookDelivery, WebhookEndpoint
from portal.addresses import check_public_url
from portal.celery import REDELIVER_WEBHOOK, send_task
from portal.errors import InvalidInput

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from portal.models import Project


def check_webhook_url(url: str, *, resolve: bool = False) -> None:
    """Refuse non-HTTP(S) URLs and hosts that are (or resolve to) loopback, link-local or private.

    The same check at submission and at delivery (`portal.addresses`); `resolve`, at delivery,
    refuses a name that does not resolve as well.
    """
    check_public_url(url, field="webhook", must_resolve=resolve)


def sign(body: bytes) -> str:
    return hmac.new(settings.WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


def batch_summary(batch: Batch) -> dict[str, object]:
    return {
        "id": str(batch.id),
        "status": batch.status,
        "device_type": batch.device.name,
        "project_id": str(batch.project_id),
        "jobs_count_per_status": batch.job_counts,
        "end_datetime": batch.end_datetime.isoformat() if batch.end_datetime else None,
    }


def deliver(batch_id: str) -> None:
    """POST the batch's summary, signed, to its webhook and to its project's endpoints, each
    logged as a WebhookDelivery. A URL already answered is skipped (the task's retries re-run
    this); a refused address is logged and dropped. Raises requests' errors (and an HTTPError
    for a 5xx answer) after trying every URL, for the caller to retry the ones that failed."""
    batch = Batch.objects.select_related("device").filter(pk=batch_id).first()
    if batch is None:
        return
    targets: dict[str, WebhookEndpoint | None] = {batch.webhook: None} if batch.webhook else {}
    for registered in WebhookEndpoint.objects.filter(project_id=batch.project_id):
        targets.setdefault(registered.url, registered)
    if not targets:
        return
    body = json.dumps(batch_summary(batch), sort_keys=True).encode()
    failures: list[requests.RequestException] = []
    for url, endpoint in targets.items():
        delivery, _ = WebhookDelivery.objects.get_or_create(
            batch=batch, url=url, defaults={"project_id": batch.project_id, "endpoint": endpoint}
        )
        if delivery.delivered_at is None:
            try:
                _post(delivery, body)
            except requests.RequestException as exc:
                failures.append(exc)
    if failures:
        raise failures[0]


def _post(delivery: WebhookDelivery, body: bytes) -> None:
    """One attempt, recorded on the delivery: status code, time, attempts, error."""
    now = timezone.now()
    try:
        # Checked again at delivery, after DNS resolution: a name may now point inside.
        check_webhook_url(delivery.url, resolve=True)
    except InvalidInput as exc:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(error=exc.message[:300], last_attempt_at=now)
        return
    fields: dict[str, Any] = {"attempts": F("attempts") + 1, "last_attempt_at": now}
    try:
        response = requests.post(
            delivery.url,
            data=body,
            headers={"Content-Type": "application/json", "X-Tweezer-Signature": f"sha256={sign(body)}"},
            timeout=settings.WEBHOOK_TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields, status_code=None, error=str(exc)[:300])
        raise
    failed = response.status_code >= 500
    fields.update(status_code=response.status_code, error="", delivered_at=None if failed else now)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
    if failed:
        raise requests.HTTPError(f"webhook answered {response.status_code}")


def redeliver(delivery_id: int) -> None:
    """The task body of a redelivery the portal asked for: one more attempt, whatever happened
    before (a receiver fixed since, a redeploy), with the batch's summary as it is now."""
    delivery = WebhookDelivery.objects.select_related("batch__device").filter(pk=delivery_id).first()
    if delivery is None:
        return
    body = json.dumps(batch_summary(delivery.batch), sort_keys=True).encode()
    with contextlib.suppress(requests.RequestException):  # recorded on the delivery by _post
        _post(delivery, body)


def queue_redelivery(delivery: WebhookDelivery) -> None:
    """Send the redelivery to a worker once the caller's transaction commits."""
    transaction.on_commit(lambda: send_task(REDELIVER_WEBHOOK, str(delivery.pk)), robust=True)


def add_endpoint(project: Project, url: str, *, by: User | None) -> WebhookEndpoint:
    """Register `url` for the project's batches; refused (400) as a batch's webhook would be."""
    url = (url or "").strip()
    if len(url) > 500:
        raise InvalidInput("A webhook URL has at most 500 characters.", field="webhook")
    check_webhook_url(url)
    endpoint, created = WebhookEndpoint.objects.get_or_create(project=project, url=url, defaults={"created_by": by})
    if not created:
        raise InvalidInput("This URL is already registered for the project.", field="webhook")
    return endpoint
