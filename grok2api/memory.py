"""Worker housekeeping: close expired upstream connections, give memory back once the worker is idle.

Why (issue 8, lane 5 of docs/benchmarks.md): a burst of 1,000 concurrent streams grows one worker
by 60–80 MB, and without this the worker's RSS stays at that high-water mark. It is not live data
(tracemalloc counts ~2 MB more live Python objects after a burst than before); it is memory the
allocators keep:
- glibc's heap keeps the free chunks of everything larger than 512 bytes (dict and set tables,
  read buffers, request bodies) until `malloc_trim` releases their pages;
- CPython's own allocator (pymalloc) takes memory in 1 MiB arenas and returns an arena only when
  every object in it is gone. The few objects created during a burst that outlive it (the account
  snapshot reloaded while the burst ran, kept-alive connections, cached compiled queries, dict
  tables that never shrink) are scattered over most of the burst's arenas and keep them all. Only
  an allocator that returns memory page by page (`WORKER_MALLOC=malloc` or `jemalloc`, set for the
  workers by grok2api/management/commands/serve.py) gives those back; measured in bench/fastpath.md.

What runs here: one task per worker event loop, started by the ASGI lifespan (grok2api/asgi.py),
waking every TICK_SECONDS:
- every tick, an optional `sweep` callable (none by default: the upstream pool is httpx's own and
  prunes expired keep-alive connections when it is next used);
- once no HTTP request has been in flight for MEMORY_RELEASE_IDLE_SECONDS (default 20; 0 turns
  this off) and requests were served since the last release: a full `gc.collect()` (cyclic
  garbage of finished requests otherwise waits for the next full collection, which an idle worker
  never triggers), then glibc's `malloc_trim(0)` or jemalloc's purge, in a thread (`release`).
  Under jemalloc the loop thread's cache of freed small objects is flushed first; the background
  writer threads flush theirs after each batch (`thread_cache_flush`).

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
import sys
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

MALLCTL_ARENAS_ALL = 4096  # jemalloc 5: "arena.<i>.purge" for every arena


def _load_mallctl(name: str) -> Callable[[], bool] | None:
    """A jemalloc control without arguments (`mallctl(name)`), when jemalloc is the process's
    malloc (WORKER_MALLOC=jemalloc)."""
    try:
        mallctl = ctypes.CDLL(None).mallctl
    except (OSError, AttributeError):
        return None
    mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    mallctl.restype = ctypes.c_int
    raw = name.encode()
    return lambda: mallctl(raw, None, None, None, 0) == 0


# Every arena's unused dirty pages back to the OS.
_jemalloc_purge = _load_mallctl(f"arena.{MALLCTL_ARENAS_ALL}.purge")
# The calling thread's cache of freed small objects back to its arena. A thread's cache is emptied
# only by that thread's own later allocations, not by the purge, and pins the pages its objects sit
# on. Flushing it in the event loop thread at the release and in the background writers after each
# batch (thread_cache_flush) took RSS 60 s after a 1,000-stream burst from +6.9 to +7.7 % of idle to
# +5.0 to +6.1 % (bench.rss, 4 rounds each). Turning the caches off (MALLOC_CONF tcache:false) gave
# +3.0 / +3.8 % but cost 11-26 % more worker CPU per request, so they stay on.
_jemalloc_tcache_flush = _load_mallctl("thread.tcache.flush")


def thread_cache_flush() -> None:
    """Hand the calling thread's cache of freed small objects back to jemalloc (a no-op under any
    other allocator). The background writers call it after each batch."""
    if _jemalloc_tcache_flush is not None:
        _jemalloc_tcache_flush()


def _give_back() -> tuple[bool | None, bool | None]:
    trimmed = bool(_malloc_trim(0)) if _malloc_trim is not None else None
    if _jemalloc_tcache_flush is not None:
        _jemalloc_tcache_flush()
    purged = _jemalloc_purge() if _jemalloc_purge is not None else None
    return trimmed, purged


async def release() -> dict[str, Any]:
    """Collect cyclic garbage, then hand the C heap's free pages back to the OS (glibc's
    malloc_trim, or jemalloc's purge when it is preloaded). Returns what it did.

    The collection holds the GIL (~40 ms for a worker's ~150k objects); the trim (up to ~75 ms
    for a fragmented 200 MB heap) runs in a thread (ctypes releases the GIL), so the loop is free."""
    t0 = time.perf_counter()
    collected = gc.collect()
    if _jemalloc_tcache_flush is not None:
        _jemalloc_tcache_flush()  # the loop thread's own cache: only this thread can flush it
    trimmed, purged = await asyncio.get_running_loop().run_in_executor(None, _give_back)
    return {"collected": collected, "trimmed": trimmed, "purged": purged,
            "ms": round((time.perf_counter() - t0) * 1000, 1)}


class Housekeeper:
    """The per-worker loop: sweep expired upstream connections; release memory once idle."""

    def __init__(self, *, idle_seconds: float, tick: float = TICK_SECONDS,
                 sweep: Callable[[], Awaitable[Any]] | None = None,
                 on_release: Callable[[], Awaitable[Any]] = release) -> None:
        self.idle_seconds = idle_seconds
        self.tick = tick
        self.sweep = sweep  # None: nothing to sweep (httpcore prunes expired upstream connections itself)
        self.on_release = on_release
        self.releases = 0
        self._seen = (activity.started, activity.finished)  # at the last tick
        self._released_at = activity.finished  # `finished` at the last release
        self._quiet_ticks = 0

    async def step(self) -> bool:
        """One tick. Returns True when it released memory."""
        try:
            if self.sweep is not None:
                await self.sweep()
        except Exception:
            log.warning("upstream connection sweep failed", exc_info=True)
        now = (activity.started, activity.finished)
        if now != self._seen or activity.inflight:
            # a request started or ended since the last tick: the quiet spell starts now
            self._seen = now
            self._quiet_ticks = 0
            return False
        self._quiet_ticks += 1
        if (self.idle_seconds <= 0 or activity.finished == self._released_at
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


# How long a background thread (usage flusher, account writer, snapshot poller) may hold the GIL
# while the event loop waits for it; CPython's default is 5 ms, which showed up whole in the
# tail of the time to first token (docs/benchmarks.md, lane 3).
GIL_SWITCH_SECONDS = 0.001


def worker_tune() -> dict[str, Any]:
    """Interpreter settings for a server worker, applied once after the warm-up (grok2api/asgi.py).

    - `gc.freeze()`: the ~150k objects alive after start-up (Django, the routes, the token
      vocabulary, the snapshots) move to the permanent generation, so a full collection walks only
      what was created since, instead of stalling the loop for tens of milliseconds;
    - `sys.setswitchinterval(GIL_SWITCH_SECONDS)`.
    """
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    return {"frozen": gc.get_freeze_count(), "switch_interval": sys.getswitchinterval()}


_task: asyncio.Task | None = None


def start() -> asyncio.Task:
    """Start the housekeeping task on the running loop (once per worker; called at lifespan startup)."""
    global _task
    if _task is None or _task.done():
        _task = asyncio.get_running_loop().create_task(Housekeeper(idle_seconds=idle_seconds_setting()).run(),
                                                       name="worker-housekeeping")
    return _task


def stop() -> None:
    """Cancel the housekeeping task (lifespan shutdown)."""
    global _task
    if _task is not None:
        _task.cancel()
        _task = None
