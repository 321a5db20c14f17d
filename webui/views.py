"""The web pages and their same-origin JSON API.

Pages (HTML): /webui/login (GET form, POST key), /webui/logout (POST), /webui/chat, /webui/masonry,
/webui/chatkit; /webui/ redirects to the chat page.

API (session-authenticated, CSRF-protected, OpenAI error envelope `{"error":{message,type,param,code}}`):
- GET  /webui/api/models            → /v1/models body (same service)
- POST /webui/api/chat/completions  → /v1/chat/completions (same service; SSE when stream=true)
- POST /webui/api/voice/token       `{"voice","personality","speed","instruction"}` →
                                      `{"token","url","participant_name","room_name"}` (docs/upstream-protocol.md §10)
Without access the API answers 401 `webui_session_required` (the page says "sign in again");
with the pages disabled every route answers 404.
"""
from __future__ import annotations

import functools
from urllib.parse import urlencode

import orjson
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from grokweb.errors import AuthenticationFailed, GatewayError, NotFound
from gateway.jsonbody import json_body_parse
from webui import services
from axes.helpers import get_lockout_response

from webui.access import (
    MODE_API_KEY, access_granted, access_locked, access_mode, access_sign_in, access_sign_out, key_required,
    webui_enabled,
)


def _disabled(request: HttpRequest) -> HttpResponse:
    return render(request, "webui/disabled.html", status=404)


def _json_error(exc: GatewayError) -> HttpResponse:
    response = HttpResponse(orjson.dumps(exc.openai_body()), status=exc.status, content_type="application/json")
    for name, value in exc.headers.items():
        response[name] = value
    return response


def _render_result(result) -> HttpResponse:
    if isinstance(result, HttpResponse) or hasattr(result, "streaming_content"):
        return result
    return HttpResponse(orjson.dumps(result), content_type="application/json")


def _granted(request: HttpRequest) -> bool:
    return access_granted(session=request.session, user=getattr(request, "user", None))


def page(view):
    """Sync page view: 404 when disabled, redirect to the login page without access."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not webui_enabled():
            return _disabled(request)
        if not _granted(request):
            return HttpResponseRedirect(f"{reverse('webui:login')}?{urlencode({'next': request.get_full_path()})}")
        return view(request, *args, **kwargs)

    return wrapper


_SESSION_REQUIRED = AuthenticationFailed(
    "Your WebUI session has expired or you are not signed in. Sign in again at /webui/login.",
    code="webui_session_required",
)


def api(view):
    """Async API view: 404 JSON when disabled, 401 JSON without access, GatewayError → envelope."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args, **kwargs):
        if not webui_enabled():
            return _json_error(NotFound("The web pages are disabled (app.webui_enabled is false)."))
        if not await sync_to_async(_granted)(request):
            return _json_error(_SESSION_REQUIRED)
        try:
            return _render_result(await view(request, *args, **kwargs))
        except GatewayError as exc:
            return _json_error(exc)

    return wrapper


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target.startswith("/webui/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("webui:chat")


@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    if not webui_enabled():
        return _disabled(request)
    nxt = _safe_next(request)
    if not key_required() or (request.method == "GET" and _granted(request)):
        return HttpResponseRedirect(nxt)
    api_key = access_mode() == MODE_API_KEY
    context = {"next": nxt, "error": "", "expired": request.GET.get("expired") == "1", "api_key": api_key}
    if request.method == "POST":
        presented = request.POST.get("key", "")
        if not presented.strip():
            context["error"] = "Enter the API key." if api_key else "Enter the WebUI key."
            return render(request, "webui/login.html", context, status=400)
        # Checked before the key, so a locked-out client learns nothing, not even from the right key.
        if access_locked(request=request):
            return get_lockout_response(request)
        if access_sign_in(request=request, presented=presented):
            return HttpResponseRedirect(nxt)
        if getattr(request, "axes_locked_out", False):  # this failure reached the limit
            return get_lockout_response(request)
        context["error"] = ("That API key is not correct. Use a key that /v1 accepts for every model "
                            "(app.api_key, or an API key row without a model list)."
                            if api_key else "That key is not correct. Check app.webui_key with your operator.")
        return render(request, "webui/login.html", context, status=403)
    return render(request, "webui/login.html", context)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    access_sign_out(request=request)
    return HttpResponseRedirect(reverse("webui:login"))


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect(reverse("webui:chat"))


def _page_context(active: str) -> dict:
    return {"active": active, "key_required": key_required(), "max_chars": services.MAX_MESSAGE_CHARS}


@require_GET
@page
def chat(request: HttpRequest) -> HttpResponse:
    return render(request, "webui/chat.html", _page_context("chat"))


@require_GET
@page
def masonry(request: HttpRequest) -> HttpResponse:
    ctx = _page_context("masonry")
    ctx.update(aspects=services.WALL_ASPECTS, max_count=services.WALL_MAX_COUNT, max_rounds=services.WALL_MAX_ROUNDS, max_prompt=services.WALL_MAX_PROMPT)
    return render(request, "webui/masonry.html", ctx)


@require_GET
@page
def chatkit(request: HttpRequest) -> HttpResponse:
    ctx = _page_context("chatkit")
    ctx.update(voices=services.VOICES)
    return render(request, "webui/chatkit.html", ctx)


# ------------------------------------------------------------------ API


@require_GET
@api
async def api_models(request: HttpRequest):
    return services.webui_models()


@require_POST
@api
async def api_chat(request: HttpRequest):
    from gateway.api._common import read_body

    return await services.webui_chat(raw=read_body(request))


@require_POST
@api
async def api_voice_token(request: HttpRequest):
    body = json_body_parse(request.body, require_object=False, empty={})
    params = services.voice_params_parse(body)
    return await services.voice_token_issue(**params)
