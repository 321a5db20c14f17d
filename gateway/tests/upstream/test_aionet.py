"""aionet.py: the asyncio network backend under httpx's own upstream transport (proxied egress, and
UPSTREAM_HTTP=httpx) — keep-alive reuse, a server closing an idle connection, timeouts, connect
failures, TLS, write coalescing, read backpressure and EOF, all on real sockets on 127.0.0.1
(gateway/tests/upstream/rawservers.py)."""
from __future__ import annotations

import asyncio
import os
import socket
import ssl

import httpcore
import httpx
import pytest

from gateway.tests.upstream.rawservers import eventually, never_answer, self_signed_tls, serve
from gateway.upstream import aionet
from gateway.upstream.aionet import AsyncioBackend, AsyncioStream
from gateway.upstream.transport import _build_upstream_client

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def http_ok(*, close_when: asyncio.Event | None = None, seen: list | None = None):
    """An HTTP/1.1 server answering every GET with RESPONSE, kept alive; with `close_when` it closes
    the connection after the first answer once that event is set."""
    async def handle(reader, writer):
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if seen is not None:
                seen.append(head)
            writer.write(RESPONSE)
            await writer.drain()
            if close_when is not None:
                await close_when.wait()
                return
    return handle


def pooled_streams(client: httpx.AsyncClient) -> list:
    return [conn._connection._network_stream for conn in client._transport._pool.connections]


