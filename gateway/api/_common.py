"""Helpers shared by the /v1 routers: the body parser, the auth schemes, rendering a service result.

A body larger than MAX_BODY_BYTES is refused with 413 before it is parsed (Content-Length first,
then Django's own DATA_UPLOAD_MAX_MEMORY_SIZE guard for chunked bodies). Service results are either
a dict (rendered as JSON with orjson) or an HttpResponse (a StreamingHttpResponse for SSE).
"""
from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from ninja.parser import Parser
from ninja.security.base import AuthBase

from gateway.auth import api_auth
from grokweb.errors import RequestTooLarge
from gateway.jsonbody import json_body_parse


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


FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class BodyParser(Parser):
    """How Ninja reads a /v1 body before a schema validates it: the size cap, then the JSON caps of
    gateway/jsonbody.py (nesting depth), or the text fields of a form body
    (multipart/form-data or urlencoded, as /v1/videos takes them).

    Ninja turns any exception raised here into its own 400 with the gateway's error as the cause;
    grok2api/api.py renders that cause (so the client sees e.g. 413 `request_too_large` or 400
    `invalid_json` with the gateway's wording). A body that is valid JSON but not an object is handed
    on as it is: the schema refuses it and the family's translator words the refusal.
    """

    def parse_body(self, request: HttpRequest) -> Any:
        raw = read_body(request)
        if request.content_type in FORM_TYPES:
            from media.forms import multipart_fields

            return multipart_fields(request)
        return json_body_parse(raw, require_object=False)


class BearerKey(AuthBase):
    """`Authorization: Bearer <key>` (gateway/auth.py; the same check accepts `x-api-key`)."""

    openapi_type = "http"
    openapi_scheme = "bearer"

    async def __call__(self, request: HttpRequest):
        return await api_auth(request)


class HeaderKey(AuthBase):
    """`x-api-key: <key>`, as Anthropic's SDKs send it (gateway/auth.py)."""

    openapi_type = "apiKey"
    openapi_in = "header"
    openapi_name = "x-api-key"

    async def __call__(self, request: HttpRequest):
        # Reached only when BearerKey found no valid key: api_auth reads both headers, so this
        # second call answers the same (None → 401) and exists to document the x-api-key scheme.
        return await api_auth(request)


# Every /v1 operation: either scheme (OpenAPI alternatives), one check (gateway.auth.api_auth).
API_KEY = [BearerKey(), HeaderKey()]

SSE = {"text/event-stream": {"schema": {"type": "string", "description": "server-sent events (stream: true)"}}}


def streams(ok_status: int = 200) -> dict:
    """`openapi_extra` for an operation that answers SSE when the body asks `stream: true`."""
    return {"responses": {ok_status: {"content": SSE}}}


def render(result) -> HttpResponseBase:
    if isinstance(result, HttpResponseBase):
        return result
    return HttpResponse(orjson.dumps(result), content_type="application/json")
