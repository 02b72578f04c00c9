"""Who may see what: every lookup starts from the user's memberships (404 otherwise)."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from django.contrib.auth.models import User
from django.db.models import F
from django.http import HttpRequest

from portal.errors import NotFound
from portal.models import Membership, Project


def projects_of(user: User) -> list[Project]:
    """The user's active projects by name: every portal page's project switcher, and the API's;
    each carries the user's role in it as `member_role` (the same join: no query per page)."""
    projects = Project.objects.filter(memberships__user=user, status=Project.Status.ACTIVE)
    return list(projects.annotate(member_role=F("memberships__role")).order_by("name", "pk"))


def project_for(user: User, project_id: object) -> Project:
    """The project `project_id` if `user` is a member of it (every submission asks), else 404."""
    # project_id comes straight from the client (form field or payload), hence `object`
    try:
        key = project_id if isinstance(project_id, UUID) else UUID(str(project_id))
    except (ValueError, TypeError):
        key = None  # not a UUID: no such project, said the same way
    project = Project.objects.filter(pk=key, memberships__user=user).first() if key is not None else None
    if project is None:
        raise NotFound(f"Project {project_id} not found, or you are not a member of it.", field="project_id")
    return project


def role_in(user: User, project: Project) -> str | None:
    return Membership.objects.filter(user=user, project=project).values_list("role", flat=True).first()


def is_admin(user: User, project: Project) -> bool:
    return role_in(user, project) == Membership.Role.ADMIN


def request_user(request: HttpRequest) -> User:
    """Typing helper: the signed-in user of a request behind login/token auth (never AnonymousUser there)."""
    return cast(User, request.user)


def current_project_for(request: HttpRequest) -> tuple[Project | None, list[Project]]:
    """The project chosen with the switcher (kept in the session), else the first one."""
    cached = getattr(request, "_tweezer_projects", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    projects = projects_of(request_user(request))
    chosen = request.session.get("project_id")
    project = next((p for p in projects if str(p.pk) == chosen), projects[0] if projects else None)
    request._tweezer_projects = (project, projects)  # type: ignore[attr-defined]
    return project, projects
