"""The one batch filter: the API's list (the SDK's BatchFilters) and the portal's batches page."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from batches.models import Batch
from portal.wire import int64_ids


def has_tag(tag: str) -> Q:
    """Batches carrying `tag` (JSON containment; SQLite has none: match the quoted string)."""
    if connection.features.supports_json_field_contains:
        return Q(tags__contains=[tag])
    return Q(tags__icontains=json.dumps(tag))


def filter_batches(
    qs: QuerySet[Batch],
    *,
    ids: Iterable[Any] | None = None,
    project_ids: Iterable[Any] | None = None,
    user_ids: Iterable[str] | None = None,
    username: str | None = None,
    device_types: Iterable[str] | None = None,
    statuses: Iterable[str] | None = None,
    open: bool | None = None,
    priorities: Iterable[int] | None = None,
    tag: str | None = None,
    has_errors: bool | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> QuerySet[Batch]:
    """AND across the given filters, membership within a list (the SDK's semantics); None or an
    empty list filters nothing."""
    if ids:
        qs = qs.filter(pk__in=ids)
    if project_ids:
        qs = qs.filter(project_id__in=project_ids)
    if user_ids:
        qs = qs.filter(user_id__in=int64_ids([str(u) for u in user_ids]))
    if username:
        qs = qs.filter(user__username=username)
    if device_types:
        qs = qs.filter(device__name__in=device_types)
    if statuses:
        qs = qs.filter(status__in=statuses)
    if open is not None:
        qs = qs.filter(open=open)
    if priorities:
        qs = qs.filter(priority__in=priorities)
    if tag:
        qs = qs.filter(has_tag(tag))
    if has_errors is not None:
        # The batch row's own counter: no join over its jobs.
        qs = qs.filter(error_jobs__gt=0) if has_errors else qs.filter(error_jobs=0)
    if start:
        qs = qs.filter(created_at__gte=start)
    if end:
        qs = qs.filter(created_at__lte=end)
    return qs
