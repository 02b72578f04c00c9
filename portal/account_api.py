"""Account endpoints of the Pasqal Cloud API: the projects the token's user belongs to, and
(Tweezer's own) the members' spending caps, set by the project's ADMINs as on the credits overview."""

from __future__ import annotations

from typing import Any, Literal

from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema
from pydantic import StrictInt

from portal import credits, usage
from portal.access import is_admin, project_for, projects_of, request_user
from portal.api import ERRORS, committed, envelope, ok
from portal.errors import Forbidden, NotFound
from portal.models import Membership, Project


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


# --- spending caps ------------------------------------------------------------------------------


class SpendingCapIn(Schema):
    amount: StrictInt
    period: Literal["MONTH", "TOTAL"] = "MONTH"


class SpendingCapOut(Schema):
    user_id: int
    username: str
    role: str
    amount: int | None = None
    period: str | None = None
    used: int | None = None
    left: int | None = None
    spent_this_month: int
    spent_total: int


def _cap_rows(project: Project, *, only: int | None = None) -> list[dict[str, Any]]:
    """The credits overview's members table (`usage.members`), as the API answers it."""
    return [
        {
            "user_id": row["user"].pk,
            "username": row["user"].username,
            "role": row["role"],
            "amount": row["cap"].amount if row["cap"] else None,
            "period": row["cap"].period if row["cap"] else None,
            "used": row["cap_used"],
            "left": row["cap_left"],
            "spent_this_month": row["month"],
            "spent_total": row["total"],
        }
        for row in usage.members(project)
        if only is None or row["user"].pk == only
    ]


def _admin_project(request: HttpRequest, project_id: object) -> Project:
    """The project if the caller is one of its ADMINs; 404 for a project they are not in, 403 for a MEMBER."""
    project = project_for(request_user(request), project_id)
    if not is_admin(request_user(request), project):
        raise Forbidden(
            f"Only the ADMINs of project '{project.name}' set spending caps; you are a MEMBER.", field="project_id"
        )
    return project


def _member(project: Project, user_id: int) -> Membership:
    member = Membership.objects.filter(project=project, user_id=user_id).select_related("user").first()
    if member is None:
        raise NotFound(f"User {user_id} is not a member of project '{project.name}'.", field="user_id")
    return member


@router.get("/api/v1/projects/{project_id}/spending-caps", response={200: envelope(list[SpendingCapOut]), **ERRORS})
def list_spending_caps(request: HttpRequest, project_id: str) -> dict[str, Any]:
    """Every member's cap and spending for the project's ADMINs; a MEMBER gets their own row only."""
    user = request_user(request)
    project = project_for(user, project_id)
    return ok(_cap_rows(project, only=None if is_admin(user, project) else user.pk))


@router.put("/api/v1/projects/{project_id}/spending-caps/{user_id}", response={200: envelope(SpendingCapOut), **ERRORS})
def set_spending_cap(request: HttpRequest, project_id: str, user_id: int, payload: SpendingCapIn) -> HttpResponse:
    """Set or change a member's cap (credits per calendar month, or in total); a submission over
    it is then refused with a 402, nothing charged. Project ADMINs only."""

    def build() -> dict[str, Any]:
        project = _admin_project(request, project_id)
        member = _member(project, user_id)
        credits.set_cap(project, member.user, payload.amount, payload.period, by=request_user(request))
        return ok(_cap_rows(project, only=member.user.pk)[0])

    return committed(envelope(SpendingCapOut), build)


@router.delete(
    "/api/v1/projects/{project_id}/spending-caps/{user_id}", response={200: envelope(SpendingCapOut), **ERRORS}
)
def remove_spending_cap(request: HttpRequest, project_id: str, user_id: int) -> HttpResponse:
    """Remove a member's cap (nothing happens if they had none). Project ADMINs only."""

    def build() -> dict[str, Any]:
        project = _admin_project(request, project_id)
        member = _member(project, user_id)
        credits.set_cap(project, member.user, None, "MONTH", by=request_user(request))
        return ok(_cap_rows(project, only=member.user.pk)[0])

    return committed(envelope(SpendingCapOut), build)
