from __future__ import annotations

from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Running Tweezer on several machines: metrics, health probes, worker heartbeats."""

    name = "ops"
    default_auto_field = "django.db.models.BigAutoField"
