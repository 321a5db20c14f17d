"""An asyncio-native network backend for httpcore (the connections under the upstream httpx clients).

Wire format: bytes over TCP, optionally TLS (asyncio's `loop.start_tls`, native in uvloop), as
httpcore's `AsyncNetworkBackend` / `AsyncNetworkStream` interface defines it: `read(max_bytes,
timeout)` returns b"" at EOF; `write(buffer, timeout)`; `start_tls(...)` returns a new stream;
`get_extra_info("ssl_object" | "client_addr" | "server_addr" | "socket" | "is_readable")`.
Failures are httpcore's own exceptions (ConnectError/ConnectTimeout, ReadError/ReadTimeout,
WriteError/WriteTimeout), which httpx maps to its exceptions as usual.

Why not httpcore's default (anyio) backend — measured in docs/benchmarks.md "what each change
bought": per read and per write anyio enters a cancel scope for the timeout and yields to the event
loop once more (a checkpoint), and for TLS it runs OpenSSL through Python-level memory BIOs. This
backend instead:
- keeps received data in the protocol and returns it without suspending when it is there;
- times a read out with one timer handle instead of a cancel scope;
- coalesces the writes of one event-loop turn into one `transport.write` (httpcore writes a
  request's head and body separately: one send syscall, one TCP segment instead of two);
- answers "is_readable" (httpcore's check that an idle kept-alive connection is still usable) from
  what the protocol saw, without a select() call;
- uses the event loop's TLS transport.
Backpressure both ways: reading pauses when READ_BUFFER_HIGH bytes wait unread, writing waits
while the transport is paused.
"""
from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any, Iterable

import httpcore

READ_BUFFER_HIGH = 1 << 20  # pause the socket when this much waits unread (a slow consumer)


class ByteProtocol(asyncio.Protocol):
    """Received bytes queued for one reader (woken by a future), EOF and errors kept, writing paused
    while the transport asks; also the base of gateway/upstream/fasth1.py's connections."""

    __slots__ = ("transport", "chunks", "buffered", "eof", "error", "reader", "writable", "paused_reading")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        self.reader: asyncio.Future | None = None
        self.writable: asyncio.Future | None = None  # set while the transport is paused for writing
        self.paused_reading = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer(data)
        self._wake_reader()

    def buffer(self, data: bytes) -> None:
        """Queue received bytes for the reader; pause the socket while too much waits unread."""
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > READ_BUFFER_HIGH and not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close our side too: HTTP never half-closes

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        if exc is not None and self.error is None:
            self.error = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        if self.writable is None or self.writable.done():
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    def _wake_reader(self) -> None:
        waiter, self.reader = self.reader, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter, self.writable = self.writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self, max_bytes: int | None = None) -> bytes:
        """The oldest queued bytes (at most `max_bytes` of them); reading resumes once drained."""
        chunk = self.chunks.popleft()
        if max_bytes is not None and len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            self.chunks.appendleft(rest)
        self.buffered -= len(chunk)
        if self.paused_reading and self.buffered <= READ_BUFFER_HIGH // 4 and self.transport is not None:
            self.paused_reading = False
            self.transport.resume_reading()
        return chunk


def _expire(waiter: asyncio.Future, exc_type: type[Exception]) -> None:
    if not waiter.done():
        waiter.set_exception(exc_type("timed out"))


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: ByteProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._closed = False

    # -- reading -------------------------------------------------------------------------------

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        while not protocol.chunks:
            if protocol.error is not None:
                raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
            if protocol.eof or self._closed:
                return b""
            waiter = self._loop.create_future()
            protocol.reader = waiter
            timer = self._loop.call_later(timeout, _expire, waiter, httpcore.ReadTimeout) if timeout is not None else None
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                if protocol.reader is waiter:
                    protocol.reader = None
        return protocol.take(max_bytes)

    # -- writing -------------------------------------------------------------------------------

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._closed or self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        if not self._pending:
            # The first write of this event-loop turn: the ones that follow before the loop runs
            # again (a request's body right after its head) go out with it in one write.
            self._loop.call_soon(self._flush)
        self._pending.append(buffer)
        waiter = self._protocol.writable
        if waiter is not None:  # the transport asked us to pause: wait until it drained
            timer = self._loop.call_later(timeout, _expire, waiter, httpcore.WriteTimeout) if timeout is not None else None
            try:
                await asyncio.shield(waiter)
            finally:
                if timer is not None:
                    timer.cancel()
            if self._protocol.error is not None:
                raise httpcore.WriteError(str(self._protocol.error) or type(self._protocol.error).__name__)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    # -- the rest of the interface -------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._flush()
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self._flush()
        try:
            # Our own deadline, not start_tls's ssl_handshake_timeout: an expired handshake timeout
            # surfaces as ConnectionAbortedError (asyncio and uvloop), which is not a timeout.
            async with asyncio.timeout(timeout):
                transport = await self._loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname,
                )
        except TimeoutError as exc:
            self._transport.abort()
            raise httpcore.ConnectTimeout(str(exc) or "TLS handshake timed out") from exc
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # An idle HTTP/1.1 connection that has data or an EOF waiting was closed (or broken)
            # by the server: httpcore then drops it instead of reusing it.
            protocol = self._protocol
            return bool(protocol.chunks) or protocol.eof or protocol.error is not None
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(ByteProtocol, host, port, local_addr=local)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(ByteProtocol, path)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connecting to {path} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

