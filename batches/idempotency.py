"""`Idempotency-Key`: a retried create/add returns the first response instead of a duplicate."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse

from batches.models import IdempotentRequest
from portal.errors import Conflict, InvalidInput


def idempotent(request: HttpRequest, view: Callable[[], Any]) -> Any:
    """Run `view()` once per (user, Idempotency-Key); replay its answer on a retry."""
    key = request.headers.get("Idempotency-Key")
    if not key:
        return view()
    if len(key) > 255:
        raise InvalidInput("'Idempotency-Key' must be at most 255 characters.", field="Idempotency-Key")
    fingerprint = hashlib.sha256(request.method.encode() + request.path.encode() + request.body).hexdigest()
    previous = IdempotentRequest.objects.filter(user=request.user, key=key).first()
    if previous is not None:
        if previous.fingerprint != fingerprint:
            raise Conflict("This Idempotency-Key was already used for a different request.")
        return JsonResponse(json.loads(previous.body), status=previous.status_code)
    body = view()
    try:
        with transaction.atomic():
            IdempotentRequest.objects.create(
                user=request.user, key=key, fingerprint=fingerprint, status_code=200, body=json.dumps(body, default=str)
            )
    except IntegrityError:
        pass  # a concurrent twin stored its answer first; ours is equally valid
    return body
