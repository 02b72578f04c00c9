from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from backends.devices import sync_devices


class Command(BaseCommand):
    help = "Create or refresh devices from pulser's device definitions and the QPU endpoint's specs."

    def handle(self, *args: Any, **options: Any) -> None:
        for device in sync_devices():
            reason = f" ({device.status_reason})" if device.status_reason else ""
            self.stdout.write(f"{device.name:<10} {device.status}{reason}")
