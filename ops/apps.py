from __future__ import annotations

from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Running Tweezer on several machines: metrics, health probes, worker heartbeats."""

    name = "ops"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ops import workers  # noqa: F401 - connects the Celery worker's heartbeat to its start and stop
