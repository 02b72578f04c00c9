"""`Idempotency-Key`: a retried create/add returns the first response instead of a duplicate."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from ninja import Schema

from batches.models import IdempotentRequest
from portal.access import request_user
from portal.api import committed, json_response, render_committed
from portal.errors import Conflict, InvalidInput


def idempotent(
    request: HttpRequest, schema: type[Schema], view: Callable[[], dict[str, Any]], *, rendered: bool = False
) -> Any:
    """Run `view()` once per (user, Idempotency-Key); replay its answer on a retry.

    The work, its rendered response and the stored copy commit together (see `committed`);
    a refused request (4xx) stores nothing, so the client may fix it and retry with the key.
    """
    key = request.headers.get("Idempotency-Key")
    if not key:
        return committed(schema, view, rendered=rendered)
    if len(key) > 255:
        raise InvalidInput("'Idempotency-Key' must be at most 255 characters.", field="Idempotency-Key")
    fingerprint = hashlib.sha256((request.method or "").encode() + request.path.encode() + request.body).hexdigest()
    replay = _replay(request, key, fingerprint)
    if replay is not None:
        return replay
    try:
        with transaction.atomic():
            body = render_committed(schema, view, rendered=rendered)
            response = json_response(body)  # encoded before the commit: nothing fails after it
            IdempotentRequest.objects.create(
                user=request_user(request), key=key, fingerprint=fingerprint, status_code=200, body=json.dumps(body)
            )
    except IntegrityError:
        # A concurrent twin with the same key committed first: our work rolled back; answer as it did.
        replay = _replay(request, key, fingerprint)
        if replay is None:
            raise
        return replay
    return response


def _replay(request: HttpRequest, key: str, fingerprint: str) -> JsonResponse | None:
    previous = IdempotentRequest.objects.filter(user=request_user(request), key=key).first()
    if previous is None:
        return None
    if previous.fingerprint != fingerprint:
        raise Conflict("This Idempotency-Key was already used for a different request.", field="Idempotency-Key")
    return JsonResponse(json.loads(previous.body), status=previous.status_code)
