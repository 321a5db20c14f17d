"""The request body cap (MAX_BODY_MB), as an ASGI wrapper around Django's handler.

Django's ASGIHandler reads a whole body (into a SpooledTemporaryFile) before any view or
middleware runs, and DATA_UPLOAD_MAX_MEMORY_SIZE is only checked when a view reads `request.body`,
so the cap has to sit in front of it: a declared Content-Length over the cap, or a chunked body
that grows past it, is answered 413 `request_too_large` in the route family's envelope (OpenAI,
or Anthropic for /v1/messages) without reading the rest, and the connection is closed.
"""
from __future__ import annotations

import orjson

from grokweb.errors import RequestTooLarge
from grok2api.api import is_anthropic_path


def _too_large_body(path: str, limit: int) -> bytes:
    exc = RequestTooLarge(f"Request body exceeds the {limit // (1024 * 1024)} MB limit (MAX_BODY_MB).")
    return orjson.dumps(exc.anthropic_body() if is_anthropic_path(path) else exc.openai_body())


async def reject_413(scope, send, limit: int) -> None:
    body = _too_large_body(scope.get("path", ""), limit)
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


def body_limit(app, *, limit: int):
    """`app` (ASGI) with HTTP request bodies capped at `limit` bytes."""

    async def capped_app(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    return await reject_413(scope, send, limit)
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked:
            # A declared length within the cap: the server delivers no more than that.
            return await app(scope, receive, send)
        seen = 0
        rejected = False

        async def counting_receive():
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request" and not rejected:
                seen += len(message.get("body", b""))
                if seen > limit:
                    rejected = True
                    await reject_413(scope, send, limit)
                    # Django stops reading and sends nothing once the client is "gone".
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not rejected:
                await send(message)

        return await app(scope, counting_receive, guarded_send)

    return capped_app
