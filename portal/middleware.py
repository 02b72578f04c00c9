"""Request and response plumbing: gzip'd request bodies (the SDK sends them), a CSP, static files.

Every middleware here works in both modes: under ASGI, one sync-only middleware would make
Django run everything below it, the held requests' async views included, in a thread each
(issue 19).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from whitenoise.middleware import WhiteNoiseMiddleware

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


def _fail(status: int, message: str) -> JsonResponse:
    return JsonResponse(
        {"status": "fail", "code": status, "message": message, "data": {"description": message}}, status=status
    )


class BothModes:
    """A middleware that Django may call from sync or async code, as the chain below it is."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return self.before(request) or self.after(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        early = await self.abefore(request)
        if early is not None:
            return early
        response: Awaitable[HttpResponse] = self.get_response(request)
        return self.after(request, await response)

    def before(self, request: HttpRequest) -> HttpResponse | None:
        """An answer that skips the rest of the chain, or None."""
        return None

    async def abefore(self, request: HttpRequest) -> HttpResponse | None:
        """`before` in an async chain; one that reads the database runs it in a thread."""
        return self.before(request)

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        return response


class GzipRequestMiddleware(BothModes):
    """Decompress `Content-Encoding: gzip` bodies with a cap on the inflated size (zip bombs)."""

    def before(self, request: HttpRequest) -> HttpResponse | None:
        # Under ASGI the body is already in memory (or a spooled file): reading it does not block.
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
        return None


class ContentSecurityPolicyMiddleware(BothModes):
    """Scripts and styles from our own origin only: htmx is vendored, no inline handlers."""

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if request.path.startswith("/api/docs"):
            return response  # the OpenAPI explorer page ships its own inline bootstrap
        response.headers.setdefault("Content-Security-Policy", CSP)
        return response


class StaticFilesMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]
    """WhiteNoise, which is sync only, made usable in async chains: the file lookup is a dict
    lookup (or, with finders in DEBUG, a file-system search, then run in a thread)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)  # type: ignore[no-any-return]
        response: HttpResponse = await self.get_response(request)
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
