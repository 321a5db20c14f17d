"""The libraries' floor: the least a gateway on the design card's stack can add, on this machine.

A proxy on exactly the stack `serve` runs — uvicorn (uvloop, h11, one worker), Django's ASGI handler,
django-ninja parsing the body into a schema, httpx2 calling the upstream — and nothing of ours: no key
check, no pool, no translation, no middleware. Two endpoints, one per simulator face:

- `POST /v1/chat/completions` (`floor`) parses an OpenAI chat body, sends it to the simulator's
  OpenAI-shaped face and passes the answer back (whole, or streamed chunk by chunk);
- `POST /v1/grok` (`floor-grok`) parses the Grok Web chat body grok2api sends upstream, sends it to
  the simulator's Grok Web face and passes the NDJSON answer back the same way. This is the floor
  on the upstream grok2api really calls: as many answer lines to read as grok2api reads, and the
  same simulator work behind them.

Lanes 1–3 measure both beside the gateway (`floor` against `direct-openai`, `floor-grok` against
`direct-grok`), so every `make bench` says how much of the gateway's added latency is the libraries'
and how much is ours. Django's handler is used as it ships, with the per-request reference cycle
that grok2api/asgi.py removes: the floor is the libraries as they come.

    FLOOR_UPSTREAM=http://127.0.0.1:PORT/openai/v1 \
    FLOOR_GROK_UPSTREAM=http://127.0.0.1:PORT/rest/app-chat/conversations/new \
        uvicorn bench.floor:app --loop uvloop --http h11

`bench.floor:bare_app` is the OpenAI-face proxy without Django and Ninja (a plain ASGI callable on
uvicorn and httpx2), to tell the two layers' shares apart.
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
from pydantic import ConfigDict  # noqa: E402

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:8000/openai/v1").rstrip("/")
UPSTREAM_KEY = os.environ.get("FLOOR_UPSTREAM_KEY", "sk-upstream-bench")
# the simulator's Grok Web face, with a session token of its own (the bench lifts the quotas of every token)
GROK_UPSTREAM = os.environ.get("FLOOR_GROK_UPSTREAM", "http://127.0.0.1:8000/rest/app-chat/conversations/new")
GROK_TOKEN = os.environ.get("FLOOR_GROK_TOKEN", "sim-super-benchfloor")
GROK_COOKIE = f"sso={GROK_TOKEN}; sso-rw={GROK_TOKEN}"

# grok2api's own upstream limits (grokweb/transport.py UPSTREAM_LIMITS): httpx2's default of 100
# connections would queue lane 4's 1,000 streams, and the pool's keep-alive size changes its cost
client = httpx2.AsyncClient(timeout=60.0, limits=httpx2.Limits(max_connections=2048, max_keepalive_connections=64,
                                                                keepalive_expiry=30.0))
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
    return await _answer(resp, stream=body.stream, content_type="text/event-stream" if body.stream else "application/json")


class GrokBody(Schema):
    """The Grok Web chat body grok2api sends upstream, plus `stream`: whether to answer whole or as it comes."""

    model_config = ConfigDict(extra="allow")
    message: str
    modeId: str
    stream: bool = False


@api.post("/grok")
async def grok(request, body: GrokBody):
    """The floor on the upstream grok2api calls: the same Grok Web request, the NDJSON answer passed back as it
    came (whole, or chunk by chunk), with no translation, key check or pool."""
    upstream = client.build_request("POST", GROK_UPSTREAM, json=body.model_dump(exclude={"stream"}),
                                    headers={"Cookie": GROK_COOKIE})
    resp = await client.send(upstream, stream=True)
    return await _answer(resp, stream=body.stream, content_type="application/x-ndjson")


async def _answer(resp: httpx2.Response, *, stream: bool, content_type: str):
    if not stream:
        try:
            content = await resp.aread()
        finally:
            await resp.aclose()
        return HttpResponse(content, status=resp.status_code, content_type=content_type)

    async def relay():
        try:
            async for chunk in resp.aiter_raw():
                yield chunk
        finally:
            await resp.aclose()

    return StreamingHttpResponse(relay(), status=resp.status_code, content_type=content_type)


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
