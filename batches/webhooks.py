"""Webhooks: when a batch ends, POST its summary, signed, never to private addresses."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import cast

import requests
from celery import shared_task
from django.conf import settings

from portal.addresses import check_public_url
from portal.errors import InvalidInput


def check_webhook_url(url: str, *, resolve: bool = False) -> None:
    """Refuse non-HTTP(S) URLs and hosts that are (or resolve to) loopback, link-local or private.

    The same check at submission and at delivery (`portal.addresses`); `resolve`, at delivery,
    refuses a name that does not resolve as well.
    """
    check_public_url(url, field="webhook", must_resolve=resolve)


def sign(body: bytes) -> str:
    return hmac.new(settings.WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


def batch_summary(batch_id: str) -> dict[str, object] | None:
    from batches.models import Batch
    from batches.services import jobs_count_per_status

    batch = Batch.objects.select_related("device").filter(pk=batch_id).first()
    if batch is None or not batch.webhook:
        return None
    return {
        "id": str(batch.id),
        "status": batch.status,
        "device_type": batch.device.name,
        "project_id": str(batch.project_id),
        "jobs_count_per_status": jobs_count_per_status(batch),
        "end_datetime": batch.end_datetime.isoformat() if batch.end_datetime else None,
    }


@shared_task(bind=True, ignore_result=True, max_retries=5, acks_late=True)
def send_webhook(self, batch_id: str) -> None:  # type: ignore[no-untyped-def]
    from batches.models import Batch

    summary = batch_summary(batch_id)
    if summary is None:
        return
    # Set: batch_summary() returns None when the batch has no webhook.
    url = cast(str, Batch.objects.values_list("webhook", flat=True).get(pk=batch_id))
    try:
        # Checked again at delivery, after DNS resolution: a name may now point inside.
        check_webhook_url(url, resolve=True)
    except InvalidInput:
        return
    body = json.dumps(summary, sort_keys=True).encode()
    try:
        response = requests.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "X-Tweezer-Signature": f"sha256={sign(body)}"},
            timeout=settings.WEBHOOK_TIMEOUT,
            allow_redirects=False,
        )
        if response.status_code >= 500:
            raise requests.HTTPError(f"webhook answered {response.status_code}")
    except requests.RequestException as exc:
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc
