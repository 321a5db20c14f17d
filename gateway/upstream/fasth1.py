"""An HTTP/1.1 transport for httpx on asyncio protocols, responses parsed by httptools (llhttp, in C).

Wire format: HTTP/1.1 over TCP, or TLS with ALPN `http/1.1`; persistent connections. A request goes
out as one write: the head httpx built (method, target, its headers in order) and the body with the
Content-Length httpx set, or as one chunk plus the last-chunk when httpx framed it `chunked`. A
response is framed by Content-Length, `chunked`, or the connection's close (llhttp decides; a body
delimited by close ends at EOF). `Connection: close` and HTTP/1.0 answers are not reused.

Why (docs/benchmarks.md, "what each change bought"): with httpx's own transport, half of a worker's
CPU on the chat path was httpcore and h11 reading the upstream stream in pure Python (an event and
state-machine step per body chunk, the pool's bookkeeping per request). Here the parser is C and
the pool is a dict of idle lists per origin. httpx stays on top: the same Request/Response objects,
decoders, timeouts (`request.extensions["timeout"]`) and exceptions (ConnectError/ConnectTimeout,
ReadTimeout, WriteError/WriteTimeout, PoolTimeout, RemoteProtocolError), so callers and the error
classification are unchanged.

Used for direct egress (gateway/upstream/transport.py); proxied egress (HTTP CONNECT, SOCKS) stays
on httpx's httpcore transport. HTTP/2 is not spoken here.

Pool: at most `max_connections` open per transport (a request over it waits up to the pool timeout),
at most `max_keepalive_connections` idle, each for `keepalive_expiry` seconds; an idle connection the
server closed (EOF or data seen while idle) is never handed out. `sweep()` closes expired idle ones.
"""
from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import Any

import httptools
import httpx

from gateway.upstream.aionet import ByteProtocol

_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Connection(ByteProtocol):
    """One TCP (or TLS) connection and the response being read on it. The byte-level parts (wakers,
    EOF and loss, write pausing, read backpressure) are aionet's protocol; here the received bytes go
    through llhttp and only the response body is queued for the reader."""

    __slots__ = ("origin", "parser", "status", "reason", "headers", "head_done", "complete", "keep_alive",
                 "idle_since", "delimited", "interim")

    def __init__(self, origin: tuple) -> None:
        super().__init__()
        self.origin = origin
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        """Ready for the next response. Body the consumer left unread (it closed the response after
        the message ended, e.g. past the part it needed) goes with the old one."""
        self.chunks.clear()
        self.buffered = 0
        if self.paused_reading and self.transport is not None:
            self.paused_reading = False
            self.transport.resume_reading()
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = True
        self.interim = False
        self.delimited = False  # Content-Length or chunked: EOF before the end is a truncation

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.complete or self.idle_since:
            # bytes while no response is expected: the server broke the exchange; never reuse
            self.keep_alive = False
            self.error = self.error or httpx.RemoteProtocolError("upstream sent data outside a response")
            self._wake_reader()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = httpx.RemoteProtocolError(f"invalid HTTP response from upstream: {exc}")
            self.keep_alive = False
            if self.transport is not None:
                self.transport.close()
        self._wake_reader()

    # -- httptools callbacks -------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            self.delimited = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # an interim answer (103 Early Hints, an unasked-for 100): the real one follows
            self.headers = []
            self.reason = b""
            self.delimited = False
            self.interim = True
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.buffer(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete = True

    # -- helpers -------------------------------------------------------------------------------

    async def wait(self, timeout: float | None) -> None:
        """Until something arrives (bytes, EOF, an error); httpx.ReadTimeout after `timeout`."""
        loop = asyncio.get_running_loop()
        waiter = self.reader = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if self.reader is waiter:
                self.reader = None

    @property
    def usable(self) -> bool:
        """An idle connection that can take the next request."""
        return (self.keep_alive and not self.eof and self.error is None and self.transport is not None
                and not self.transport.is_closing())

    def close(self) -> None:
        self.keep_alive = False
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("upstream did not send within the read timeout"))


class _ResponseBody(httpx.AsyncByteStream):
    def __init__(self, owner: "FastH1Transport", conn: _Connection, read_timeout: float | None) -> None:
        self._owner = owner
        self._conn = conn
        self._timeout = read_timeout
        self._closed = False

    async def __aiter__(self):
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
                continue
            if conn.complete:
                return
            if conn.error is not None:
                raise _read_error(conn.error)
            if conn.eof:
                if not conn.delimited:
                    return  # a body delimited by the connection's close ends here
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
            if self._closed:
                return
            await conn.wait(self._timeout)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._owner._release(self._conn)


def _read_error(exc: BaseException) -> Exception:
    if isinstance(exc, httpx.HTTPError):
        return exc
    return httpx.ReadError(str(exc) or type(exc).__name__)


