from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def current_project(request: HttpRequest) -> dict[str, Any]:
    """The project the portal is showing, the others the user can switch to, and whether the user
    is one of its ADMINs (the navigation's links to admin pages)."""
    from portal.access import current_project_for

    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    project, projects = current_project_for(request)
    admin = getattr(project, "member_role", None) == "ADMIN"
    return {"current_project": project, "user_projects": projects, "project_admin": admin}
