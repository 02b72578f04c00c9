"""Devices: the targets batches are queued for."""

from __future__ import annotations

import uuid

from django.db import models


class Device(models.Model):
    class Status(models.TextChoices):
        UP = "UP"
        DOWN = "DOWN"
        MAINTENANCE = "MAINTENANCE"

    class Backend(models.TextChoices):
        QUTIP = "qutip", "pulser-simulation (QuTiP)"
        EMU_SV = "emu_sv", "emu-sv (state vector)"
        EMU_MPS = "emu_mps", "emu-mps (matrix product state)"
        QPU = "qpu", "QPU over HTTP"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=40, unique=True, help_text="Device type as the SDK names it, e.g. EMU_FREE.")
    backend = models.CharField(max_length=16, choices=Backend.choices, default=Backend.QUTIP)
    price_per_run = models.PositiveIntegerField(default=1, help_text="Credits charged per shot (run).")
    slots = models.PositiveSmallIntegerField(default=1, help_text="Batches this device runs at once.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UP)
    status_reason = models.CharField(max_length=300, blank=True)
    status_changed_at = models.DateTimeField(auto_now_add=True)
    # Pulser device abstract representation, kept as the string the SDK hands to pulser.
    specs = models.TextField()
    is_public = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def queue(self) -> str:
        return f"device.{self.name}"
