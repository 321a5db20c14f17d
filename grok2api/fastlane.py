"""The /v1 data-plane lane: ASGI HTTP straight to the Ninja operation, without Django's handler.

Wire format: ASGI 3 HTTP (`http.request` messages in, `http.response.start` + `http.response.body`
out). The lane serves the routes every client calls per completion — POST /v1/chat/completions,
/v1/responses, /v1/messages, /v1/messages/count_tokens, GET /v1/models[/{id}] and GET /healthz —
and leaves every other path to Django's ASGIHandler (grok2api/asgi.py decides).

Why (measured, docs/benchmarks.md "what each change bought"): per request Django's ASGIHandler
spools the body into a SpooledTemporaryFile, sends `request_started` and `request_finished`
through two thread hops (their receivers manage DB connections and query logs), runs a
disconnect-listener task beside a request task, walks the middleware chain and re-chunks the
body. None of it serves these routes: they authenticate from the in-memory key snapshot, run no
ORM query (usage and pool effects are written by background flushers) and set no cookies. The
lane keeps what matters:
- the same Ninja operation parses, authenticates and renders (the view is resolved through
  Django's URL resolver once per path and cached), so errors keep each family's envelope;
- a request body is read whole and capped at MAX_BODY_BYTES before the view sees it (413 in the
  family's envelope, the rest unread);
- a client that goes away cancels the view and, for streams, closes the SSE generator (and with it
  the upstream request) at once: a listener task waits for `http.disconnect`;
- keep-alive frames during a stream's gaps come from one timer per stream (`_KeepAlive`) instead
  of a task per frame inside the generator (gateway/sse.py);
- an exception that escapes the view is logged and answered with a 500 in the family's envelope
  when nothing was sent yet.
A non-streamed body goes out in one message with its Content-Length (no chunked encoding); a
stream's parts go out as they are produced, one message each, never merged.
"""
from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.urls import Resolver404, resolve

from gateway.errors import InternalError, RequestTooLarge
from gateway.requestid import REQUEST_ID_HEADER, request_trace_finish, request_trace_start
from gateway.sse import server_keepalive
from grok2api.api import render_error
from grok2api.middleware import envelope_405, not_found

log = logging.getLogger(__name__)

_LANE_PATHS = frozenset({
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/models",
    "/healthz",
})
_LANE_PREFIX = "/v1/models/"

_views: dict[str, Any] = {}  # path -> ResolverMatch (or None when the path does not resolve)
_VIEWS_MAX = 1024  # /v1/models/{id} paths are client-chosen: bound the cache


def lane_serves(path: str) -> bool:
    return path in _LANE_PATHS or path.startswith(_LANE_PREFIX)


def _match(path: str):
    try:
        return _views[path]
    except KeyError:
        pass
    try:
        match = resolve(path)
    except Resolver404:
        match = None
    if len(_views) >= _VIEWS_MAX:
        _views.clear()
    _views[path] = match
    return match


def _too_large_body(path: str) -> bytes:
    exc = RequestTooLarge(f"Request body exceeds the {settings.MAX_BODY_BYTES // (1024 * 1024)} MB limit (MAX_BODY_MB).")
    body = exc.anthropic_body() if path.startswith("/v1/messages") else exc.openai_body()
    return orjson.dumps(body)


async def reject_413(scope, send) -> None:
    """413 `request_too_large` in the family's envelope; the connection closes (the rest is unread)."""
    body = _too_large_body(scope.get("path", ""))
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


class _ClientGone(Exception):
    pass


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None when it grows past `limit` (the caller answers 413)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise _ClientGone
        if kind != "http.request":
            continue
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
        if not message.get("more_body", False):
            break
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


def _headers(response) -> list[tuple[bytes, bytes]]:
    out = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    for cookie in response.cookies.values():
        out.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    return out


