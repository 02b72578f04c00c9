"""Issue 21.5: endpoints registered in the portal, the delivery log, a redelivery. Traffic goes to
127.0.0.1 only (tests.batches.test_webhooks.Receiver); the refusals send nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.test import Client

from batches import services, webhooks
from batches.models import Batch, WebhookDelivery, WebhookEndpoint
from batches.tasks import send_webhook
from tests.batches.test_webhooks import Receiver, _verify
from tests.sequences import seed_mappable_sequence


@pytest.fixture
def failing_once() -> Iterator[Receiver]:
    server = Receiver(fail=1)
    yield server
    server.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def logged_in(member: Any) -> Any:
    client: Any = Client()
    client.force_login(member.user)
    return client


def ended_batch(member: Any, *, webhook: str | None = None) -> Batch:
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=seed_mappable_sequence(),
        jobs=[{"runs": 5, "variables": {"omega_max": 1.0, "qubits": {"q0": 1}}}],
        device_type="EMU_FREE",
        webhook=webhook,
    )
    services.cancel_batch(batch, by=member.user)
    return batch


def test_an_endpoint_added_in_the_portal_gets_every_ended_batch_signed_and_logged(make_member, devices, receiver):
    admin = make_member()
    client = logged_in(admin)
    assert client.post("/webhooks/add/", {"url": receiver.url}).status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.project, endpoint.created_by) == (admin.project, admin.user)
    batch = ended_batch(admin)
    send_webhook(str(batch.pk))  # the task body the lifecycle queued, run here
    (request,) = receiver.requests
    assert _verify(request)["id"] == str(batch.pk) and _verify(request)["status"] == "CANCELED"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status_code, delivery.attempts, delivery.endpoint) == (204, 1, endpoint)
    assert delivery.delivered_at and not delivery.failed
    send_webhook(str(batch.pk))  # a retry of the task: a delivered URL is not posted again
    assert len(receiver.requests) == 1
    page = client.get("/webhooks/").content.decode()
    assert receiver.url in page and ">204<" in page


def test_a_failed_delivery_is_logged_and_redelivered_from_the_portal(
    make_member, devices, failing_once, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    admin = make_member()
    webhooks.add_endpoint(admin.project, failing_once.url, by=admin.user)
    batch = ended_batch(admin, webhook=receiver.url)  # its own webhook too: two deliveries
    with pytest.raises(requests.HTTPError):
        webhooks.deliver(str(batch.pk))
    failed = WebhookDelivery.objects.get(url=failing_once.url)
    assert (failed.status_code, failed.attempts, failed.failed) == (500, 1, True)
    assert WebhookDelivery.objects.get(url=receiver.url).status_code == 204
    assert "delivery-failed" in logged_in(admin).get("/webhooks/?failed=1").content.decode()

    # The worker's task, run here when the redelivery's transaction commits.
    monkeypatch.setattr(webhooks, "send_task", lambda name, delivery_id: webhooks.redeliver(int(delivery_id)))
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(admin).post(f"/webhooks/deliveries/{failed.pk}/redeliver/")
    assert response.status_code == 302
    failed.refresh_from_db()
    assert (failed.status_code, failed.attempts, failed.failed) == (204, 2, False)
    assert [_verify(r)["id"] for r in failing_once.requests] == [str(batch.pk)] * 2
    assert len(receiver.requests) == 1


def test_private_endpoints_are_refused_and_nothing_is_sent(make_member, devices, settings, receiver):
    admin = make_member()
    settings.WEBHOOK_ALLOW_PRIVATE = False
    response = logged_in(admin).post("/webhooks/add/", {"url": "http://169.254.169.254/latest"}, follow=True)
    assert "public address" in response.content.decode() and not WebhookEndpoint.objects.exists()
    # Registered while allowed, refused at delivery: logged, not posted.
    settings.WEBHOOK_ALLOW_PRIVATE = True
    webhooks.add_endpoint(admin.project, receiver.url, by=None)
    settings.WEBHOOK_ALLOW_PRIVATE = False
    webhooks.deliver(str(ended_batch(admin).pk))
    assert receiver.requests == []
    delivery = WebhookDelivery.objects.get()
    assert "public address" in delivery.error and delivery.attempts == 0 and delivery.failed


def test_only_the_project_s_admins_manage_its_webhooks(make_member, devices, receiver):
    admin = make_member()
    member = make_member(role="MEMBER", project=admin.project)
    stranger = make_member()
    endpoint = webhooks.add_endpoint(admin.project, receiver.url, by=admin.user)
    ended = ended_batch(admin)
    webhooks.deliver(str(ended.pk))
    delivery = WebhookDelivery.objects.get()
    client = logged_in(member)  # a MEMBER of the project
    assert client.get("/webhooks/").status_code == 404
    assert client.post("/webhooks/add/", {"url": receiver.url + "x"}).status_code == 404
    for who in (member, stranger):  # the ADMIN of another project sees their own, not these
        client = logged_in(who)
        assert client.post(f"/webhooks/{endpoint.pk}/delete/").status_code == 404
        assert client.post(f"/webhooks/deliveries/{delivery.pk}/redeliver/").status_code == 404
    assert receiver.url not in logged_in(stranger).get("/webhooks/").content.decode()
    assert WebhookEndpoint.objects.count() == 1 and len(receiver.requests) == 1
    assert logged_in(admin).post(f"/webhooks/{endpoint.pk}/delete/").status_code == 302
    assert not WebhookEndpoint.objects.exists() and WebhookDelivery.objects.get().endpoint is None
