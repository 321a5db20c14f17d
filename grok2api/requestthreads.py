"""Kept threads for the sync parts of a request, through asgiref's executor contexts.

Why: Django's ASGI handler enters a `ThreadSensitiveContext` per request, and asgiref gives each
such context its own single-thread executor. Every request runs some sync code — the
`request_started` receivers (django.db's `close_old_connections`, `reset_queries`) and
`response.close()`, which sends `request_finished` — so every request started a new thread, and
its exit started a second one to join it. Measured (docs/benchmarks.md, "Request threads"):
that was the largest single cost of the pipeline per request.

asgiref 3.13 lets the caller supply the executor (`ThreadSensitiveContext(executor=...)`, "for
example in a pool", its README says) and makes Django's own inner context a no-op. So each HTTP
request borrows one idle single-thread executor from this worker's pool for its whole life and
gives it back when it ends; one executor never serves two requests at the same time (asgiref's
rule). When all are lent (more requests in flight than REQUEST_THREADS), the request runs as
Django would run it alone: its own context, its own new thread. REQUEST_THREADS=0 turns the pool
off.

Each kept thread keeps its own database connection between requests (Django's connections are
per thread; CONN_MAX_AGE decides how long), where a new thread per request opened a new one.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from asgiref.sync import ThreadSensitiveContext


class ExecutorPool:
    """Idle single-thread executors of one worker process, lent to one request at a time. Its
    methods run on the event loop's thread only."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.created = 0
        self._idle: list[ThreadPoolExecutor] = []

    def borrow(self) -> ThreadPoolExecutor | None:
        if self._idle:
            return self._idle.pop()
        if self.created < self.size:
            self.created += 1
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request-sync")
        return None

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        self._idle.append(executor)

    def shutdown(self) -> None:
        """Stop the idle executors' threads (lifespan shutdown). Lent ones stop with the process."""
        idle, self._idle = self._idle, []
        for executor in idle:
            executor.shutdown(wait=False)


def request_threads(app: Callable, *, size: int) -> Callable:
    """`app` (an ASGI application) with each HTTP request's thread-sensitive sync code on a kept
    thread from a pool of `size` (0: Django's own thread per request)."""
    if size <= 0:
        return app
    pool = ExecutorPool(size)

    async def pooled_app(scope, receive, send):
        executor = pool.borrow() if scope["type"] == "http" else None
        if executor is None:
            return await app(scope, receive, send)
        try:
            async with ThreadSensitiveContext(executor=executor):
                return await app(scope, receive, send)
        finally:
            pool.give_back(executor)

    pooled_app.pool = pool
    return pooled_app
