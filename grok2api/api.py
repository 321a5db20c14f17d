"""The one NinjaAPI serving /v1: routers, auth wiring, and the error renderers.

Errors are rendered once per API family: routes under /v1/messages speak Anthropic's envelope
`{"type":"error","error":{"type","message"}}`, every other /v1 route OpenAI's
`{"error":{"message","type","param","code"}}`. Ninja's default 400/401/422 bodies never reach a
client: a body the request schema refuses (gateway/schemas/) is a 400 in the family's envelope
naming the parameter, worded by the family's translator where it refuses too (docs/api.md,
"Request schemas").
"""
from __future__ import annotations

import logging

import orjson
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from django.core.exceptions import RequestDataTooBig

from grokweb.errors import AuthenticationFailed, GatewayError, InternalError, InvalidRequest, NotFound, RequestTooLarge
from gateway.api._common import BodyParser
from grok2api.apidocs import LocalSwagger

log = logging.getLogger(__name__)


def is_anthropic_path(path: str) -> bool:
    return path.startswith("/v1/messages")


def render_error(request: HttpRequest, exc: GatewayError) -> HttpResponse:
    body = exc.anthropic_body() if is_anthropic_path(request.path) else exc.openai_body()
    response = HttpResponse(orjson.dumps(body), status=exc.status, content_type="application/json")
    for name, value in exc.headers.items():
        response[name] = value
    return response


def _param_from_loc(loc: tuple | list) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form", "file", "header")]
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


def validation_to_gateway(errors: list[dict]) -> InvalidRequest:
    first = errors[0] if errors else {}
    if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body", "body"):
        # No body at all: the same words as gateway/jsonbody.py for an empty body.
        return InvalidRequest("The request body is empty; expected a JSON object.", param=None, code="invalid_json")
    param = _param_from_loc(first.get("loc", ()))
    msg = first.get("msg", "invalid request")
    text = f"Invalid value for '{param}': {msg}" if param else f"Invalid request: {msg}"
    return InvalidRequest(text, param=param)


api = NinjaAPI(
    title="grok2api",
    parser=BodyParser(),  # size cap and JSON caps before any schema sees a body (gateway/api/_common.py)
    version="1",
    urls_namespace="v1",
    docs_url="/docs",
    docs=LocalSwagger(),  # vendored swagger-ui, same-origin only (grok2api/apidocs.py)
)


@api.exception_handler(GatewayError)
def _gateway_error(request, exc: GatewayError):
    return render_error(request, exc)


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    return render_error(request, validation_to_gateway(exc.errors))


@api.exception_handler(AuthenticationError)
def _auth_error(request, exc):
    return render_error(request, AuthenticationFailed("Missing or invalid API key. Send 'Authorization: Bearer <key>' or 'x-api-key: <key>'."))


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    if isinstance(exc.__cause__, GatewayError):
        # Ninja wraps what the body parser raised ("Cannot parse request body"): the gateway's own
        # error (413 request_too_large, 400 invalid_json / json_too_deep) is the answer.
        return render_error(request, exc.__cause__)
    status = exc.status_code
    if status == 404:
        return render_error(request, NotFound(str(exc)))
    return render_error(request, GatewayError(str(exc), status=status, type="invalid_request_error" if status < 500 else "server_error"))


@api.exception_handler(RequestDataTooBig)
def _too_big(request, exc):
    from django.conf import settings

    limit_mb = settings.MAX_BODY_BYTES // (1024 * 1024)
    return render_error(request, RequestTooLarge(f"Request body exceeds the {limit_mb} MB limit (MAX_BODY_MB)."))


@api.exception_handler(Exception)
def _unexpected(request, exc: Exception):
    log.exception("unhandled error on %s", request.path)
    # The exception's type only: its text may carry request data or upstream details.
    return render_error(request, InternalError(f"Internal error: {type(exc).__name__}"))


def _register_routers() -> None:
    from gateway.api import anthropic, files, images, openai, responses, videos

    api.add_router("", openai.router)
    api.add_router("", responses.router)
    api.add_router("", anthropic.router)
    api.add_router("", images.router)
    api.add_router("", videos.router)
    api.add_router("", files.router)


_register_routers()
