"""FastPathMiddleware: /v1/* and /healthz skip the rest of the middleware stack.

The API authenticates with keys (no sessions, no CSRF, no messages) and measured costs say every
middleware on the hot path costs throughput (architecture §4). So for these prefixes this
middleware resolves the view and calls it directly; every other path runs the full stack.
Because the URL resolver's 404 and Ninja's bare 405 would otherwise escape as HTML/plain text,
they are rendered here in the route family's error envelope (OpenAI, or Anthropic for
/v1/messages).
"""
from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.urls import Resolver404, resolve
from django.utils.decorators import async_only_middleware

FAST_PREFIXES = ("/v1/", "/healthz")


def not_found(request):
    from gateway.errors import NotFound
    from grok2api.api import render_error

    return render_error(request, NotFound(f"Unknown path: {request.method} {request.path}"))


def envelope_405(request, response):
    if response.status_code != 405 or response.get("Content-Type", "").startswith("application/json"):
        return response
    from gateway.errors import GatewayError
    from grok2api.api import render_error

    allowed = response.get("Allow", "")
    exc = GatewayError(f"Method {request.method} is not allowed on {request.path}" + (f" (allowed: {allowed})" if allowed else ""),
                       status=405, type="invalid_request_error", code="method_not_allowed")
    out = render_error(request, exc)
    if allowed:
        out["Allow"] = allowed
    return out


@async_only_middleware
def FastPathMiddleware(get_response):
    # Async-only on purpose (measured, docs/benchmarks.md): WhiteNoise below is sync-only, so a
    # sync-capable middleware here would make Django run the whole chain in sync mode and hop to a
    # thread (plus back to the loop for the async view) on every /v1 request. Async-only, Django
    # adapts the rest of the chain once (below this middleware) and /v1 never touches it.

    async def middleware(request):
        if request.path_info.startswith(FAST_PREFIXES):
            try:
                match = resolve(request.path_info)
            except Resolver404:
                return not_found(request)
            request.resolver_match = match
            view = match.func
            if asyncio.iscoroutinefunction(view):
                response = await view(request, *match.args, **match.kwargs)
            else:
                response = await sync_to_async(view, thread_sensitive=True)(request, *match.args, **match.kwargs)
            return envelope_405(request, response)
        return await get_response(request)

    return middleware
