"""Server-sent events: framing and keep-alive for the /v1 streams.

Wire format (text/event-stream, UTF-8):
- data-only frames `data: <json>\\n\\n` (Chat Completions, and its final `data: [DONE]\\n\\n`);
- named frames `event: <type>\\ndata: <json>\\n\\n` (Responses, Anthropic Messages);
- keep-alives during long gaps: the comment line `: keep-alive\\n\\n` (Chat Completions, Responses;
  clients ignore comments) or Anthropic's own `event: ping\\ndata: {"type":"ping"}\\n\\n`.

Keep-alive: `asyncio.wait_for(agen.__anext__(), t)` would cancel the generator on the first
timeout and kill the stream. `with_keepalive` keeps ONE pending `__anext__()` task and waits on it
with `asyncio.wait({task}, timeout=t)`; a timeout leaves the task running and yields the KEEPALIVE
marker instead. Closing the wrapper cancels the pending task, which closes the upstream. It is the
only keep-alive of the gateway's streams.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import orjson

T = TypeVar("T")

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx and friends: do not buffer the stream
}

KEEPALIVE_COMMENT = b": keep-alive\n\n"
ANTHROPIC_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
DONE = b"data: [DONE]\n\n"


class _KeepAlive:
    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEPALIVE"


KEEPALIVE: Any = _KeepAlive()


def keepalive_frame(family: str) -> bytes:
    return ANTHROPIC_PING if family == "anthropic" else KEEPALIVE_COMMENT


def data_frame(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def event_frame(event: str, obj: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


async def with_keepalive(source: AsyncIterator[T], *, interval: float) -> AsyncIterator[T | Any]:
    """Yield the items of `source`; yield KEEPALIVE whenever `interval` seconds pass without one.

    Exceptions of `source` propagate unchanged. When the consumer stops early (aclose, cancellation)
    the pending `__anext__` task is cancelled and awaited, so the source's own cleanup runs now.
    """
    it = source.__aiter__()
    pending: asyncio.Future | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait((pending,), timeout=interval)
            if not done:
                yield KEEPALIVE
                continue
            task, pending = pending, None
            try:
                item = task.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
