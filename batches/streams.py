"""The portal's server-sent events (issue 19): a batch page's live region refreshes when the
batch changes, the batches list and the queue view when theirs do, instead of polling.
Async: an open stream costs no thread.

The event says only "changed"; the page then asks for its live region as it always did (the
same view, the same access checks), so the stream carries no data of its own. The page keeps
a slow poll as a fallback for when the stream drops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils import timezone

from batches import services
from batches.models import TERMINAL_BATCH_STATUSES, Batch, BatchStatus
from portal import events
from portal.access import current_project_for
from portal.api import release_connection
from portal.errors import NotFound

KEEP_ALIVE_SECONDS = 15  # under the idle timeouts of the usual proxies
COALESCE_SECONDS = 1  # a list or queue refetch per second at most, however busy the platform
ACTIVE_STATUSES = (BatchStatus.PENDING, BatchStatus.RUNNING)
COUNTER_COLUMNS = ("pending_jobs", "running_jobs", "done_jobs", "error_jobs", "canceled_jobs")


def _status(user: User, batch_id: UUID) -> str | None:
    """The batch's status if this user may see its page (the page's own check), else None."""
    try:
        return services.get_batch_for(user, batch_id).status
    except NotFound:
        return None
    finally:
        release_connection()


async def batch_events(request: HttpRequest, batch_id: UUID) -> HttpResponseBase:
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponse("Sign in first.", status=401, content_type="text/plain")
    status = await sync_to_async(_status)(user, batch_id)
    if status is None:
        return HttpResponse("No such batch.", status=404, content_type="text/plain")
    if status in TERMINAL_BATCH_STATUSES or "wsgi.version" in request.META:
        # 204: EventSource stops reconnecting. Nothing will change; or, under WSGI (the test
        # suite's live server), a stream would take a thread for its whole life: the page polls.
        return HttpResponse(status=204)
    holder = events.holder_of(request)
    hub = events.hub()
    busy = _too_busy(hub, holder)
    if busy is not None:
        return busy

    async def stream() -> AsyncIterator[str]:
        # Ends after SSE_STREAM_SECONDS (the browser reconnects, its session checked again), when
        # the batch ends, or when the client goes away (Django cancels this generator).
        deadline = time.monotonic() + settings.SSE_STREAM_SECONDS
        async with hub.slot(holder), hub.subscribe(batch_id) as changed:
            yield "retry: 3000\n\n"
            while time.monotonic() < deadline and not hub.closing:
                try:
                    await asyncio.wait_for(changed.wait(), timeout=KEEP_ALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                changed.clear()
                yield "event: batch\ndata: changed\n\n"
                if await sync_to_async(_status)(user, batch_id) in TERMINAL_BATCH_STATUSES:
                    return

    stream_response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    stream_response["Cache-Control"] = "no-cache"
    stream_response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return stream_response


def _project_fingerprint(project_id: Any, since: datetime) -> tuple[Any, ...]:
    """The project's batches that may change or just did: active, or ended since the stream began."""
    try:
        rows = Batch.objects.filter(project_id=project_id).filter(
            Q(status__in=ACTIVE_STATUSES) | Q(end_datetime__gte=since)
        )
        return tuple(rows.order_by("pk").values_list("pk", "status", "open", *COUNTER_COLUMNS))
    finally:
        release_connection()


def _queue_fingerprint() -> tuple[Any, ...]:
    """Every device's queue: the active batches, their order moves as any of them changes."""
    try:
        return tuple(
            Batch.objects.filter(status__in=ACTIVE_STATUSES)
            .aggregate(n=Count("pk"), running=Sum("running_jobs"), pending=Sum("pending_jobs"), ended=Sum("done_jobs"))
            .values()
        )
    finally:
        release_connection()


def _current_project_id(request: HttpRequest) -> Any:
    project, _ = current_project_for(request)
    release_connection()
    return project.pk if project is not None else None


async def project_events(request: HttpRequest) -> HttpResponseBase:
    """The batches list's and the queue view's stream: `batches` when a batch of the current
    project changes, `queue` when any active batch does (positions move). Bursts are merged:
    at most one event of each kind per COALESCE_SECONDS."""
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponse("Sign in first.", status=401, content_type="text/plain")
    if "wsgi.version" in request.META:
        return HttpResponse(status=204)  # see batch_events
    project_id = await sync_to_async(_current_project_id)(request)
    holder = events.holder_of(request)
    hub = events.hub()
    busy = _too_busy(hub, holder)
    if busy is not None:
        return busy
    since = timezone.now()

    async def stream() -> AsyncIterator[str]:
        deadline = time.monotonic() + settings.SSE_STREAM_SECONDS
        async with hub.slot(holder), hub.subscribe(events.ANY) as changed:
            mine = await sync_to_async(_project_fingerprint)(project_id, since)
            queue = await sync_to_async(_queue_fingerprint)()
            yield "retry: 3000\n\n"
            while time.monotonic() < deadline and not hub.closing:
                try:
                    await asyncio.wait_for(changed.wait(), timeout=KEEP_ALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                await asyncio.sleep(COALESCE_SECONDS)
                changed.clear()
                now_mine = await sync_to_async(_project_fingerprint)(project_id, since)
                now_queue = await sync_to_async(_queue_fingerprint)()
                if now_mine != mine:
                    yield "event: batches\ndata: changed\n\n"
                if now_queue != queue:
                    yield "event: queue\ndata: changed\n\n"
                mine, queue = now_mine, now_queue

    stream_response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    stream_response["Cache-Control"] = "no-cache"
    stream_response["X-Accel-Buffering"] = "no"
    return stream_response


def _too_busy(hub: events.Hub, holder: str) -> HttpResponse | None:
    """A 429 with Retry-After when this process or this holder has as many streams as allowed."""
    try:
        hub.check(holder)
    except events.TooBusy as exc:
        response = HttpResponse(exc.message, status=429, content_type="text/plain")
        response["Retry-After"] = str(settings.HOLD_RETRY_AFTER_SECONDS)
        return response
    return None
