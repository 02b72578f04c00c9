"""Webhooks: a real local receiver gets the signed summary; private targets are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.conf import settings

from batches import services
from batches.tasks import send_webhook
from batches.webhooks import check_webhook_url
from portal.errors import InvalidInput
from tests.conftest import wait_until
from tests.sequences import seed_mappable_sequence


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST; answers 500 to the first `fail` ones."""

    def __init__(self, fail: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"body": body, "headers": dict(self.headers), "path": self.path})
                failing = len(receiver.requests) <= receiver.fail
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?from=tweezer"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _verify(request: dict[str, Any]) -> dict[str, Any]:
    expected = hmac.new(settings.WEBHOOK_SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Tweezer-Signature"] == f"sha256={expected}"
    assert request["headers"]["Content-Type"] == "application/json"
    return json.loads(request["body"])


def test_a_finished_batch_posts_its_signed_summary_to_the_webhook(worker, member, devices, receiver):
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[{"runs": 10, "variables": {"omega_max": 1.0, "qubits": {"q0": 1, "q1": 5}}}] * 2,
        device_type="EMU_FREE",
        webhook=receiver.url,
    )
    wait_until(lambda: receiver.requests, timeout=120)
    (request,) = receiver.requests
    assert request["path"] == "/hook?from=tweezer"
    summary = _verify(request)
    assert summary["id"] == str(batch.pk) and summary["status"] == "DONE"
    assert summary["device_type"] == "EMU_FREE" and summary["project_id"] == str(member.project_id)
    assert summary["jobs_count_per_status"]["DONE"] == 2 and summary["end_datetime"]


def test_a_webhook_answering_500_is_retried(worker, member, devices):
    failing = Receiver(fail=1)
    try:
        batch = services.create_batch(
            member.project,
            member.user,
            sequence_builder=seed_mappable_sequence(),
            jobs=[{"runs": 5, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}],
            device_type="EMU_FREE",
            webhook=failing.url,
        )
        services.cancel_batch(batch, by=member.user)
        wait_until(lambda: len(failing.requests) >= 2, timeout=60)
        assert [_verify(r)["status"] for r in failing.requests[:2]] == ["CANCELED", "CANCELED"]
    finally:
        failing.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://api.localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "ftp://example.org/hook",
        "file:///etc/passwd",
    ],
)
def test_loopback_private_and_link_local_webhooks_are_refused_unless_allowed(url, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(InvalidInput, match="webhook"):
        check_webhook_url(url, resolve=True)


def test_a_public_webhook_address_is_accepted(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    check_webhook_url("https://93.184.215.14/hook")
    check_webhook_url("https://hooks.example.org/tweezer")  # resolved and re-checked at delivery


def test_submission_with_a_private_webhook_is_refused_and_creates_nothing(member, devices, settings):
    from batches.models import Batch

    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(InvalidInput, match="public address"):
        services.create_batch(
            member.project,
            member.user,
            sequence_builder=seed_mappable_sequence(),
            jobs=[{"runs": 5, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}],
            device_type="EMU_FREE",
            webhook="http://169.254.169.254/",
        )
    assert not Batch.objects.exists()


def test_delivery_rechecks_the_address_and_does_not_post_to_a_private_one(member, devices, receiver, settings):
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[{"runs": 5, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}],
        device_type="EMU_FREE",
        webhook=receiver.url,
    )
    services.cancel_batch(batch, by=member.user)
    settings.WEBHOOK_ALLOW_PRIVATE = False
    send_webhook(str(batch.pk))  # the task body, run here
    assert receiver.requests == []
    settings.WEBHOOK_ALLOW_PRIVATE = True
    send_webhook(str(batch.pk))
    assert _verify(receiver.requests[0])["status"] == "CANCELED"
