from __future__ import annotations

from django.contrib import admin

from backends.models import Device


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "backend", "status", "price_per_run", "slots")
    list_editable = ("status", "price_per_run", "slots")
