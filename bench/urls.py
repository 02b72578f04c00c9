"""The product's URLs plus the floors of scenarios 3 and 7 (bench only, never in production)."""

from __future__ import annotations

import json

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from portal.urls import urlpatterns as product_urls


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello, world.")


def bare_jobs(request: HttpRequest) -> JsonResponse:
    """Scenario 3's framework floor: bench/listing.py's hand-written SQL for a named filter, run
    through Django's connection and answered as the API's JSON shape. No token, no validation."""
    from bench.listing import sql_page

    name, offset, user = request.GET["name"], int(request.GET["offset"]), int(request.GET["user"])
    rows, total = sql_page(connection, user, name, json.loads(request.GET["params"]), offset)
    data = [dict(zip(FIELDS, row, strict=True)) for row in rows]
    for job in data:  # Django's connection hands JSON columns over as text, as the ORM expects
        for key in ("variables", "errors"):
            if isinstance(job[key], str):
                job[key] = json.loads(job[key])
    body = {"status": "success", "code": 200, "message": "OK.", "data": data}
    body["pagination"] = {"total": total, "offset": offset, "end": offset + len(rows)}
    return JsonResponse(body)  # DjangoJSONEncoder: UUIDs and times as the API writes them


FIELDS = (
    "id", "batch_id", "project_id", "user_id", "status", "runs", "variables", "errors", "created_at",
    "updated_at", "start_timestamp", "end_timestamp", "parent_id", "creation_order",
)  # fmt: skip

urlpatterns = [path("hello/", hello), path("bench/bare-jobs/", bare_jobs), *product_urls]
