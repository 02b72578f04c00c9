"""Issue 21.5: project admins register webhook endpoints, read the delivery log, redeliver."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from batches import webhooks
from batches.models import WebhookDelivery, WebhookEndpoint
from portal.access import current_project_for, is_admin, request_user
from portal.errors import InvalidInput
from portal.models import Project


def _admin_project(request: HttpRequest) -> Project:
    project, _ = current_project_for(request)
    if project is None or not is_admin(request_user(request), project):
        raise Http404("Only project ADMINs manage webhooks.")
    return project


@login_required
def webhook_list(request: HttpRequest) -> HttpResponse:
    project = _admin_project(request)
    log = WebhookDelivery.objects.filter(project=project).select_related("batch").order_by("-created_at", "-id")
    failed_only = request.GET.get("failed") == "1"
    if failed_only:
        log = log.filter(delivered_at__isnull=True)
    context = {
        "project": project,
        "endpoints": WebhookEndpoint.objects.filter(project=project),
        "deliveries": Paginator(log, 50).get_page(request.GET.get("page")),
        "failed_only": failed_only,
    }
    return render(request, "portal/webhooks.html", context)


@login_required
@require_POST
def webhook_add(request: HttpRequest) -> HttpResponse:
    project = _admin_project(request)
    try:
        endpoint = webhooks.add_endpoint(project, request.POST.get("url") or "", by=request_user(request))
    except InvalidInput as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Every batch of {project.name} that ends is now POSTed to {endpoint.url}.")
    return redirect("webhooks")


@login_required
@require_POST
def webhook_delete(request: HttpRequest, endpoint_id: UUID) -> HttpResponse:
    project = _admin_project(request)
    deleted, _ = WebhookEndpoint.objects.filter(project=project, pk=endpoint_id).delete()
    if not deleted:
        raise Http404("No such endpoint.")
    messages.success(request, "Endpoint removed; its deliveries stay in the log.")
    return redirect("webhooks")


@login_required
@require_POST
def webhook_redeliver(request: HttpRequest, delivery_id: int) -> HttpResponse:
    project = _admin_project(request)
    delivery = WebhookDelivery.objects.filter(project=project, pk=delivery_id).first()
    if delivery is None:
        raise Http404("No such delivery.")
    webhooks.queue_redelivery(delivery)
    messages.success(request, f"Redelivery of batch {str(delivery.batch_id)[:8]} to {delivery.url} queued.")
    return redirect("webhooks")
