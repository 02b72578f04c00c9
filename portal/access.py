"""Who may see what: every lookup starts from the user's memberships (404 otherwise)."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from portal import sql
from portal.errors import NotFound
from portal.models import Membership, Project


def projects_of(user: User) -> list[Project]:
    """The user's active projects by name: every portal page's project switcher, and the API's."""
    rows = sql.fetch(_PROJECTS_OF_SQL, [user.pk, Project.Status.ACTIVE], _PROJECT_FIELDS)
    return [sql.instance(Project, _PROJECT_FIELDS, row) for row in rows]


# SQL: it runs on every portal page (portal.context), where Django took longer to build it than
# the database takes to answer.
_PROJECT_COLUMNS, _PROJECT_FIELDS = sql.columns(Project, "p")
_PROJECTS_OF_SQL = (
    f"SELECT {_PROJECT_COLUMNS} FROM {Project._meta.db_table} p"
    f" JOIN {Membership._meta.db_table} m ON m.project_id = p.id"
    f" WHERE m.user_id = %s AND p.status = %s ORDER BY p.name, p.id"
)
_PROJECT_FOR_SQL = (
    f"SELECT {_PROJECT_COLUMNS} FROM {Project._meta.db_table} p"
    f" JOIN {Membership._meta.db_table} m ON m.project_id = p.id"
    f" WHERE p.id = %s AND m.user_id = %s"
)


def project_for(user: User, project_id: object) -> Project:
    """The project `project_id` if `user` is a member of it (every submission asks), else 404."""
    # project_id comes straight from the client (form field or payload), hence `object`
    try:
        key = sql.param(Project, "id", project_id if isinstance(project_id, UUID) else UUID(str(project_id)))
    except (ValidationError, ValueError, TypeError):
        key = None  # not a UUID: no such project, said the same way
    rows = sql.fetch(_PROJECT_FOR_SQL, [key, user.pk], _PROJECT_FIELDS) if key is not None else []
    if not rows:
        raise NotFound(f"Project {project_id} not found, or you are not a member of it.", field="project_id")
    return sql.instance(Project, _PROJECT_FIELDS, rows[0])  # type: ignore[no-any-return]


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
