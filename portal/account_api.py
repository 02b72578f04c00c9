"""Account endpoints of the Pasqal Cloud API: the projects the token's user belongs to."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from portal.access import projects_of, request_user
from portal.api import ERRORS, envelope, ok


class ProjectOut(Schema):
    id: str
    name: str
    status: str


router = Router(tags=["account"])


@router.get("/api/v1/projects", response={200: envelope(list[ProjectOut]), **ERRORS})
def list_projects(request: HttpRequest, project_status: str | None = None) -> dict[str, Any]:
    projects = [
        {"id": str(p.pk), "name": p.name, "status": p.status}
        for p in projects_of(request_user(request))
        if project_status in (None, p.status)
    ]
    return ok(projects)
