"""Django's page middlewares, run for every path except /v1.

Why: sessions, CSRF, the signed-in user, messages, framing headers and the Content-Security-Policy
serve the admin and the web pages. `/v1` uses none of them: it authenticates by
API key from an in-memory snapshot and answers JSON. Django's own middlewares implement their async
mode by running `process_request` and `process_response` through `sync_to_async`, so on `/v1`
each of them cost two thread hops per request for nothing (measured in docs/benchmarks.md, "One
pipeline instead of the fast lane"). Each class below wraps one of them: the same Django handler,
the same order, the same middleware for the pages; `/v1` requests pass straight through. What `/v1`
still needs from them — the Host check and `nosniff` — `grok2api.middleware.ApiEnvelopeMiddleware`
does on the event loop.
"""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware

from grok2api.csp import PolicyMiddleware
from grok2api.middleware import is_api_path


class PagesOnly:
    """Mixed in before a middleware class: `/v1` requests skip it (in async mode both branches
    return the coroutine Django awaits)."""

    def __call__(self, request):
        if is_api_path(request.path_info):
            return self.get_response(request)
        return super().__call__(request)


class Security(PagesOnly, SecurityMiddleware):
    pass


class Sessions(PagesOnly, SessionMiddleware):
    pass


class Common(PagesOnly, CommonMiddleware):
    pass


class Csrf(PagesOnly, CsrfViewMiddleware):
    """Also `process_view`, which Django calls outside `__call__`: as a sync method Django would run
    it through `sync_to_async` for every request, `/v1` included (one more thread hop); as a
    coroutine it returns at once on `/v1` and hops only for the pages."""

    async def process_view(self, request, callback, callback_args, callback_kwargs):
        if is_api_path(request.path_info):
            return None
        check = super().process_view
        return await sync_to_async(check, thread_sensitive=True)(request, callback, callback_args, callback_kwargs)


class Authentication(PagesOnly, AuthenticationMiddleware):
    pass


class Messages(PagesOnly, MessageMiddleware):
    pass


class FrameOptions(PagesOnly, XFrameOptionsMiddleware):
    pass


class ContentSecurityPolicy(PagesOnly, PolicyMiddleware):
    pass
