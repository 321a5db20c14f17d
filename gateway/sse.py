"""Server-sent events: framing and keep-alive for the /v1 streams.

Wire format (text/event-stream, UTF-8):
- data-only frames `data: <json>\\n\\n` (Chat Completions, and its final `data: [DONE]\\n\\n`);
- named frames `event: <type>\\ndata: <json>\\n\\n` (Responses, Anthropic Messages);
- keep-alives during long gaps: the comment line `: keep-alive\\n\\n` (Chat Completions, Responses;
  clients ignore comments) or Anthropic's own `event: ping\\ndata: {"type":"ping"}\\n\\n`.

Keep-alive: `asyncio.wait_for(agen.__anext__(), t)` would cancel the generator on the first
timeout and kill the stream. `with_keepalive` reads the source in one task of its own and yields
the KEEPALIVE marker when nothing arrived for `t` seconds, leaving that read running. Closing the
wrapper cancels the reader, which closes the upstream. It is the only keep-alive of the gateway's
streams.

Shutdown: when the server is told to stop, `streams_cut_after(grace)` (grok2api/asgi.py calls it
from the worker's SIGTERM/SIGINT handler with SHUTDOWN_GRACE_SECONDS) lets running streams go on
for `grace` seconds; then every `with_keepalive` still waiting raises `StreamCut` (a 503
GatewayError) after closing its source, and the stream's encoder ends it with the family's error
event (OpenAI: an `error` frame then `data: [DONE]`; Anthropic: `event: error`).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson

from grokweb.errors import GatewayError, InternalError, ServiceUnavailable

log = logging.getLogger(__name__)

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


class StreamCut(ServiceUnavailable):
    code = "server_shutting_down"


# One future per event loop, resolved when the grace after a stop request has run out.
_cuts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future] = weakref.WeakKeyDictionary()


def _cut_future() -> asyncio.Future:
    loop = asyncio.get_running_loop()
    fut = _cuts.get(loop)
    if fut is None:
        fut = _cuts[loop] = loop.create_future()
    return fut


def streams_cut_after(grace: float) -> None:
    """End every stream of this event loop still running `grace` seconds from now (call it on the
    loop's thread: from a signal handler through loop.call_soon_threadsafe)."""
    fut = _cut_future()

    def cut() -> None:
        if not fut.done():
            fut.set_result(None)

    asyncio.get_running_loop().call_later(grace, cut)


# How many items the reader of a kept-alive source may hold that the consumer has not taken yet.
READ_AHEAD = 32


async def with_keepalive(source: AsyncIterator[T], *, interval: float, batches: bool = False) -> AsyncIterator[Any]:
    """Yield the items of `source`; yield KEEPALIVE whenever `interval` seconds pass without one.
    With `batches`, yield lists instead: every item that has arrived by then, in order (never
    empty), so a stream can write what came in one network read with one write, without waiting
    for anything that has not arrived.

    One reader task per stream pulls `source` (at most READ_AHEAD items ahead of the consumer) and
    hands items over through a deque; the consumer waits on a future with one timer only when the
    deque is empty. (The first form started a task and an `asyncio.wait` for every item: ~20 µs an
    item, measured in docs/benchmarks.md.) Exceptions of `source` propagate unchanged. When the
    consumer stops early (aclose, cancellation) the reader is cancelled and awaited and `source`
    closed, so its own cleanup runs now. Once the server's shutdown grace has run out
    (`streams_cut_after`) it raises StreamCut instead of waiting on.
    """
    loop = asyncio.get_running_loop()
    cut = _cut_future()
    it = source.__aiter__()
    ready: collections.deque[tuple[int, Any]] = collections.deque()  # (kind, value)
    waiter: asyncio.Future | None = None  # the consumer's, while the deque is empty
    room: asyncio.Future | None = None  # the reader's, while the deque is full

    def wake(_: Any = None) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read() -> None:
        nonlocal room
        try:
            async for item in it:
                ready.append((_ITEM, item))
                wake()
                if len(ready) >= READ_AHEAD:
                    room = loop.create_future()
                    await room
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 -- handed to the consumer, who raises it
            ready.append((_ERROR, exc))
        else:
            ready.append((_END, None))
        finally:
            wake()
            close = getattr(it, "aclose", None)
            if close is not None:
                await close()

    reader = loop.create_task(read())
    cut.add_done_callback(wake)
    try:
        while True:
            if not ready:
                waiter = loop.create_future()
                timer = loop.call_later(interval, wake)
                try:
                    await waiter
                finally:
                    timer.cancel()
                    waiter = None
                if not ready:
                    if cut.done():
                        raise StreamCut("The server is shutting down: this stream was ended after its grace period "
                                        "(SHUTDOWN_GRACE_SECONDS). Retry the request.")
                    yield KEEPALIVE
                    continue
            if batches and ready[0][0] is _ITEM:
                batch = []
                while ready and ready[0][0] is _ITEM:
                    batch.append(ready.popleft()[1])
                if room is not None and not room.done():
                    room.set_result(None)
                yield batch
                continue
            kind, value = ready.popleft()
            if room is not None and not room.done():
                room.set_result(None)
            if kind is _ITEM:
                yield value
            elif kind is _END:
                return
            else:
                raise value
    finally:
        cut.remove_done_callback(wake)
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader


_ITEM, _END, _ERROR = 0, 1, 2


async def sse_turn_body(
    *,
    encoder: Any,
    pending: list,
    source: AsyncIterator[Any] | None,
    feed: Callable[[Any], list],
    done: Callable[[], bool],
    finish: Callable[[], Awaitable[tuple[list, Any]]],
    keep: Callable[[Any], Awaitable[None]],
    on_end: Callable[[str, GatewayError | None], Awaitable[None]],
    interval: float,
    label: str,
) -> AsyncIterator[bytes]:
    """The response generator of every streamed chat turn (upstream chat and media through chat).

    `encoder` is the family's StreamEncoder; `pending` the pieces produced before the response
    opened; `source` the items still to read (None: nothing more), each turned into pieces by
    `feed` until `done()`; `finish()` gives the tail pieces and the finished turn. `keep(encoder)`
    runs before the last frame (the Responses store); `on_end(status, error)` runs exactly once at
    the end — "ok", "error" or "cancelled" (client gone) — to report the account and write the
    ledger. A failure after the status line becomes the family's mid-stream error event."""
    status = "ok"
    error: GatewayError | None = None
    try:
        first = encoder.feed(pending) if pending else b""
        # The status line goes out now; when nothing is visible yet (a tool call being buffered)
        # the stream still opens the way the family requires (message_start, response.created).
        yield first or encoder.begin()
        if source is not None:
            # Items that arrived together (one network read) go out in one write; nothing waits.
            batches = with_keepalive(source, interval=interval, batches=True)
            try:
                async for batch in batches:
                    if batch is KEEPALIVE:
                        yield encoder.keepalive()
                        continue
                    out = b""
                    for item in batch:
                        pieces = feed(item)
                        if pieces:
                            out += encoder.feed(pieces)
                        if done():
                            break  # max_tokens / stop sequence reached: on_end closes the source
                    if out:
                        yield out
                    if done():
                        break
            finally:
                await batches.aclose()
        tail, result = await finish()
        out = encoder.feed(tail) if tail else b""
        last = encoder.finish(result)
        await keep(encoder)
        yield out + last
    except (asyncio.CancelledError, GeneratorExit):
        status = "cancelled"
        raise
    except GatewayError as exc:
        status, error = "error", exc
        log.info("stream of %s failed after the first byte: %r", label, exc)
        last = encoder.error(exc)
        await keep(encoder)
        yield last
    except Exception:
        log.exception("stream of %s failed", label)
        status, error = "error", InternalError("Internal server error")
        last = encoder.error(error)
        await keep(encoder)
        yield last
    finally:
        await on_end(status, error)
