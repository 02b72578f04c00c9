"""Device specs, as the SDK and pulser's PasqalCloud fetch them."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from backends.models import Device
from portal.api import ERRORS, envelope, ok

router = Router(tags=["devices"])


class PublicSpecsOut(Schema):
    device_type: str
    specs: str


@router.get("/api/v1/devices/specs", response={200: envelope(dict[str, str]), **ERRORS})
def device_specs(request: HttpRequest) -> dict[str, Any]:
    return ok(dict(Device.objects.order_by("name").values_list("name", "specs")))


@router.get("/api/v1/devices/public-specs", auth=None, response={200: envelope(list[PublicSpecsOut])})
def public_device_specs(request: HttpRequest) -> dict[str, Any]:
    rows = Device.objects.filter(is_public=True).order_by("name").values_list("name", "specs")
    return ok([{"device_type": name, "specs": specs} for name, specs in rows])
