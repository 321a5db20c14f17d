"""ASGI entry point: one pipeline for every path.

- `lifespan` (uvicorn sends it) is answered here: Channels' ProtocolTypeRouter rejects unknown
  scope types. Start-up loads the in-memory snapshots (config, API keys, ...) and the token
  vocabulary so the first request does not wait for them (`_warm`); a failing warm-up is reported
  as `lifespan.startup.failed`, which stops the server (and `serve` with it).
- HTTP goes to Django's ASGI handler (`ASGIHandler` below: Django's own, without the reference
  cycle its disconnect listener leaves per request) — /v1 (Ninja), admin, web pages, /healthz
  alike — behind the request body cap (grok2api/bodylimit.py), each request's sync parts on a kept
  thread (grok2api/requestthreads.py); /static/ goes to WhiteNoise (grok2api/staticfiles.py) so
  Django's middleware chain stays async from end to end.
- WebSockets go to Channels (webui).
"""
import os
import signal
import threading

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grok2api.settings")

import django  # noqa: E402
from django.core.handlers import asgi as django_handlers  # noqa: E402


class ASGIHandler(django_handlers.ASGIHandler):
    """Django's ASGI handler, with a disconnect listener that returns instead of raising.

    Django 5.2's `handle` runs the view and `listen_for_disconnect` as two tasks and cancels
    whichever is still running when the other ends; what the listener ended with is read and
    dropped. Raised, its `RequestAborted` keeps a traceback holding `handle`'s frame, whose task
    list holds the listener's task, which holds the exception: a reference cycle per request (the
    request, its response, the body file and the tasks, ~60 objects), freed only by the cyclic
    garbage collector. Uvicorn ends every finished response with `http.disconnect`, so every
    request left one, with its body bytes, and the workers paused twice as long in collections
    (docs/benchmarks.md, session 10). A listener that returns ends its task the same way for
    `handle` and leaves nothing behind. `grok2api/tests/test_asgi.py` checks that no cycle is left;
    `gateway/tests/api/test_chat_completions.py` checks that a client that goes away still cancels
    the view (the guard for a Django upgrade that cancels only on a raised error).
    """

    async def listen_for_disconnect(self, receive):
        message = await receive()
        if message["type"] != "http.disconnect":
            raise AssertionError(f"Invalid ASGI message after request body: {message['type']}")


django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does
django_asgi = ASGIHandler()

import asyncio  # noqa: E402

from asgiref.sync import sync_to_async  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from grok2api import memory  # noqa: E402
from grok2api.bodylimit import body_limit  # noqa: E402
from grok2api.requestthreads import request_threads  # noqa: E402
from gateway.sse import streams_cut_after  # noqa: E402
from grok2api.staticfiles import static_app  # noqa: E402
from webui.routing import websocket_urlpatterns  # noqa: E402

STATIC_PREFIX, static = static_app()

django_pooled = request_threads(django_asgi, size=settings.REQUEST_THREADS)

router = ProtocolTypeRouter(
    {
        "http": body_limit(django_pooled, limit=settings.MAX_BODY_BYTES),
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)


def _warm() -> None:
    from django.db import connection
    from django.urls import get_resolver

    from gateway.translate.tokens import count_tokens
    from core.snapshots import snapshots_warm

    get_resolver().url_patterns  # import every route module, so their snapshots are registered
    snapshots_warm()
    count_tokens("warm")  # load the token vocabulary now, not during the first request (~0.3 s)
    connection.close()  # this executor thread will not serve requests


def _drain_on_stop(grace: float) -> None:
    """Chain the server's SIGTERM/SIGINT handlers (uvicorn installs them before the lifespan starts):
    on a stop request the server closes its listening socket and waits for open requests, and the
    streams still running after `grace` seconds are ended with the family's error event
    (gateway/sse.py), a moment before uvicorn's own timeout would cut them mid-frame."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers belong to the main thread (a server run in a thread: tests)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def on_stop(sig, frame, previous=previous):
            try:
                loop.call_soon_threadsafe(streams_cut_after, grace)
            except RuntimeError:
                pass  # that loop is closed: nothing left to drain
            if callable(previous):
                previous(sig, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(sig, signal.SIG_DFL)
                signal.raise_signal(sig)

        signal.signal(signum, on_stop)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await sync_to_async(_warm, thread_sensitive=False)()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": f"grok2api warm-up failed: {exc!r}"})
                return
            memory.startup_freeze()
            memory.start()
            _drain_on_stop(settings.SHUTDOWN_GRACE_SECONDS)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            memory.stop()
            if hasattr(django_pooled, "pool"):
                django_pooled.pool.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    if scope["type"] == "http" and scope["path"].startswith(STATIC_PREFIX):
        return await static(scope, receive, send)
    return await router(scope, receive, send)


application = memory.track_requests(application)  # in-flight requests, for the idle release
