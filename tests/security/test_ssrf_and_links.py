"""Webhooks never reach inside (names resolving inward, redirects); results links are signed and expire."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import time_machine
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from batches import services
from batches.tasks import send_webhook
from batches.webhooks import check_webhook_url
from jobs.results import sign_job, store_result
from portal.errors import InvalidInput
from tests.sequences import analog_sequence

pytestmark = pytest.mark.django_db


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        if self.server.location:  # type: ignore[attr-defined]
            self.send_header("Location", self.server.location)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _server(status: int = 204, location: str = "") -> HTTPServer:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    server.hits, server.status, server.location = [], status, location  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _ended_batch_with_webhook(member: Any, url: str) -> Any:
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=analog_sequence(2),
        jobs=[{"runs": 5, "variables": {"omega_max": 1.0}}],
        device_type="EMU_FREE",
        webhook=url,
    )
    services.cancel_batch(batch, by=member.user)
    return batch


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0:8000/",
        "http://100.64.0.1/",
        "http://[fe80::1]/",
        "gopher://example.org/",
        "file:///etc/passwd",
    ],
)
def test_internal_and_non_http_webhook_urls_are_refused(url, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(InvalidInput):
        check_webhook_url(url, resolve=True)


def test_a_host_name_that_resolves_to_loopback_is_refused_at_submission_and_gets_no_delivery(member, devices, settings):
    from batches.models import Batch

    settings.WEBHOOK_ALLOW_PRIVATE = False
    name = socket.gethostname()
    if not all(info[4][0].startswith("127.") for info in socket.getaddrinfo(name, 80)):  # type: ignore[union-attr]  # an address str here
        pytest.skip(f"{name} does not resolve to loopback here")
    server = _server()
    url = f"http://{name}:{server.server_port}/hook"
    with pytest.raises(InvalidInput, match="public address"):
        _ended_batch_with_webhook(member, url)
    batch = _ended_batch_with_webhook(member, "https://hooks.example.org/hook")
    Batch.objects.filter(pk=batch.pk).update(webhook=url)  # as if the name pointed outside at submission
    send_webhook.apply(args=[str(batch.pk)])
    server.shutdown()
    assert server.hits == []  # type: ignore[attr-defined]


def test_a_webhook_redirect_is_not_followed(member, devices, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # both ends are local test servers
    inside = _server()
    outside = _server(status=302, location=f"http://127.0.0.1:{inside.server_port}/metadata")
    batch = _ended_batch_with_webhook(member, f"http://127.0.0.1:{outside.server_port}/hook")
    send_webhook.apply(args=[str(batch.pk)])
    inside.shutdown()
    outside.shutdown()
    assert outside.hits == ["/hook"]  # type: ignore[attr-defined]
    assert inside.hits == []  # type: ignore[attr-defined]


def test_results_links_are_signed_and_expire(member, devices):
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=analog_sequence(2),
        jobs=[{"runs": 5, "variables": {"omega_max": 1.0}}],
        device_type="EMU_FREE",
    )
    job = batch.jobs.get()
    job.result_path = store_result(job, {"counter": {"00": 5}, "raw": ["00"] * 5, "serialised_results": None})
    job.save(update_fields=["result_path"])
    client = Client()  # no token: the signature is the permission
    token = sign_job(job)
    assert client.get(f"/results/{token}").status_code == 200
    job_id, rest = token.split(":", 1)
    other_id = job_id[:-1] + ("1" if job_id[-1] == "0" else "0")
    assert client.get(f"/results/{other_id}:{rest}").status_code == 404  # another job's id, same signature
    assert client.get(f"/results/{token[:-2]}xx").status_code == 404  # tampered signature
    with time_machine.travel(timezone.now() + timedelta(seconds=django_settings.RESULTS_LINK_MAX_AGE + 5)):
        expired = client.get(f"/results/{token}")
    assert expired.status_code in (403, 410), expired.status_code
