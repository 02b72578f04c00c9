from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def current_project(request: HttpRequest) -> dict[str, Any]:
    """The project the portal is showing, and the others the user can switch to."""
    from portal.access import current_project_for

    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    project, projects = current_project_for(request)
    return {"current_project": project, "user_projects": projects}
