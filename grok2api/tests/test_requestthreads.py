"""grok2api/requestthreads.py: each request's sync parts run on a kept thread, one request at a time."""
from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.core.signals import request_started

from grok2api.requestthreads import request_threads


async def _get(app, path: str) -> int:
    sent: list[dict] = []
    bodies = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if bodies:
            return bodies.pop()
        await asyncio.Event().wait()  # the client stays: Django's disconnect listener is cancelled

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


@pytest.mark.django_db(transaction=True)
async def test_the_pipeline_runs_every_request_s_sync_receivers_on_the_same_kept_thread():
    from grok2api.asgi import application

    seen: list[int] = []

    def receiver(**kwargs):
        seen.append(threading.get_ident())

    request_started.connect(receiver)
    try:
        for _ in range(3):
            assert await _get(application, "/healthz") in (200, 503)
    finally:
        request_started.disconnect(receiver)
    assert len(seen) == 3
    assert len(set(seen)) == 1  # one after another: the same kept thread (Django alone starts one each)
    assert seen[0] != threading.get_ident()  # and never the event loop's


async def test_requests_in_flight_together_never_share_a_thread_and_the_pool_is_bounded():
    gate = asyncio.Event()
    seen: dict[int, list[int]] = {}

    async def app(scope, receive, send):
        await gate.wait()
        for _ in range(2):
            seen.setdefault(scope["n"], []).append(await sync_to_async(threading.get_ident)())

    pooled = request_threads(app, size=2)
    running = [asyncio.create_task(pooled({"type": "http", "n": n}, None, None)) for n in range(3)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*running)
    assert all(len(set(idents)) == 1 for idents in seen.values())  # a request keeps its thread
    kept = {idents[0] for idents in seen.values()}
    assert len(kept) == 3  # two kept executors + one request beyond the pool on a thread of its own
    assert pooled.pool.created == 2
    await pooled({"type": "http", "n": 3}, None, None)
    assert seen[3][0] in kept  # a later request borrows a kept one
    assert pooled.pool.created == 2
    pooled.pool.shutdown()


def test_a_pool_of_zero_leaves_the_application_as_it_is():
    async def app(scope, receive, send):
        return None

    assert request_threads(app, size=0) is app