async def _send_response(response, send) -> None:
    headers = _headers(response)
    if not response.streaming:
        body = response.content
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    # An async SSE generator from gateway.services (bytes per frame) is sent as is; anything
    # else goes through Django's own iteration (which also maps sync iterators and str parts).
    content = response._iterator if response.is_async else aiter(response)  # noqa: SLF001
    keepalive = _KeepAlive(send, *response.sse_keepalive) if hasattr(response, "sse_keepalive") else None
    try:
        async for part in content:
            if not part:
                continue
            message = {"type": "http.response.body", "body": part if isinstance(part, bytes) else bytes(part),
                       "more_body": True}
            if keepalive is None:
                await send(message)
            else:
                await keepalive.send(message)
    finally:
        if keepalive is not None:
            keepalive.stop()
        aclose = getattr(content, "aclose", None)
        if aclose is not None:
            await aclose()
    if keepalive is not None:
        await keepalive.settle()
    await send({"type": "http.response.body", "body": b""})


class _KeepAlive:
    """Sends `frame` whenever `interval` seconds pass without a part of the stream being sent.

    One timer per stream, re-armed only when it fires, instead of a task per part: parts just
    record when they were sent. A keep-alive frame is a whole SSE comment/event sent between two
    parts, never inside one, and a part waits for a keep-alive still being written.
    """

    __slots__ = ("_send", "_interval", "_frame", "_loop", "_last", "_sending", "_task", "_timer")

    def __init__(self, send, interval: float, frame: bytes) -> None:
        self._send = send
        self._interval = interval
        self._frame = frame
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._sending = False
        self._task: asyncio.Task | None = None
        self._timer = self._loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        idle = now - self._last
        if idle >= self._interval * 0.99 and not self._sending and (self._task is None or self._task.done()):
            self._task = self._loop.create_task(self._send({"type": "http.response.body", "body": self._frame, "more_body": True}))
            self._task.add_done_callback(_consume)
            self._last, idle = now, 0.0
        self._timer = self._loop.call_later(max(self._interval - idle, 0.01), self._tick)

    async def send(self, message) -> None:
        if self._task is not None and not self._task.done():
            await self._task
        self._sending = True
        try:
            await self._send(message)
        finally:
            self._sending = False
            self._last = self._loop.time()

    def stop(self) -> None:
        self._timer.cancel()

    async def settle(self) -> None:
        if self._task is not None and not self._task.done():
            await self._task


def _consume(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()  # a failed keep-alive (client gone) is seen by the next send, not logged here


async def _listen_for_disconnect(receive, task: asyncio.Task) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            task.cancel()
            return


async def lane_handle(scope, receive, send, *, body_limit: int) -> None:
    """Serve one lane request (see the module docstring)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > body_limit:
                await reject_413(scope, send)
                return
            break
    try:
        body = await _read_body(receive, body_limit)
    except _ClientGone:
        return
    if body is None:
        await reject_413(scope, send)
        return
    request = ASGIRequest(scope, io.BytesIO(body))
    trace = request_trace_start(request.headers.get(REQUEST_ID_HEADER))  # what RequestIdMiddleware does
    match = _match(request.path_info)
    if match is None:
        await _send_response(await request_trace_finish(trace, request=request, response=not_found(request)), send)
        return
    request.resolver_match = match
    server_keepalive.set(True)  # this loop sends the streams' keep-alives (_KeepAlive)
    # From here a disconnect cancels this task: the view while it runs (an upstream call in
    # flight is closed), or the stream while it is being sent (the SSE generator is closed).
    listener = asyncio.create_task(_listen_for_disconnect(receive, asyncio.current_task()))
    started = False

    async def tracked_send(message):
        nonlocal started
        started = True
        await send(message)

    try:
        view = match.func
        if not asyncio.iscoroutinefunction(view):
            view = sync_to_async(view, thread_sensitive=False)
        try:
            response = await view(request, *match.args, **match.kwargs)
        except Exception as exc:  # Ninja renders its own errors; this is a bug escaping the view
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = render_error(request, InternalError(f"Internal error: {type(exc).__name__}"))
        response = await request_trace_finish(trace, request=request, response=envelope_405(request, response))
        await _send_response(response, tracked_send)
    except asyncio.CancelledError:
        if listener.done():
            return  # the client went away: nothing more to send
        raise
    except Exception:
        log.exception("error while sending %s %s", request.method, request.path)
        if not started:
            await _send_response(render_error(request, InternalError("Internal error while sending the response")), send)
    finally:
        listener.cancel()