async def read_exactly(stream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.read(65536, timeout=5)
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return data


@pytest.fixture
def tls(tmp_path):
    return self_signed_tls(tmp_path)


class Opened:
    """Upstream clients and raw backend streams for one test, all closed at teardown."""

    def __init__(self) -> None:
        self.closers: list = []

    def client(self, verify: bool = True) -> httpx.AsyncClient:
        client = _build_upstream_client(None, verify, impl="httpx")
        self.closers.append(client.aclose)
        return client

    async def stream(self, port: int) -> AsyncioStream:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        self.closers.append(stream.aclose)
        return stream


@pytest.fixture
async def opened():
    opened = Opened()
    yield opened
    for close in reversed(opened.closers):
        await close()


# --------------------------------------------------------------------------------------------
# through the pooled upstream client


async def test_upstream_client_reuses_one_kept_alive_connection_through_the_asyncio_backend(opened):
    client = opened.client()
    assert isinstance(client._transport._pool._network_backend, AsyncioBackend)
    async with serve(http_ok()) as (port, accepted):
        first = await client.get(f"http://127.0.0.1:{port}/a")
        second = await client.get(f"http://127.0.0.1:{port}/b")
        assert (first.status_code, first.text, second.status_code, second.text) == (200, "ok", 200, "ok")
        assert len(accepted) == 1
        streams = pooled_streams(client)
        assert len(streams) == 1 and isinstance(streams[0], AsyncioStream)


async def test_upstream_client_opens_a_new_connection_when_the_server_closed_the_idle_one(opened):
    close_now = asyncio.Event()
    client = opened.client()
    async with serve(http_ok(close_when=close_now)) as (port, accepted):
        assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
        (stream,) = pooled_streams(client)  # idle in the pool, still open
        close_now.set()
        await eventually(lambda: stream._protocol.eof, "the client saw the server's FIN")
        again = await client.get(f"http://127.0.0.1:{port}/")
        assert (again.status_code, again.text) == (200, "ok")
        assert len(accepted) == 2


async def test_stream_is_readable_once_the_peer_closed(opened):
    close_now = asyncio.Event()

    async def close_on_signal(reader, writer):
        await close_now.wait()

    async with serve(close_on_signal) as (port, _):
        stream = await opened.stream(port)
        await asyncio.sleep(0)
        assert stream.get_extra_info("is_readable") is False
        close_now.set()
        await eventually(lambda: stream.get_extra_info("is_readable") is True, "is_readable after FIN")


async def test_a_silent_server_makes_read_time_out(opened):
    async with serve(never_answer) as (port, accepted):
        with pytest.raises(httpcore.ReadTimeout):
            await (await opened.stream(port)).read(100, timeout=0.2)
        with pytest.raises(httpx.ReadTimeout):
            await opened.client().get(f"http://127.0.0.1:{port}/", timeout=httpx.Timeout(0.3))
        assert len(accepted) == 2


async def test_connecting_to_a_closed_port_is_a_connect_error(opened):
    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(httpcore.ConnectError):
        await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
    with pytest.raises(httpx.ConnectError):
        await opened.client().get(f"http://127.0.0.1:{port}/")


# --------------------------------------------------------------------------------------------
# TLS


async def test_https_works_without_verification_and_fails_verification_of_a_self_signed_cert(opened, tls):
    async with serve(http_ok(), tls[1]) as (port, _):
        unverified = opened.client(verify=False)
        response = await unverified.get(f"https://127.0.0.1:{port}/")
        assert (response.status_code, response.text) == (200, "ok")
        assert pooled_streams(unverified)[0].get_extra_info("ssl_object") is not None
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await opened.client(verify=True).get(f"https://127.0.0.1:{port}/")


async def test_start_tls_with_a_trusting_context_round_trips_a_request(opened, tls):
    seen: list[bytes] = []
    client_ctx = ssl.create_default_context(cafile=tls[0])
    async with serve(http_ok(seen=seen), tls[1]) as (port, _):
        plain = await opened.stream(port)
        assert plain.get_extra_info("ssl_object") is None
        stream = await plain.start_tls(client_ctx, server_hostname="127.0.0.1", timeout=5)
        opened.closers.append(stream.aclose)
        assert stream.get_extra_info("ssl_object") is not None
        await stream.write(REQUEST, timeout=5)
        assert await read_exactly(stream, len(RESPONSE)) == RESPONSE
        assert seen == [REQUEST]


async def test_a_tls_handshake_that_never_completes_is_a_connect_timeout(opened):
    async with serve(never_answer) as (port, _):
        stream = await opened.stream(port)
        with pytest.raises(httpcore.ConnectTimeout):
            await stream.start_tls(ssl.create_default_context(), server_hostname="127.0.0.1", timeout=0.2)
        with pytest.raises(httpx.ConnectTimeout):
            await opened.client(verify=False).get(f"https://127.0.0.1:{port}/", timeout=httpx.Timeout(0.3))


# --------------------------------------------------------------------------------------------
# writing and reading at the stream


class CountingTransport:
    """Forwards everything to the real transport and records each write() call."""

    def __init__(self, inner):
        self._inner = inner
        self.writes: list[bytes] = []

    def write(self, data) -> None:
        self.writes.append(bytes(data))
        self._inner.write(data)

    def __getattr__(self, name):
        return getattr(self._inner, name)


async def test_writes_of_one_loop_turn_reach_the_transport_as_one_write(opened):
    head, body = b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n", b"body"
    received = asyncio.get_running_loop().create_future()

    async def capture(reader, writer):
        received.set_result(await reader.readexactly(len(head + body)))
        await reader.read()

    async with serve(capture) as (port, _):
        stream = await opened.stream(port)
        counting = stream._transport = CountingTransport(stream._transport)
        await stream.write(head, timeout=5)
        await stream.write(body, timeout=5)
        assert await asyncio.wait_for(received, 5) == head + body
        assert counting.writes == [head + body]


async def test_an_unread_flood_pauses_the_socket_and_arrives_complete_and_in_order(opened):
    payload = os.urandom(3 * 1024 * 1024)
    assert len(payload) > 2 * aionet.READ_BUFFER_HIGH

    async def flood(reader, writer):
        writer.write(payload)
        await writer.drain()

    async with serve(flood) as (port, _):
        stream = await opened.stream(port)
        protocol = stream._protocol
        await eventually(lambda: protocol.paused_reading, "reading paused")
        assert stream._transport.is_reading() is False
        assert protocol.buffered < len(payload)
        assert await read_exactly(stream, len(payload)) == payload
        assert await stream.read(65536, timeout=5) == b""
        assert protocol.paused_reading is False


async def test_read_returns_the_data_then_empty_bytes_at_eof(opened):
    async def abc_then_close(reader, writer):
        writer.write(b"abc")
        await writer.drain()

    async with serve(abc_then_close) as (port, _):
        stream = await opened.stream(port)
        assert await stream.read(100, timeout=5) == b"abc"
        assert await stream.read(100, timeout=5) == b""
        assert await stream.read(100, timeout=5) == b""
