"""FastPathMiddleware: /v1/* and /healthz skip the rest of the middleware stack.

The API authenticates with keys (no sessions, no CSRF, no messages) and measured costs say every
middleware on the hot path costs throughput (architecture §4). So for these prefixes this
middleware resolves the view and calls it directly; every other path runs the full stack.
"""
from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.urls import resolve
from django.utils.decorators import sync_and_async_middleware

FAST_PREFIXES = ("/v1/", "/healthz")


@sync_and_async_middleware
def FastPathMiddleware(get_response):
    if asyncio.iscoroutinefunction(get_response):

        async def middleware(request):
            if request.path_info.startswith(FAST_PREFIXES):
                match = resolve(request.path_info)
                request.resolver_match = match
                view = match.func
                if asyncio.iscoroutinefunction(view):
                    return await view(request, *match.args, **match.kwargs)
                return await sync_to_async(view, thread_sensitive=True)(request, *match.args, **match.kwargs)
            return await get_response(request)

    else:

        def middleware(request):
            if request.path_info.startswith(FAST_PREFIXES):
                match = resolve(request.path_info)
                request.resolver_match = match
                response = match.func(request, *match.args, **match.kwargs)
                if asyncio.iscoroutine(response):
                    from asgiref.sync import async_to_sync

                    async def _await(coro=response):
                        return await coro

                    response = async_to_sync(_await)()
                return response
            return get_response(request)

    return middleware
