"""Worker memory: give freed heap back to the OS once the worker is idle.

Why (docs/benchmarks.md, "RSS after a burst, session 7"): a burst of 1,000 concurrent streams grows
a worker by ~110 MB, almost all of it CPython's small-object arenas (pymalloc, 1 MiB each). After
the burst those arenas are mostly empty pools, but pymalloc returns an arena only when every object
in it is gone, and the state updated during the burst (the account snapshot above all) sits in
nearly every one of them, so they stay. What can go back goes back here:

- `Housekeeper` (one task per worker, started by the lifespan): once no HTTP request has been in
  flight and no WebSocket open for MEMORY_RELEASE_IDLE_SECONDS (default 20; 0 turns it off) and
  requests were served since the last release, `release`: the pooled upstream clients of this loop are closed (httpcore2
  closes an expired keep-alive connection only when its pool is next used, so up to 64 connections
  stayed open, each with its parser, buffers and the context of the request that opened it), a full
  `gc.collect()` (an idle worker never triggers one), then `malloc_trim(0)` in a thread: glibc's
  free chunks of everything over 512 bytes. Measured with `python -m bench.rss` (1,000 streams, one
  worker, RSS 60 s after): 256 MB with the release, 276 MB without (idle 178 MB).
  The idle arenas cannot be given back by any call here (pymalloc has none).
- `startup_freeze` (once per worker, after the lifespan's warm-up): a full collection, then
  `gc.freeze()`, so the ~150,000 objects of start-up (Django, the apps, the libraries) leave the
  collector's generations. It keeps no memory back (session 5), but a full collection walks every
  tracked object, which is ~60 ms of a worker holding the GIL on the bench machine; under load
  those pauses were the TTFT p99 (docs/benchmarks.md, session 8's table, the row "Each worker
  freezes its start-up objects"). Frozen, a full collection walks only what came since.

Requests are counted by `track_requests` (wraps the ASGI application): two integer increments per
request, no clock read on the request path. A tick that sees a request start or end restarts the
quiet spell, so the release comes MEMORY_RELEASE_IDLE_SECONDS to one tick after the last request.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import time
from typing import Any, Awaitable, Callable

from grokweb.chat import chat_drains_running
from grokweb.transport import transport_aclose

log = logging.getLogger(__name__)

TICK_SECONDS = 5.0
DEFAULT_IDLE_SECONDS = 20.0


class Activity:
    """HTTP requests and WebSocket sessions started and finished in this worker (event-loop thread
    only)."""

    __slots__ = ("started", "finished")

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0

    @property
    def inflight(self) -> int:
        return self.started - self.finished


activity = Activity()


def track_requests(app: Callable) -> Callable:
    """The ASGI application `app`, counting its HTTP requests and WebSocket sessions in `activity`.
    WebSockets count because a session (the image wall) makes upstream calls between its frames,
    on the pooled clients that the release closes."""

    async def tracked(scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await app(scope, receive, send)
        activity.started += 1
        try:
            return await app(scope, receive, send)
        finally:
            activity.finished += 1

    return tracked


def idle_seconds_setting() -> float:
    raw = os.environ.get("MEMORY_RELEASE_IDLE_SECONDS", "").strip()  # validated by core/envcheck.py
    return float(raw) if raw else DEFAULT_IDLE_SECONDS


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim  # glibc only (not musl, not macOS)
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def _trim() -> bool | None:
    return bool(_malloc_trim(0)) if _malloc_trim is not None else None


async def release() -> dict[str, Any]:
    """Close this loop's pooled upstream clients (their kept-alive connections would stay open past
    their expiry until the next request), collect cyclic garbage, then hand glibc's free heap pages
    back to the OS. Returns what it did.

    The collection holds the GIL (~40 ms for a worker's ~150k objects); the trim (up to ~75 ms
    for a fragmented 200 MB heap) runs in a thread (ctypes releases the GIL), so the loop is free."""
    t0 = time.perf_counter()
    closed = 0
    if not chat_drains_running():  # no request or WebSocket in flight: nothing else uses them
        closed = await transport_aclose()
    collected = gc.collect()
    trimmed = await asyncio.get_running_loop().run_in_executor(None, _trim)
    return {"upstream_clients_closed": closed, "collected": collected, "trimmed": trimmed,
            "ms": round((time.perf_counter() - t0) * 1000, 1)}


class Housekeeper:
    """The per-worker loop: release memory once the worker is idle."""

    def __init__(self, *, idle_seconds: float, tick: float = TICK_SECONDS,
                 on_release: Callable[[], Awaitable[Any]] = release) -> None:
        self.idle_seconds = idle_seconds
        self.tick = tick
        self.on_release = on_release
        self.releases = 0
        self._seen = (activity.started, activity.finished)  # at the last tick
        self._released_at = activity.finished  # `finished` at the last release
        self._quiet_ticks = 0

    async def step(self) -> bool:
        """One tick. Returns True when it released memory."""
        now = (activity.started, activity.finished)
        if now != self._seen or activity.inflight:
            # a request started or ended since the last tick: the quiet spell starts now
            self._seen = now
            self._quiet_ticks = 0
            return False
        self._quiet_ticks += 1
        if (activity.finished == self._released_at
                or self._quiet_ticks * self.tick < self.idle_seconds):
            return False
        self._released_at = activity.finished
        done = await self.on_release()
        self.releases += 1
        log.debug("idle worker: memory released %s", done)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            await self.step()


_task: asyncio.Task | None = None


def startup_freeze() -> int:
    """Collect, then freeze what is left (the warm-up's objects) out of the collector's walks;
    return how many objects are frozen now."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def start() -> asyncio.Task | None:
    """Start the housekeeping task on the running loop (once per worker; called at lifespan startup).
    None when the idle release is off (MEMORY_RELEASE_IDLE_SECONDS=0)."""
    global _task
    idle = idle_seconds_setting()
    if idle <= 0:
        return None
    if _task is None or _task.done():
        _task = asyncio.get_running_loop().create_task(Housekeeper(idle_seconds=idle).run(), name="worker-housekeeping")
    return _task


def stop() -> None:
    """Cancel the housekeeping task (lifespan shutdown)."""
    global _task
    if _task is not None:
        _task.cancel()
        _task = None
