"""Issue 21's models in the Django admin, for platform staff: webhook endpoints and the delivery log."""

from __future__ import annotations

from typing import Any

import pytest

from batches import services, webhooks
from batches.models import WebhookDelivery, WebhookEndpoint
from tests.sequences import analog_sequence

pytestmark = pytest.mark.django_db


def a_delivery(member: Any) -> WebhookDelivery:
    batch = services.create_batch(
        member.project,
        member.user,
        sequence_builder=analog_sequence(2),
        jobs=[{"runs": 5, "variables": {"omega_max": 1.0}}],
        device_type="EMU_FREE",
        validate=False,
    )
    endpoint = WebhookEndpoint.objects.create(project=member.project, url="https://hooks.example.org/a")
    return WebhookDelivery.objects.create(
        project=member.project, batch=batch, endpoint=endpoint, url=endpoint.url, status_code=500, attempts=3
    )


def test_staff_register_a_webhook_endpoint_in_the_django_admin_public_addresses_only(
    admin_client, admin_user, make_member, settings
):
    member = make_member()
    settings.WEBHOOK_ALLOW_PRIVATE = False
    refused = admin_client.post(
        "/admin/batches/webhookendpoint/add/", {"project": member.project.pk, "url": "http://169.254.169.254/x"}
    )
    assert refused.status_code == 200 and "public address" in refused.content.decode()
    assert not WebhookEndpoint.objects.exists()
    added = admin_client.post(
        "/admin/batches/webhookendpoint/add/", {"project": member.project.pk, "url": "https://93.184.215.14/hook"}
    )
    assert added.status_code == 302, added.content[:500]
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.url, endpoint.created_by) == ("https://93.184.215.14/hook", admin_user)
    assert "https://93.184.215.14/hook" in admin_client.get("/admin/batches/webhookendpoint/").content.decode()


def test_staff_read_the_delivery_log_and_redeliver_from_it_but_cannot_edit_it(
    admin_client, make_member, devices, monkeypatch, django_capture_on_commit_callbacks
):
    delivery = a_delivery(make_member())
    listing = admin_client.get("/admin/batches/webhookdelivery/").content.decode()
    assert "https://hooks.example.org/a" in listing and ">500<" in listing
    assert admin_client.get("/admin/batches/webhookdelivery/add/").status_code == 403
    assert admin_client.get(f"/admin/batches/webhookdelivery/{delivery.pk}/change/").status_code == 200  # to view
    admin_client.post(f"/admin/batches/webhookdelivery/{delivery.pk}/change/", {"status_code": 204})
    delivery.refresh_from_db()
    assert delivery.status_code == 500, "the log is what the worker wrote"

    sent: list[str] = []
    monkeypatch.setattr(webhooks, "send_task", lambda name, delivery_id: sent.append(delivery_id))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/batches/webhookdelivery/",
            {"action": "redeliver", "_selected_action": [delivery.pk]},
            follow=True,
        )
    assert "1 redelivery queued." in response.content.decode()
    assert sent == [str(delivery.pk)]
