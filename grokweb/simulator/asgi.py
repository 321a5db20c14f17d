"""Plain ASGI adapter (HTTP + WebSocket on one port) around :class:`~.core.Simulator`; no Django.

Run it with uvicorn (``python manage.py grok_simulator`` or :class:`~.server.SimServer`). Streaming
bodies are sent one chunk per upstream line; a client disconnect cancels the stream at once (recorded
in the request log as ``disconnected``); ``drop@n`` aborts the connection mid-body. WebSocket
handshakes are refused with a real HTTP status through the ``websocket.http.response`` extension.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from . import handlers, imagine
from .chat import Drop
from .core import SimRequest, SimResponse, Simulator, endpoint_of


class SimDropped(Exception):
    """Raised out of the ASGI app so the server aborts the connection (simulated network drop)."""


def _headers(scope: dict) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]


def _raw_path(scope: dict) -> str:
    qs = scope.get("query_string", b"").decode("latin-1")
    return scope["path"] + ("?" + qs if qs else "")


def create_app(sim: Simulator) -> Callable[..., Any]:
    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        kind = scope["type"]
        if kind == "http":
            await _http(sim, scope, receive, send)
        elif kind == "websocket":
            await _websocket(sim, scope, receive, send)
        elif kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    app.sim = sim  # type: ignore[attr-defined]
    return app


async def _http(sim: Simulator, scope: dict, receive: Callable, send: Callable) -> None:
    body = bytearray()
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    req = SimRequest.build(scope["method"], _raw_path(scope), _headers(scope), bytes(body))
    resp = await handlers.handle(sim, req)
    try:
        await _send_response(resp, req.method, receive, send)
    finally:
        resp.close()


async def _send_response(resp: SimResponse, method: str, receive: Callable, send: Callable) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
    if isinstance(resp.body, (bytes, bytearray)):
        if not any(k == b"content-length" for k, _ in headers):
            headers.append((b"content-length", str(len(resp.body)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else bytes(resp.body)})
        return
    iterator = resp.body
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})

    async def pump() -> None:
        async for chunk in iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def watch() -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return

    pump_task = asyncio.ensure_future(pump())
    watch_task = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({pump_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        if pump_task in done:
            watch_task.cancel()
            exc = pump_task.exception()
            if isinstance(exc, Drop):
                raise SimDropped("simulated connection drop")
            if exc is not None:
                raise exc
        else:
            pump_task.cancel()
            await asyncio.gather(pump_task, return_exceptions=True)
    finally:
        for task in (pump_task, watch_task):
            if not task.done():
                task.cancel()
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except BaseException:  # noqa: BLE001 - closing a generator that already failed
                pass


class _ASGISocket:
    def __init__(self, receive: Callable, send: Callable) -> None:
        self._receive, self._send = receive, send
        self.closed = False

    async def receive(self) -> str | None:
        while True:
            msg = await self._receive()
            if msg["type"] == "websocket.disconnect":
                self.closed = True
                return None
            if msg["type"] == "websocket.receive":
                if msg.get("text") is not None:
                    return msg["text"]
                if msg.get("bytes") is not None:
                    return msg["bytes"].decode("utf-8", "replace")

    async def send(self, text: str) -> None:
        if not self.closed:
            await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int = 1000) -> None:
        if not self.closed:
            self.closed = True
            await self._send({"type": "websocket.close", "code": code})


async def _refuse(scope: dict, send: Callable, resp: SimResponse) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
        body = resp.body if isinstance(resp.body, bytes) else b""
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "websocket.http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


async def _websocket(sim: Simulator, scope: dict, receive: Callable, send: Callable) -> None:
    msg = await receive()
    if msg["type"] != "websocket.connect":
        return
    req = SimRequest.build("GET", _raw_path(scope), _headers(scope))
    path = req.path
    entry = sim._log(req, endpoint=endpoint_of("GET", path) or ("rtc" if path == "/rtc" else None), token=None, body=None)
    if path == "/ws/imagine/listen":
        gated = imagine.handshake(sim, req)
        if isinstance(gated, SimResponse):
            entry["status"] = gated.status
            await _refuse(scope, send, gated)
            return
        token, sc = gated
        entry["token"] = token
        entry["status"] = 101
        await send({"type": "websocket.accept"})
        ws = _ASGISocket(receive, send)
        try:
            await imagine.imagine_session(sim, ws, token, sc, entry)
        except imagine.Abort:
            entry["dropped"] = True
            raise SimDropped("simulated websocket drop") from None
        entry["completed"] = True
        await ws.close(1000)
        return
    if path == "/rtc":
        gated = imagine.rtc_handshake(sim, req)
        if isinstance(gated, SimResponse):
            entry["status"] = gated.status
            await _refuse(scope, send, gated)
            return
        entry["status"] = 101
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        entry["completed"] = True
        return
    entry["status"] = 404
    await _refuse(scope, send, SimResponse.json(404, {"error": {"code": 5, "message": "Not found", "details": []}}))
