"""Helpers shared by the /v1 routers: bounded body reading and rendering a service result.

A body larger than MAX_BODY_BYTES is refused with 413 before it is parsed (Content-Length first,
then Django's own DATA_UPLOAD_MAX_MEMORY_SIZE guard for chunked bodies). Service results are either
a dict (rendered as JSON with orjson) or an HttpResponse (a StreamingHttpResponse for SSE).
"""
from __future__ import annotations

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from grokweb.errors import RequestTooLarge


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.", param=None)


def read_body(request: HttpRequest) -> bytes:
    limit = int(getattr(settings, "MAX_BODY_BYTES", 0) or 0)
    if limit:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise _too_large(limit)
    try:
        body = request.body
    except RequestDataTooBig:
        raise _too_large(limit) from None
    if limit and len(body) > limit:
        raise _too_large(limit)
    return body


def render(result) -> HttpResponseBase:
    if isinstance(result, HttpResponseBase):
        return result
    return HttpResponse(orjson.dumps(result), content_type="application/json")
