"""Contract tests: schemathesis fuzzes every operation of /api/openapi.json against live_server.

No 5xx, and every answer conforms to the document (status code declared, JSON content type,
body matching the declared envelope). Examples are capped to keep the run short.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backends.models import Device

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# The document exactly as served at /api/openapi.json (read in-process; the calls go to live_server).
schema = schemathesis.openapi.from_dict(Client().get("/api/openapi.json").json())


@pytest.fixture
def parked(devices):
    # Fuzzed batches that happen to be valid are queued, never run.
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_answers_within_its_contract(case, member, parked, live_server):
    case.call_and_validate(base_url=live_server.url, headers={"Authorization": f"Bearer {member.token}"}, checks=CHECKS)
