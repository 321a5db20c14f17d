"""API-family error pages for /v1: what Django itself would render as HTML.

Every /v1 path answers in JSON, in the route family's envelope (grok2api/api.py's `render_error`:
Anthropic for /v1/messages*, OpenAI for every other /v1 path). Ninja renders the errors of its
operations; what is left is answered by Django outside them:
- 400 (a Host header not in ALLOWED_HOSTS, other SuspiciousOperation), 404 (no route, or Ninja's
  `/v1/` home page) and 500: `api_error_page`, which urls.py installs as handler400/404/500;
- 405 from Ninja's path views (a bare `HttpResponseNotAllowed`): `ApiEnvelopeMiddleware`.
Other paths keep Django's own pages.
"""
from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.views import defaults

API_PREFIX = "/v1/"


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIX) or path == "/v1"


def api_error_page(status: int):
    """A Django error handler (handler400/404/500) that answers /v1 paths in the family's envelope."""
    from grokweb.errors import GatewayError, InternalError, InvalidRequest, NotFound

    django_view = {400: defaults.bad_request, 404: defaults.page_not_found, 500: defaults.server_error}[status]

    def handler(request, exception=None):
        if not is_api_path(request.path):
            return django_view(request) if status == 500 else django_view(request, exception)
        from grok2api.api import render_error

        if status == 404:
            exc: GatewayError = NotFound(f"Unknown path: {request.method} {request.path}")
        elif status == 400:
            # The Host check (ALLOWED_HOSTS) is the usual cause; Django's message names the header.
            exc = InvalidRequest(f"Bad request: {exception}" if exception else "Bad request", code="bad_request")
        else:
            exc = InternalError("Internal server error")
        response = render_error(request, exc)
        # Sized here: a 400 raised inside CommonMiddleware does not pass its process_response.
        response["Content-Length"] = str(len(response.content))
        return response

    return handler


def envelope_405(request, response):
    if response.status_code != 405 or response.get("Content-Type", "").startswith("application/json"):
        return response
    from grokweb.errors import GatewayError
    from grok2api.api import render_error

    allowed = response.get("Allow", "")
    exc = GatewayError(f"Method {request.method} is not allowed on {request.path}" + (f" (allowed: {allowed})" if allowed else ""),
                       status=405, type="invalid_request_error", code="method_not_allowed")
    out = render_error(request, exc)
    if allowed:
        out["Allow"] = allowed
    return out


class ApiEnvelopeMiddleware:
    """What /v1 needs of a middleware: the Host check, `nosniff`, a Content-Length on whole
    answers, and Ninja's bare 405 turned into a 405 in the family's envelope (Allow kept).

    Sync- and async-capable, like every middleware in settings.MIDDLEWARE, so Django runs the
    chain in the server's mode without a thread hop per request."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if is_api_path(request.path_info):
            # Django's CommonMiddleware, which asks for the host on other paths, does not run for
            # /v1 (grok2api/pagemiddleware.py): the ALLOWED_HOSTS check happens here. A bad Host
            # raises DisallowedHost, which Django answers with handler400 (JSON on /v1).
            request.get_host()
        if self.is_async:
            return self._acall(request)
        return self._wrap(request, self.get_response(request))

    async def _acall(self, request):
        return self._wrap(request, await self.get_response(request))

    @staticmethod
    def _wrap(request, response):
        if not is_api_path(request.path_info):
            return response
        if response.status_code == 405:
            response = envelope_405(request, response)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if not response.streaming and "Content-Length" not in response:
            response["Content-Length"] = str(len(response.content))
        return response
