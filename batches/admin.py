from __future__ import annotations

from django.contrib import admin

from batches.models import Batch


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "project", "device", "status", "open", "created_at")
    list_filter = ("status", "device", "open")
    search_fields = ("id",)
    raw_id_fields = ("parent",)
