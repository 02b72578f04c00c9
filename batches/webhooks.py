"""Webhooks: when a batch ends, POST its summary, signed, never to private addresses."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from urllib.parse import urlsplit

import requests
from django.conf import settings

from batches.models import Batch
from portal.errors import InvalidInput


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_global or ip.is_multicast


def check_webhook_url(url: str, *, resolve: bool = False) -> None:
    """Refuse non-HTTP(S) URLs and hosts that are (or resolve to) loopback, link-local or private."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("'webhook' must be an http(s) URL with a host name.", field="webhook")
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return
    host = parts.hostname
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        if host.lower() in {"localhost"} or host.lower().endswith(".localhost"):
            addresses = ["127.0.0.1"]
        elif not resolve:
            return
        else:
            try:
                # sockaddr[0] is the address string for AF_INET/AF_INET6 (stubs say str | int)
                addresses = [info[4][0] for info in socket.getaddrinfo(host, parts.port or 443)]  # type: ignore[misc]
            except OSError as exc:
                raise InvalidInput(f"'webhook' host {host} does not resolve.", field="webhook") from exc
    if any(_is_private(a) for a in addresses):
        raise InvalidInput(
            "'webhook' must point to a public address; loopback, link-local and private ranges are refused.",
            field="webhook",
        )


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
