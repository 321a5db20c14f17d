"""ASGI entry point: the /v1 data-plane lane, then Channels (HTTP to Django, WebSockets to webui).

The completion routes (/v1/chat/completions, /v1/responses, /v1/messages, /v1/models) go to
grok2api/fastlane.py, which calls their Ninja operations without Django's request cycle. For
everything else, three things happen before Channels sees a connection:
- the `lifespan` scope (sent by uvicorn) is answered here: Channels' ProtocolTypeRouter rejects
  unknown scope types. Startup loads the in-memory snapshots (config, API keys, ...) and the token
  vocabulary so the first request does not wait for them, freezes what start-up allocated out of
  the garbage collector's way and shortens the GIL switch interval (`memory.worker_tune`), and
  starts the worker's housekeeping
  task (grok2api/memory.py: expired upstream connections, memory given back once idle; it counts
  HTTP requests in flight through `track_requests`, which wraps `application`);
- each HTTP request gets its thread for sync code from a bounded set of kept threads instead of a
  new thread per request (`_SharedThreadContext`);
- request bodies are capped at MAX_BODY_MB before Django buffers them: a declared
  Content-Length over the cap, or a chunked body that grows past it, gets HTTP 413 with
  `request_too_large` in the route family's error envelope (OpenAI, or Anthropic for
  /v1/messages) without reading the rest.
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grok2api.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi = get_asgi_application()

from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from grok2api import memory  # noqa: E402
from grok2api.fastlane import lane_handle, lane_serves, reject_413  # noqa: E402
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
            try:
                await sync_to_async(_warm, thread_sensitive=False)()
            except Exception as exc:
                # Reported, not raised: granian takes a raising lifespan for "unsupported" and serves
                # cold; on startup.failed both servers stop (and `serve` with them).
                await send({"type": "lifespan.startup.failed", "message": f"grok2api warm-up failed: {exc!r}"})
                return
            memory.worker_tune()
            memory.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            memory.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


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
                await reject_413(scope, send)
                return {"type": "http.disconnect"}
        return message

    async def guarded_send(message):
        if not rejected:
            await send(message)

    return capped_receive, guarded_send


class _SharedThreadContext(ThreadSensitiveContext):
    """Django's per-request ThreadSensitiveContext, on a bounded set of long-lived threads.

    Django runs each HTTP request's thread-sensitive sync code (signals, response.close(),
    sync_to_async ORM calls) on a thread of its own: asgiref starts a new thread per request and
    joins it afterwards, so 1,000 open streams meant 1,000 threads (measured in
    docs/benchmarks.md: ~0.2 ms of CPU and ~0.5 ms of latency per request, and RSS). Entered
    first, this context gives the request one of at most _THREADS_MAX single-thread executors —
    a free one if any, else the least shared — and Django's own context then nests as a no-op.
    A request's sync code still always runs on one and the same thread.
    """

    async def __aenter__(self):
        await super().__aenter__()
        if self.token is not None:
            self._slot = _thread_take()
            SyncToAsync.context_to_thread_executor[self] = _threads[self._slot]
        return self

    async def __aexit__(self, exc, value, tb):
        if not self.token:
            return
        SyncToAsync.context_to_thread_executor.pop(self, None)
        SyncToAsync.thread_sensitive_context.reset(self.token)
        self.token = None
        _thread_users[self._slot] -= 1


_THREADS_MAX = 32
_threads: list[ThreadPoolExecutor] = []
_thread_users: list[int] = []  # requests currently assigned to each executor (event-loop thread only)


def _thread_take() -> int:
    for i, users in enumerate(_thread_users):
        if not users:
            _thread_users[i] = 1
            return i
    if len(_threads) < _THREADS_MAX:
        _threads.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="request"))
        _thread_users.append(1)
        return len(_threads) - 1
    i = min(range(len(_thread_users)), key=_thread_users.__getitem__)
    _thread_users[i] += 1
    return i


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    if scope["type"] == "http":
        if lane_serves(scope["path"]):
            return await lane_handle(scope, receive, send, body_limit=settings.MAX_BODY_BYTES)
        async with _SharedThreadContext():
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
                return await reject_413(scope, send)
        elif name == b"transfer-encoding":
            chunked = True
    if chunked:
        receive, send = _capped(scope, receive, send, limit)
    return await router(scope, receive, send)


application = memory.track_requests(application)  # in-flight requests, for the idle release
