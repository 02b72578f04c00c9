"""Object-level access: another project's ids are 404 everywhere; no token is 401; no CSRF is 403.

The endpoint and page lists are read from the URLconf and the OpenAPI schema, so a route
added later is attacked too.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from batches import services, workloads
from batches.models import Batch, Workload
from jobs.models import Job
from portal.api import api
from portal.models import CreditTransaction, SpendingCap
from tests.sequences import analog_sequence

pytestmark = pytest.mark.django_db

ID_PARAMS = {"batch_id", "job_id", "token_id", "workload_id", "endpoint_id", "delivery_id", "project_id"}
ADD_JOBS_BODY = [{"runs": 5, "variables": {"omega_max": 1.0}}]


@pytest.fixture
def victim(devices, make_member) -> dict[str, Any]:
    """Project B: an open batch with a job, a workload, and one of B's API tokens."""
    from portal.models import ApiToken

    owner = make_member()
    batch = services.create_batch(
        owner.project,
        owner.user,
        sequence_builder=analog_sequence(2),
        jobs=ADD_JOBS_BODY,
        device_type="EMU_FREE",
        open=True,
    )
    job = batch.jobs.get()
    workload = workloads.create_workload(
        owner.project,
        owner.user,
        workload_type="pulser",
        backend="EMU_FREE",
        config={"sequence": analog_sequence(2), "runs": 5, "variables": {"omega_max": 1.0}},
    )
    token = ApiToken.objects.filter(user=owner.user).first()
    # A webhook endpoint and a logged delivery (rows only: nothing is sent).
    from batches.models import WebhookDelivery, WebhookEndpoint

    endpoint = WebhookEndpoint.objects.create(project=owner.project, url="https://hooks.example.org/b")
    delivery = WebhookDelivery.objects.create(project=owner.project, batch=batch, endpoint=endpoint, url=endpoint.url)
    return {
        "member": owner,
        "batch": batch,
        "job": job,
        "workload": workload,
        "token": token,
        "endpoint": endpoint,
        "delivery": delivery,
    }


def _snapshot() -> tuple[int, int, int, int, list[str], list[str]]:
    return (
        Workload.objects.count(),
        Batch.objects.count(),
        Job.objects.count(),
        CreditTransaction.objects.count(),
        sorted(Batch.objects.values_list("status", flat=True)),
        sorted(Job.objects.values_list("status", flat=True)),
    )


def _api_operations() -> list[tuple[str, str, dict[str, Any]]]:
    schema = api.get_openapi_schema()
    return [
        (method.upper(), path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"{(\w+)}", lambda m: ids.get(m.group(1), str(uuid.uuid4())), path)


def _body_for(method: str, path: str, project_id: str) -> Any:
    if path.endswith("/jobs") and method == "POST":
        return ADD_JOBS_BODY
    if path.endswith("/tags"):
        return ["x"]
    if "/spending-caps/" in path and method == "PUT":
        return {"amount": 5}
    if path.endswith("/batches/cancel"):
        return None
    if method == "POST" and path.endswith("/batches"):
        return {"sequence_builder": analog_sequence(2), "jobs": ADD_JOBS_BODY, "project_id": project_id}
    if method == "POST" and path.endswith("/workloads"):
        config = {"sequence": analog_sequence(2), "runs": 5, "variables": {"omega_max": 1.0}}
        return {"workload_type": "pulser", "backend": "EMU_FREE", "config": config, "project_id": project_id}
    return {}


def test_every_api_operation_with_another_projects_ids_is_404_and_changes_nothing(make_member, victim):
    attacker = make_member()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {attacker.token}")
    ids = {
        "batch_id": str(victim["batch"].pk),
        "job_id": str(victim["job"].pk),
        "workload_id": str(victim["workload"].pk),
        "project_id": str(victim["member"].project_id),
        "user_id": str(victim["member"].user_id),
    }
    before = _snapshot()
    attacked = 0
    for method, path, _ in _api_operations():
        if not ID_PARAMS & set(re.findall(r"{(\w+)}", path)):
            continue
        body = _body_for(method, path, str(victim["member"].project_id))
        response = client.generic(method, _fill(path, ids), data=_json(body), content_type="application/json")
        assert response.status_code == 404, (method, path, response.status_code, response.content[:300])
        assert response.json()["status"] == "fail"
        assert str(victim["batch"].pk) not in response.content.decode().split("not found")[-1]
        assert str(victim["workload"].batch_id) not in response.content.decode()
        attacked += 1
    # The endpoints that take ids in the body or the query string.
    cancel = client.patch(
        "/core/api/v1/batches/cancel", data=_json({"batch_ids": [ids["batch_id"]]}), content_type="application/json"
    )
    assert cancel.status_code == 200 and cancel.json()["data"]["batches"] == []
    create = client.post(
        "/core/api/v1/batches",
        data=_json(_body_for("POST", "/batches", str(victim["member"].project_id))),
        content_type="application/json",
    )
    assert create.status_code == 404, create.content
    create_workload = client.post(
        "/core/api/v1/workloads",
        data=_json(_body_for("POST", "/workloads", str(victim["member"].project_id))),
        content_type="application/json",
    )
    assert create_workload.status_code == 404, create_workload.content
    listing = client.get("/core/api/v1/batches", {"project_id": str(victim["member"].project_id)})
    assert listing.json()["data"] == []
    jobs = client.get("/core/api/v2/jobs", {"batch_id": ids["batch_id"]})
    assert jobs.status_code in (200, 404) and not jobs.json().get("data")
    assert attacked >= 12, attacked
    assert _snapshot() == before and not SpendingCap.objects.exists()
    print(f"\nFIGURE API operations attacked with another project's ids: {attacked + 5}, answered 404/empty")


def _json(body: Any) -> str:
    import json

    return json.dumps(body)


def test_every_api_operation_without_a_token_is_401_in_the_json_envelope(victim):
    client = Client()
    ids = {
        "batch_id": str(victim["batch"].pk),
        "job_id": str(victim["job"].pk),
        "workload_id": str(victim["workload"].pk),
    }
    checked = 0
    for method, path, operation in _api_operations():
        if not operation.get("security"):
            continue  # public by design (device public specs)
        for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer twz_forged"}, {"HTTP_AUTHORIZATION": "Basic abc"}):
            response = client.generic(
                method,
                _fill(path, ids),
                data=_json({}),
                content_type="application/json",
                **headers,  # type: ignore[arg-type]  # extra headers, as WSGI environ keys
            )
            assert response.status_code == 401, (method, path, headers, response.status_code)
            body = response.json()
            assert body["status"] == "fail" and body["code"] == 401 and body["message"]
        checked += 1
    assert checked >= 15, checked
    print(f"\nFIGURE API operations refused without a valid token: {checked} (401, JSON envelope)")


def _portal_patterns() -> list[tuple[str, set[str]]]:
    """(route with placeholders, parameter names) of every portal page, not the API or Django admin."""
    found: list[tuple[str, set[str]]] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if route.startswith("admin/"):
                    continue
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                if route.startswith(("core/", "account/", "api/", "results/", "static/")) or "{" in route:
                    continue
                found.append((route, set(re.findall(r"<(?:\w+:)?(\w+)>", route))))

    walk(get_resolver().url_patterns, "")
    return found


def _portal_url(route: str, ids: dict[str, str]) -> str:
    route = route.lstrip("^").rstrip("$")
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: ids.get(m.group(1), str(uuid.uuid4())), route)


