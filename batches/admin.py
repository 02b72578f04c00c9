from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from batches import webhooks
from batches.models import Batch, WebhookDelivery, WebhookEndpoint
from portal.errors import InvalidInput


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "project", "device", "status", "open", "created_at")
    list_filter = ("status", "device", "open")
    search_fields = ("id",)
    raw_id_fields = ("parent",)


class WebhookEndpointForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = WebhookEndpoint
        fields = ("project", "url")

    def clean_url(self) -> str:
        url = (self.cleaned_data.get("url") or "").strip()
        try:
            webhooks.check_webhook_url(url)  # public addresses only, as in the portal
        except InvalidInput as exc:
            raise forms.ValidationError(exc.message) from exc
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Issue 21.5: the endpoints project ADMINs registered in the portal."""

    form = WebhookEndpointForm
    list_display = ("url", "project", "created_by", "created_at")
    search_fields = ("url", "project__name")
    readonly_fields = ("created_by", "created_at")

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: object, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]  # staff, signed in
        super().save_model(request, obj, form, change)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The delivery log, read-only (a worker writes it); "Redeliver" queues one more attempt each."""

    list_display = (
        "created_at",
        "batch_short",
        "url",
        "status_code",
        "attempts",
        "last_attempt_at",
        "delivered_at",
    )
    list_filter = ("status_code",)
    search_fields = ("url", "batch__id")

    @admin.display(description="batch", ordering="batch_id")
    def batch_short(self, obj: WebhookDelivery) -> str:
        return str(obj.batch_id)[:8]

    actions = ["redeliver"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Redeliver the selected deliveries")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = 0
        for delivery in queryset:
            webhooks.queue_redelivery(delivery)
            count += 1
        messages.success(request, f"{count} redeliver{'y' if count == 1 else 'ies'} queued.")
