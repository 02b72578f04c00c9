"""Webhooks: when a batch ends, POST its summary, signed, never to private addresses."""

from __future__ import annotations

import hashlib
import hmac
import json

import requests
from django.conf import settings

from batches.models import Batch
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
    """POST the batch's summary, signed, to its webhook. Raises requests' errors (and an
    HTTPError for a 5xx answer) for the caller to retry; a refused address is dropped."""
    batch = Batch.objects.select_related("device").filter(pk=batch_id).first()
    if batch is None or not batch.webhook:
        return
    try:
        # Checked again at delivery, after DNS resolution: a name may now point inside.
        check_webhook_url(batch.webhook, resolve=True)
    except InvalidInput:
        return
    body = json.dumps(batch_summary(batch), sort_keys=True).encode()
    response = requests.post(
        batch.webhook,
        data=body,
        headers={"Content-Type": "application/json", "X-Tweezer-Signature": f"sha256={sign(body)}"},
        timeout=settings.WEBHOOK_TIMEOUT,
        allow_redirects=False,
    )
    if response.status_code >= 500:
        raise requests.HTTPError(f"webhook answered {response.status_code}")