class FastH1Transport(httpx.AsyncBaseTransport):
    """The pool: idle connections per origin (most recently used first), a count of open ones."""

    def __init__(self, *, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        self._ssl = ssl_context
        self._max = limits.max_connections or 1 << 30
        self._max_idle = limits.max_keepalive_connections if limits.max_keepalive_connections is not None else self._max
        self._expiry = limits.keepalive_expiry
        self._idle: dict[tuple, list[_Connection]] = {}
        self._n_idle = 0
        self._n_open = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._closed = False

    # -- pool ----------------------------------------------------------------------------------

    def _take_idle(self, origin: tuple) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            self._n_idle -= 1
            if conn.usable and (self._expiry is None or now - conn.idle_since < self._expiry):
                conn.idle_since = 0.0
                return conn
            self._drop(conn)
        return None

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        self._n_open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        """A connection or a slot became free: the longest-waiting request may take it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def _release(self, conn: _Connection) -> None:
        """The response is closed: keep the connection for the next request, or close it."""
        if not (conn.complete and conn.usable) or self._closed:
            self._drop(conn)
            return
        if self._n_idle >= self._max_idle:
            self._drop(conn)
            return
        conn._reset()
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, []).append(conn)
        self._n_idle += 1
        self._wake_one()

    async def _acquire(self, origin: tuple, connect_timeout: float | None, pool_timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        deadline = None if pool_timeout is None else loop.time() + pool_timeout
        while True:
            conn = self._take_idle(origin)
            if conn is not None:
                return conn
            if self._n_open >= self._max and self._n_idle:
                # full, but idle connections to other origins: close the oldest to make room
                oldest = min((c for conns in self._idle.values() for c in conns), key=lambda c: c.idle_since)
                self._idle[oldest.origin].remove(oldest)
                self._n_idle -= 1
                self._drop(oldest)
            if self._n_open < self._max:
                self._n_open += 1
                try:
                    return await self._connect(origin, connect_timeout)
                except BaseException:
                    self._n_open -= 1
                    raise
            waiter = loop.create_future()
            self._waiters.append(waiter)
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise httpx.PoolTimeout("no upstream connection became free within the pool timeout")
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, but leaving (cancelled, timed out): pass the turn on
                else:
                    waiter.cancel()
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout("no upstream connection became free within the pool timeout") from None
                raise

    async def _connect(self, origin: tuple, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = scheme == "https"
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin), host, port,
                    ssl=self._ssl if tls else None, server_hostname=host if tls else None,
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return conn

    def sweep(self, *, idle_all: bool = False) -> int:
        """Close idle connections past their keep-alive expiry, or that the server closed (every idle
        one with `idle_all`). Returns how many closed."""
        now = time.monotonic()
        closed = 0
        for origin, conns in list(self._idle.items()):
            keep = []
            for conn in conns:
                if idle_all or not conn.usable or (self._expiry is not None and now - conn.idle_since >= self._expiry):
                    self._n_idle -= 1
                    self._drop(conn)
                    closed += 1
                else:
                    keep.append(conn)
            if keep:
                conns[:] = keep
            else:
                del self._idle[origin]
        return closed

    @property
    def open_connections(self) -> int:
        return self._n_open

    @property
    def idle_connections(self) -> int:
        return self._n_idle

    # -- httpx.AsyncBaseTransport --------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        # raw_host: the ASCII (IDNA) form, which is what DNS, TLS SNI and certificates use
        origin = (scheme, url.raw_host.decode("ascii"), url.port or _DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        head = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        chunked = False
        for name, value in request.headers.raw:
            head += (name, b": ", value, b"\r\n")
            if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        head.append(b"\r\n")
        if chunked:
            head += ((b"%x\r\n" % len(body)) + body + b"\r\n" if body else b"", b"0\r\n\r\n")
        elif body:
            head.append(body)
        data = b"".join(head)

        conn = await self._acquire(origin, timeouts.get("connect"), timeouts.get("pool"))
        try:
            conn.transport.write(data)
            if conn.writable is not None:
                try:
                    async with asyncio.timeout(timeouts.get("write")):
                        await asyncio.shield(conn.writable)
                except TimeoutError:
                    raise httpx.WriteTimeout("upstream did not take the request within the write timeout") from None
            read_timeout = timeouts.get("read")
            while not conn.head_done:
                if conn.error is not None:
                    raise _read_error(conn.error)
                if conn.eof:
                    raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
                await conn.wait(read_timeout)
            if request.method == "HEAD":
                conn.complete = True
                conn.keep_alive = False  # llhttp would wait for a body the answer to HEAD does not have
        except BaseException:
            self._drop(conn)
            raise
        return httpx.Response(
            status_code=conn.status,
            headers=conn.headers,
            stream=_ResponseBody(self, conn, read_timeout),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": conn.reason},
        )

    async def aclose(self) -> None:
        self._closed = True
        self.sweep(idle_all=True)


def ssl_context(*, verify: bool) -> ssl.SSLContext:
    """httpx's TLS defaults (certifi roots, or no verification), offering only http/1.1 by ALPN."""
    ctx = httpx.create_ssl_context(verify=verify)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
