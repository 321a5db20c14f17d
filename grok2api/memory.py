"""Worker memory: give freed heap back to the OS once the worker is idle.

Why (docs/benchmarks.md, lane 5): a burst of 1,000 concurrent streams grows a worker by tens of MB,
and without a release its RSS stays at that high-water mark. That is memory glibc's heap keeps:
the free chunks of everything larger than 512 bytes (dict and set tables, read buffers, request
bodies) stay mapped until `malloc_trim` hands their pages back. (CPython's own small-object arenas
are returned only when empty, which this cannot change.) Measured with `python -m bench.rss`
(1,000 streams, one worker, RSS 60 s after vs idle): +39 % with the release, +49 % without.
`gc.freeze()` after the warm-up was tried too and kept nothing back (+37 % without it), so it went.

- `Housekeeper` (one task per worker, started by the lifespan): once no HTTP request has been in
  flight for MEMORY_RELEASE_IDLE_SECONDS (default 20; 0 turns it off) and requests were served since
  the last release, a full `gc.collect()` (an idle worker never triggers one), then
  `malloc_trim(0)` in a thread (`release`).

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

log = logging.getLogger(__name__)

TICK_SECONDS = 5.0
DEFAULT_IDLE_SECONDS = 20.0


class Activity:
    """HTTP requests started and finished in this worker (event-loop thread only)."""

    __slots__ = ("started", "finished")

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0

    @property
    def inflight(self) -> int:
        return self.started - self.finished


activity = Activity()


def track_requests(app: Callable) -> Callable:
    """The ASGI application `app`, counting its HTTP requests in `activity`."""

    async def tracked(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        activity.started += 1
        try:
            return await app(scope, receive, send)
        finally:
            activity.finished += 1

    return tracked


def idle_seconds_setting() -> float:
    raw = os.environ.get("MEMORY_RELEASE_IDLE_SECONDS", "").strip()  # validated by grok2api/envcheck.py
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
    """Collect cyclic garbage, then hand glibc's free heap pages back to the OS. Returns what it did.

    The collection holds the GIL (~40 ms for a worker's ~150k objects); the trim (up to ~75 ms
    for a fragmented 200 MB heap) runs in a thread (ctypes releases the GIL), so the loop is free."""
    t0 = time.perf_counter()
    collected = gc.collect()
    trimmed = await asyncio.get_running_loop().run_in_executor(None, _trim)
    return {"collected": collected, "trimmed": trimmed, "ms": round((time.perf_counter() - t0) * 1000, 1)}


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
