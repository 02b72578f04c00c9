"""/healthz, /readyz and /metrics, answered before anything else: a probe or a scraper that
calls a pod by its IP address is not refused by ALLOWED_HOSTS, and no session, CSRF or
redirect applies to it."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from health_check.views import HealthCheckView
from prometheus_client import CONTENT_TYPE_LATEST

from ops.health import READY_CHECKS
from ops.metrics import exposition
from portal.middleware import BothModes

#: The operations endpoints: the deployment manifests' probes and scrapes use these paths.
PATHS = ("/healthz", "/readyz", "/metrics")


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def readyz(request: HttpRequest) -> HttpResponse:
    view = HealthCheckView.as_view(checks=READY_CHECKS)
    if "format" not in request.GET and request.META.get("HTTP_ACCEPT", "*/*") == "*/*":
        request.META["HTTP_ACCEPT"] = "text/plain"  # a probe's or curl's plain GET: text, not the HTML page
    response: HttpResponse = async_to_sync(view)(request)  # the package's view is async; ours is sync
    if response.status_code == 500:
        response.status_code = 503  # not ready: Service Unavailable (the package answers 500)
    return response


def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponse("Not found\n", status=404, content_type="text/plain")
    given = request.META.get("HTTP_AUTHORIZATION", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


VIEWS: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


class OpsEndpointsMiddleware(BothModes):
    """Sync or async, as the chain below it: an async chain keeps held requests off threads
    (issue 19), so the endpoints' database reads go to a thread here."""

    def before(self, request: HttpRequest) -> HttpResponse | None:
        view = _view_for(request)
        return view(request) if view is not None else None

    async def abefore(self, request: HttpRequest) -> HttpResponse | None:
        if _view_for(request) is None:
            return None
        return await sync_to_async(self.before)(request)


def _view_for(request: HttpRequest) -> Callable[[HttpRequest], HttpResponse] | None:
    view = VIEWS.get(request.path_info.rstrip("/") or "/")
    return view if view is not None and request.method in ("GET", "HEAD") else None
