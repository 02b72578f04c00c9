"""Request and response plumbing: gzip'd request bodies (the SDK sends them) and a CSP."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


def _fail(status: int, message: str) -> JsonResponse:
    return JsonResponse(
        {"status": "fail", "code": status, "message": message, "data": {"description": message}}, status=status
    )


class GzipRequestMiddleware:
    """Decompress `Content-Encoding: gzip` bodies with a cap on the inflated size (zip bombs)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        encoding = request.headers.get("Content-Encoding", "").lower()
        if encoding in ("gzip", "x-gzip"):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            length = int(request.headers.get("Content-Length") or 0)
            if length > limit:
                return _fail(413, f"Request body too large: the limit is {limit} bytes.")
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                body = inflater.decompress(request.read(limit + 1), limit + 1)
            except zlib.error:
                return _fail(400, "The request body is not valid gzip data.")
            if len(body) > limit or inflater.unconsumed_tail:
                return _fail(413, f"Request body too large once decompressed: the limit is {limit} bytes.")
            request._body = body  # type: ignore[attr-defined]
            request.META["CONTENT_LENGTH"] = str(len(body))
            del request.META["HTTP_CONTENT_ENCODING"]
        return self.get_response(request)


class ContentSecurityPolicyMiddleware:
    """Scripts and styles from our own origin only: htmx is vendored, no inline handlers."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith("/api/docs"):
            return response  # the OpenAPI explorer page ships its own inline bootstrap
        response.headers.setdefault("Content-Security-Policy", CSP)
        return response


def json_depth_ok(text: str | bytes, limit: int) -> bool:
    """True when no JSON nesting in `text` goes deeper than `limit` (checked before parsing).

    Strings are cut out first (brackets inside them do not nest), then the brackets left are
    counted: two regex passes instead of a Python loop over every character of a large body.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return False
        else:
            depth -= 1
    return True


# A JSON string (escapes included), and the nesting characters.
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
