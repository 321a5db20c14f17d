"""ASGI entry point: Channels routes HTTP to Django and WebSockets to the webui consumers.

Two things happen before Channels sees a connection:
- the `lifespan` scope (sent by uvicorn) is answered here: Channels' ProtocolTypeRouter rejects
  unknown scope types. Startup loads the in-memory snapshots (config, API keys, ...) so the first
  request does not wait for the database;
- request bodies are capped at MAX_BODY_MB before Django buffers them: a declared
  Content-Length over the cap, or a chunked body that grows past it, gets HTTP 413 with
  `request_too_large` in the route family's error envelope (OpenAI, or Anthropic for
  /v1/messages) without reading the rest.
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grok2api.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi = get_asgi_application()

import threading  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import orjson  # noqa: E402
from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from webui.routing import websocket_urlpatterns  # noqa: E402

router = ProtocolTypeRouter(
    {
        "http": django_asgi,
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)


def _warm() -> None:
    from django.urls import get_resolver

    from grok2api.snapshots import snapshots_warm

    from django.db import connection

    get_resolver().url_patterns  # import every route module, so their snapshots are registered
    snapshots_warm()
    from gateway.translate.tokens import count_tokens

    count_tokens("warm")  # load the token vocabulary now, not during the first request (~0.3 s)
    connection.close()  # this executor thread will not serve requests


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await sync_to_async(_warm, thread_sensitive=False)()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _too_large_body(path: str) -> bytes:
    from gateway.errors import RequestTooLarge

    exc = RequestTooLarge(f"Request body exceeds the {settings.MAX_BODY_BYTES // (1024 * 1024)} MB limit (MAX_BODY_MB).")
    body = exc.anthropic_body() if path.startswith("/v1/messages") else exc.openai_body()
    return orjson.dumps(body)


async def _reject_413(scope, send) -> None:
    body = _too_large_body(scope.get("path", ""))
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


def _capped(scope, receive, send, limit):
    """Wrap receive/send for a body without Content-Length (chunked): count while Django reads;
    past the cap answer 413 and tell Django the client left, so it stops and sends nothing."""
    seen = 0
    rejected = False

    async def capped_receive():
        nonlocal seen, rejected
        message = await receive()
        if message["type"] == "http.request" and not rejected:
            seen += len(message.get("body", b""))
            if seen > limit:
                rejected = True
                await _reject_413(scope, send)
                return {"type": "http.disconnect"}
        return message

    async def guarded_send(message):
        if not rejected:
            await send(message)

    return capped_receive, guarded_send


class _PooledThreadContext(ThreadSensitiveContext):
    """Django's per-request ThreadSensitiveContext, with its one worker thread reused.

    Django runs each HTTP request's thread-sensitive sync code (signals, response.close(),
    sync_to_async ORM calls) on a thread of its own: asgiref starts a new thread for every request
    and joins it afterwards from yet another thread (measured in docs/benchmarks.md: ~0.2 ms of CPU
    and ~0.5 ms of latency per request). Entered first, this context hands the request a parked
    single-thread executor instead and parks it again at the end; Django's own context then nests
    as a no-op. One request still owns one thread at a time, as before.
    """

    async def __aenter__(self):
        await super().__aenter__()
        if self.token is not None:
            SyncToAsync.context_to_thread_executor[self] = (
                _parked.pop() if _parked else ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
            )
        return self

    async def __aexit__(self, exc, value, tb):
        if not self.token:
            return
        executor = SyncToAsync.context_to_thread_executor.pop(self, None)
        SyncToAsync.thread_sensitive_context.reset(self.token)
        self.token = None
        if executor is not None:
            if len(_parked) < _PARKED_MAX:
                _parked.append(executor)
            else:
                threading.Thread(target=executor.shutdown, daemon=True).start()


_parked: list[ThreadPoolExecutor] = []
_PARKED_MAX = 64


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    if scope["type"] == "http":
        async with _PooledThreadContext():
            return await _http(scope, receive, send)
    return await router(scope, receive, send)


async def _http(scope, receive, send):
    limit = settings.MAX_BODY_BYTES
    chunked = False
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = 0
            if declared > limit:
                return await _reject_413(scope, send)
        elif name == b"transfer-encoding":
            chunked = True
    if chunked:
        receive, send = _capped(scope, receive, send, limit)
    return await router(scope, receive, send)
