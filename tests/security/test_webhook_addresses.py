"""Issue 17 point 7: loopback in disguise is refused at submission, by the one normalising check
delivery uses too (portal.addresses). Nothing here sends a request."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.test import Client

from batches import webhooks
from batches.models import Batch
from portal.addresses import check_public_url, host_addresses
from portal.errors import InvalidInput
from tests.sequences import analog_sequence

DISGUISED_LOOPBACK = [
    "localhost.",
    "LOCALHOST",
    "2130706433",
    "0x7f000001",
    "127.1",
    "0177.0.0.1",
    "ip6-localhost",
    "ip6-loopback",
    "0",
    "0.0.0.0.",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:0:0:1]",
]


@pytest.fixture
def no_private(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = False  # tests/settings.py allows them for the other tests


@pytest.mark.parametrize("host", DISGUISED_LOOPBACK)
def test_loopback_in_disguise_is_refused_at_submission(host, no_private):
    with pytest.raises(InvalidInput, match="public address"):
        check_public_url(f"http://{host}:8000/hook")


def test_a_host_name_resolving_to_loopback_is_refused_at_submission(no_private, monkeypatch):
    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(InvalidInput, match="public address"):
        check_public_url("https://hooks.example.org/hook")


def test_a_name_with_one_public_and_one_loopback_address_is_refused(no_private, monkeypatch):
    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(InvalidInput, match="public address"):
        check_public_url("https://hooks.example.org/hook")


def test_a_name_that_does_not_resolve_is_accepted_at_submission_and_refused_at_delivery(no_private, monkeypatch):
    def fail(*args: Any, **kwargs: Any) -> list[Any]:
        raise socket.gaierror("no such name")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    check_public_url("https://hooks.example.org/hook")
    with pytest.raises(InvalidInput, match="does not resolve"):
        check_public_url("https://hooks.example.org/hook", must_resolve=True)


def test_legacy_ipv4_forms_are_read_as_the_resolver_reads_them():
    assert [str(a) for a in host_addresses("0x7f000001", 80) or []] == ["127.0.0.1"]
    assert [str(a) for a in host_addresses("0177.0.0.1", 80) or []] == ["127.0.0.1"]
    assert [str(a) for a in host_addresses("2130706433", 80) or []] == ["127.0.0.1"]
    assert [str(a) for a in host_addresses("127.1", 80) or []] == ["127.0.0.1"]
    assert [str(a) for a in host_addresses("93.184.215.14.", 80) or []] == ["93.184.215.14"]


def test_a_public_address_is_accepted(no_private):
    check_public_url("https://93.184.215.14/hook")


def test_a_webhook_url_over_500_characters_is_refused_naming_it():
    with pytest.raises(InvalidInput, match="at most 500 characters") as refused:
        check_public_url("https://hooks.example.org/" + "x" * 500)
    assert refused.value.field == "webhook"


@pytest.mark.django_db
def test_an_api_submission_with_a_disguised_loopback_webhook_creates_nothing(member, devices, no_private):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {member.token}")
    for host in ("2130706433", "localhost.", "ip6-localhost"):
        response = client.post(
            "/core/api/v1/batches",
            {
                "sequence_builder": analog_sequence(2),
                "jobs": [{"runs": 3, "variables": {"omega_max": 1.0}}],
                "device_type": "EMU_FREE",
                "project_id": str(member.project_id),
                "webhook": f"http://{host}:8000/hook",
            },
            content_type="application/json",
        )
        assert response.status_code == 400, response.content[:300]
        assert response.json()["data"]["field"] == "webhook"
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_delivery_uses_the_same_check_and_sends_nothing_to_disguised_loopback(member, devices, no_private, monkeypatch):
    from batches import services

    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=analog_sequence(2),
        jobs=[{"runs": 3, "variables": {"omega_max": 1.0}}],
        device_type="EMU_FREE",
        webhook="https://tweezer-webhook.invalid/hook",  # never resolves: nothing could be sent
    )
    services.cancel_batch(batch, by=member.user)
    Batch.objects.filter(pk=batch.pk).update(webhook="http://0x7f000001:8000/hook")  # stored before the check

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a request was sent")

    monkeypatch.setattr(webhooks.requests, "post", forbidden)
    webhooks.deliver(str(batch.pk))  # what the task runs
