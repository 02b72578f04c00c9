"""QPU over HTTP. The real client arrives with issue 5; until QPU_URL is set the device is DOWN."""

from __future__ import annotations

from django.conf import settings

from backends.adapters.base import Adapter, BackendUnavailable, Result, RunConfig
from backends.models import Device


class QpuAdapter(Adapter):
    requires_exact_device = True

    def status(self) -> tuple[str, str]:
        if not settings.QPU_URL:
            return Device.Status.DOWN, "No QPU endpoint is configured (QPU_URL)."
        return Device.Status.UP, ""

    def run(self, built: object, runs: int, config: RunConfig) -> Result:
        raise BackendUnavailable("the QPU client is not available yet")