def test_every_portal_page_with_another_projects_ids_is_404(make_member, victim):
    attacker = make_member()
    client = Client()
    client.force_login(attacker.user)
    ids = {
        "batch_id": str(victim["batch"].pk),
        "job_id": str(victim["job"].pk),
        "token_id": str(victim["token"].pk),
        "endpoint_id": str(victim["endpoint"].pk),
        "delivery_id": str(victim["delivery"].pk),
    }
    before = _snapshot()
    attacked = 0
    for route, params in _portal_patterns():
        if not params & ID_PARAMS:
            continue
        url = _portal_url(route, ids)
        for method in ("get", "post"):
            response = getattr(client, method)(url, HTTP_HX_REQUEST="true" if method == "post" else "")
            if response.status_code == 405:
                continue
            assert response.status_code == 404, (method, url, response.status_code)
            attacked += 1
    assert attacked >= 8, attacked
    assert _snapshot() == before
    victim["token"].refresh_from_db()
    assert victim["token"].revoked_at is None
    victim["delivery"].refresh_from_db()  # neither removed nor redelivered
    assert victim["delivery"].endpoint_id == victim["endpoint"].pk and victim["delivery"].attempts == 0
    print(f"\nFIGURE portal requests with another project's ids: {attacked}, all 404")


def test_every_portal_post_without_a_csrf_token_is_403(member, victim):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member.user)
    ids = {
        "batch_id": str(victim["batch"].pk),
        "job_id": str(victim["job"].pk),
        "token_id": str(uuid.uuid4()),
        "delivery_id": str(victim["delivery"].pk),
    }
    before = _snapshot()
    refused = 0
    for route, _ in _portal_patterns():
        response = client.post(_portal_url(route, ids), {"name": "x", "project_id": str(member.project_id)})
        assert response.status_code == 403, (route, response.status_code)
        refused += 1
    assert refused >= 8
    assert _snapshot() == before
    print(f"\nFIGURE portal POSTs without CSRF token: {refused}, all 403")


def test_a_member_cannot_reach_admin_pages(make_member):
    admin = make_member(role="ADMIN")
    member = make_member(role="MEMBER", project=admin.project)
    client = Client()
    client.force_login(member.user)
    # Django's admin is for platform staff only.
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client.get("/admin/portal/credittransaction/").status_code == 302
    # The project's ledger is for project ADMINs: the page hides it, the CSV is 404.
    assert client.get("/credits/ledger.csv").status_code == 404
    page = client.get("/credits/")
    assert page.status_code == 200 and page.context["admin"] is False and "ledger" not in page.context
    client.force_login(admin.user)
    assert client.get("/credits/ledger.csv").status_code == 200
    assert "ledger" in client.get("/credits/").context


def test_projects_of_lists_only_the_users_active_projects_by_name(make_member):
    """The switcher's list (SQL): the user's memberships only, archived ones left out, whole rows."""
    from portal.access import projects_of
    from portal.models import Membership, Project

    first = make_member()
    user = first.user
    Project.objects.filter(pk=first.project_id).update(name="b-project")
    other = Project.objects.create(name="a-project")
    Membership.objects.create(user=user, project=other, role=Membership.Role.MEMBER)
    archived = Project.objects.create(name="c-archived", status=Project.Status.ARCHIVED)
    Membership.objects.create(user=user, project=archived, role=Membership.Role.MEMBER)
    make_member()  # someone else's project
    listed = projects_of(user)
    assert [p.name for p in listed] == ["a-project", "b-project"]
    expected = Project.objects.get(pk=first.project_id)
    got = next(p for p in listed if p.pk == expected.pk)
    assert {f.attname: getattr(got, f.attname) for f in Project._meta.concrete_fields} == {
        f.attname: getattr(expected, f.attname) for f in Project._meta.concrete_fields
    }
