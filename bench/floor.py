"""The libraries' floor: the least a gateway on the design card's stack can add, on this machine.

A one-endpoint proxy on exactly the stack `serve` runs — uvicorn (uvloop, h11, one worker), Django's
ASGI handler, django-ninja parsing the body into a schema, httpx2 calling the upstream — and nothing
of ours: no key check, no pool, no translation, no middleware. `POST /v1/chat/completions` parses
the body, sends it to the simulator's OpenAI-shaped face and passes the answer back (whole, or
streamed chunk by chunk). Lanes 1–3 measure it beside the gateway (`floor`, against
`direct-openai`), so every `make bench` says how much of the gateway's added latency is the
libraries' and how much is ours. Django's handler is used as it ships, with the per-request reference
cycle that grok2api/asgi.py removes: the floor is the libraries as they come.

    FLOOR_UPSTREAM=http://127.0.0.1:PORT/openai/v1 uvicorn bench.floor:app --loop uvloop --http h11

`bench.floor:bare_app` is the same proxy without Django and Ninja (a plain ASGI callable on uvicorn
and httpx2), to tell the two layers' shares apart.
"""
from __future__ import annotations

import json
import os

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-floor-not-a-secret",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()

import httpx2  # noqa: E402
from django.http import HttpResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from ninja import NinjaAPI, Schema  # noqa: E402

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:8000/openai/v1").rstrip("/")
UPSTREAM_KEY = os.environ.get("FLOOR_UPSTREAM_KEY", "sk-upstream-bench")

client = httpx2.AsyncClient(timeout=60.0)
api = NinjaAPI(docs_url=None, openapi_url=None)


class Message(Schema):
    role: str
    content: str


class ChatBody(Schema):
    model: str
    messages: list[Message]
    stream: bool = False


@api.post("/chat/completions")
async def chat(request, body: ChatBody):
    resp = await client.send(_upstream_request(body.model_dump()), stream=True)
    if not body.stream:
        try:
            content = await resp.aread()
        finally:
            await resp.aclose()
        return HttpResponse(content, status=resp.status_code, content_type="application/json")

    async def relay():
        try:
            async for chunk in resp.aiter_raw():
                yield chunk
        finally:
            await resp.aclose()

    return StreamingHttpResponse(relay(), status=resp.status_code, content_type="text/event-stream")


def _upstream_request(body: dict) -> httpx2.Request:
    upstream = {"model": "grok-sim", "stream": bool(body.get("stream")), "messages": body["messages"]}
    return client.build_request("POST", UPSTREAM + "/chat/completions", json=upstream,
                                headers={"Authorization": f"Bearer {UPSTREAM_KEY}"})


async def bare_app(scope, receive, send):
    """The proxy as a bare ASGI callable: uvicorn + httpx2 only."""
    if scope["type"] != "http":
        return  # lifespan: nothing to start
    raw = b""
    while True:
        event = await receive()
        raw += event.get("body", b"")
        if not event.get("more_body"):
            break
    body = json.loads(raw)
    resp = await client.send(_upstream_request(body), stream=True)
    stream = bool(body.get("stream"))
    ctype = b"text/event-stream" if stream else b"application/json"
    try:
        if not stream:
            content = await resp.aread()
            await send({"type": "http.response.start", "status": resp.status_code,
                        "headers": [(b"content-type", ctype), (b"content-length", str(len(content)).encode())]})
            await send({"type": "http.response.body", "body": content})
            return
        await send({"type": "http.response.start", "status": resp.status_code, "headers": [(b"content-type", ctype)]})
        async for chunk in resp.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await resp.aclose()


urlpatterns = [path("v1/", api.urls)]

from django.core.asgi import get_asgi_application  # noqa: E402

app = get_asgi_application()
