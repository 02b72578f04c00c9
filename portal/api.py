"""The HTTP API the Pasqal Cloud SDK speaks: one NinjaAPI, mounted under `core/` and `account/`.

Wire-format quirks live here and in the routers: the JSend envelope on success and on
errors, Bearer tokens, 400 (not 422) for invalid input. Rules live in the services.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render as render_page
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.openapi.docs import Swagger
from ninja.security import HttpBearer
from pydantic import create_model

from portal.errors import InvalidInput, TweezerError
from portal.middleware import json_depth_ok
from portal.tokens import user_for_token
from portal.wire import dumps

log = logging.getLogger(__name__)


def release_connection() -> None:
    """Close this thread's database connection, outside a transaction: a held request (issue 19)
    reads now and then over many seconds, and must not keep a connection the while."""
    if not transaction.get_connection().in_atomic_block:
        transaction.get_connection().close()


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = user_for_token(token)
        if user is not None:
            request.user = user
        return user


class Pagination(Schema):
    total: int
    offset: int
    end: int


class ErrorData(Schema):
    description: str
    field: str | None = None


class ErrorEnvelope(Schema):
    status: str = "fail"
    code: int
    message: str
    data: ErrorData


ERRORS: dict[int, type[Schema]] = dict.fromkeys((400, 401, 402, 403, 404, 409, 413), ErrorEnvelope)
_envelopes: dict[tuple[Any, bool], type[Schema]] = {}


def _schema_name(data: Any) -> str:
    """A unique component name: `list[JobOut]` -> "JobOutList" (a generic's __name__ is just "list")."""
    args = getattr(data, "__args__", None)
    if not args:
        return str(data.__name__)
    inner = "".join(_schema_name(arg).capitalize() if arg in (str, int) else _schema_name(arg) for arg in args)
    return inner + str(data.__origin__.__name__).capitalize()


def envelope(data: Any, *, paginated: bool = False) -> type[Schema]:
    """The response schema `{status, code, message, data, pagination?}` around `data`."""
    key = (data, paginated)
    if key not in _envelopes:
        name = _schema_name(data)
        suffix = "Page" if paginated else "Envelope"
        fields: dict[str, Any] = {
            "status": (str, "success"),
            "code": (int, 200),
            "message": (str, "OK."),
            "data": (data, ...),
        }
        if paginated:
            fields["pagination"] = (Pagination, ...)
        _envelopes[key] = create_model(f"{name}{suffix}", __base__=Schema, **fields)
    return _envelopes[key]


def ok(data: Any, *, code: int = 200, pagination: dict[str, int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "success", "code": code, "message": "OK.", "data": data}
    if pagination is not None:
        body["pagination"] = pagination
    return body


def render(schema: type[Schema], body: dict[str, Any]) -> dict[str, Any]:
    """`body` exactly as ninja will serialise it (defaults filled in, JSON types)."""
    return schema.model_validate(body).model_dump(mode="json")


def render_committed(
    schema: type[Schema], build: Callable[[], dict[str, Any]], *, rendered: bool = False
) -> dict[str, Any]:
    """Run a mutating endpoint and render its response in ONE transaction.

    The SDK re-sends a request answered 5xx: a response that failed to serialise after the
    commit would duplicate the batch. Here such a failure rolls the change back instead.
    `rendered`: `build` renders its body itself, as `schema` would (a test holds it to that).
    """
    with transaction.atomic():
        body = build()
        return body if rendered else render(schema, body)


def committed(schema: type[Schema], build: Callable[[], dict[str, Any]], *, rendered: bool = False) -> HttpResponse:
    """Run a mutating endpoint, render and encode its answer in ONE transaction (see
    `render_committed`): nothing that can fail is left for after the commit. Already rendered
    by `schema`, it is not handed back to ninja, which would validate it against the same
    schema a second time."""
    with transaction.atomic():
        body = build()
        return json_response(body if rendered else render(schema, body))


def json_response(body: dict[str, Any], *, status: int = 200) -> HttpResponse:
    """A rendered body (JSON types only: `render`'s, or built as a schema renders) as the answer.

    `dumps` never fails: a value stored before the input checks (`portal.wire`) is still answered.
    """
    return HttpResponse(dumps(body), content_type="application/json", status=status)


def check_depth(request: HttpRequest) -> None:
    """Refuse a body nested deeper than MAX_JSON_DEPTH: pulser's JSON must not blow the stack."""
    if not json_depth_ok(request.body or b"null", settings.MAX_JSON_DEPTH):
        raise InvalidInput(f"The request body is nested deeper than {settings.MAX_JSON_DEPTH} levels.")


def parse_body(request: HttpRequest) -> Any:
    """The raw JSON body, with depth checked first."""
    check_depth(request)
    body = request.body or b"null"
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"The request body is not valid JSON: {exc}") from exc


class VendoredSwagger(Swagger):
    """Swagger UI from static/vendor: ninja's own page loads it from a CDN unless `ninja` is an
    installed app, and a CDN is neither allowed by the CSP nor reachable offline."""

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        self.settings["url"] = self.get_openapi_url(api, kwargs)
        context = {"swagger_settings": self.settings, "api": api, "add_csrf": False}
        return render_page(request, "portal/api_docs.html", context)


api = NinjaAPI(
    title="Tweezer API",
    version="1",
    description="The Pasqal Cloud API, served by Tweezer. Authenticate with `Authorization: Bearer <token>`.",
    auth=BearerToken(),
    urls_namespace="api",
    docs_url="/api/docs",
    # No validator badge: it would call validator.swagger.io.
    docs=VendoredSwagger(settings={"validatorUrl": None, "deepLinking": True}),
    openapi_url="/api/openapi.json",
)


MAX_MESSAGE = 1000


def _error(request: HttpRequest, status: int, message: str, field: str | None = None) -> HttpResponse:
    if len(message) > MAX_MESSAGE:  # a message quoting a hostile 10 kB value: the start says enough
        message = message[: MAX_MESSAGE - 1] + "…"
    data: dict[str, Any] = {"description": message}
    if field:
        data["field"] = field
    return api.create_response(
        request, {"status": "fail", "code": status, "message": message, "data": data}, status=status
    )


@api.exception_handler(TweezerError)
def _domain_error(request: HttpRequest, exc: TweezerError) -> HttpResponse:
    response = _error(request, exc.status_code, exc.message, exc.field)
    if "retry_after" in exc.details:  # 429: the SDK waits this long before trying again
        response["Retry-After"] = str(exc.details["retry_after"])
    return response


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "Missing or invalid API token: send 'Authorization: Bearer <token>'.")


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return _error(request, 413, f"Request body too large: the limit is {limit} bytes.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _error(request, exc.status_code, str(exc))


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    problems = []
    field = None
    for error in exc.errors[:5]:
        loc = [str(p) for p in error.get("loc", []) if p not in ("body", "query", "path", "payload")]
        where = ".".join(loc) or "body"
        field = field or (loc[-1] if loc else None)
        problems.append(f"'{where}': {error.get('msg', 'invalid')}")
    return _error(request, 400, "Invalid input: " + "; ".join(problems), field)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    # Still JSON: the SDK parses every error body. Logged with its traceback for the operator.
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _error(request, 500, "Internal error: the request failed and nothing was changed.")
