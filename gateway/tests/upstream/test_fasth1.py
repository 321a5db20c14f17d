"""fasth1.py: the HTTP/1.1 transport of direct upstream calls — framing (Content-Length, chunked,
close-delimited), chunks handed on as they arrive, keep-alive reuse and its limits, a server that
closes or breaks a connection, timeouts, TLS, and the request bytes on the wire. Real sockets on
127.0.0.1: scripted asyncio servers (rawservers.py) and the simulator."""
from __future__ import annotations

import asyncio
import gzip
import socket
import ssl

import httpx
import pytest

from gateway.tests.upstream.rawservers import eventually, never_answer, self_signed_tls, serve
from gateway.upstream import transport
from gateway.upstream.fasth1 import FastH1Transport, ssl_context
from gateway.upstream.transport import DIRECT, upstream_client
from gateway.tests.upstream._config import make_cfg


def client_for(limits: httpx.Limits | None = None, *, verify: bool = True, timeout: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=FastH1Transport(ssl_context=ssl_context(verify=verify), limits=limits or httpx.Limits()),
        timeout=timeout,
    )


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request (head, body) as the server saw it; the body by Content-Length or chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    body = b""
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    return head, body


def answering(*responses: bytes, seen: list | None = None, then_close: bool = False):
    """Answer the connection's requests with `responses` in turn (kept alive unless `then_close`)."""
    async def handle(reader, writer):
        for response in responses:
            try:
                request = await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if seen is not None:
                seen.append(request)
            writer.write(response)
            await writer.drain()
        if not then_close:
            await reader.read()
    return handle


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# --------------------------------------------------------------------------------------------
# framing


async def test_a_content_length_body_is_read_and_the_connection_is_reused():
    async with serve(answering(OK, OK, OK)) as (port, accepted):
        async with client_for() as client:
            for _ in range(3):
                response = await client.get(f"http://127.0.0.1:{port}/x")
                assert (response.status_code, response.text) == (200, "ok")
            assert len(accepted) == 1
            assert client._transport.idle_connections == 1


async def test_chunks_are_handed_on_as_they_arrive_not_when_the_body_ends():
    second_chunk = asyncio.Event()

    async def handle(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
                     b"6\r\n{\"a\":1\r\n")
        await writer.drain()
        await second_chunk.wait()
        writer.write(b"2\r\n}\n\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with serve(handle) as (port, _):
        async with client_for() as client:
            async with client.stream("POST", f"http://127.0.0.1:{port}/chat", content=b"{}") as response:
                chunks = response.aiter_bytes()
                assert await chunks.__anext__() == b'{"a":1'  # while the server still holds the rest
                second_chunk.set()
                assert [c async for c in chunks] == [b"}\n"]
            assert client._transport.idle_connections == 1  # the chunked body ended cleanly: kept


async def test_a_body_delimited_by_the_connection_close_ends_at_eof_and_is_not_reused():
    async with serve(answering(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", then_close=True)) as (port, _):
        async with client_for() as client:
            response = await client.get(f"http://127.0.0.1:{port}/")
            assert response.text == "all of it"
            assert client._transport.idle_connections == 0 and client._transport.open_connections == 0


async def test_an_http_1_0_answer_is_not_reused():
    async with serve(answering(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")) as (port, _):
        async with client_for() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
            assert client._transport.open_connections == 0


async def test_a_gzip_body_is_decoded_by_httpx_as_usual():
    packed = gzip.compress(b'{"hello":"world"}')
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed) + packed
    async with serve(answering(answer)) as (port, _):
        async with client_for() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).json() == {"hello": "world"}


async def test_an_interim_103_answer_is_skipped_for_the_real_one():
    answer = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + OK
    async with serve(answering(answer, OK)) as (port, accepted):
        async with client_for() as client:
            response = await client.get(f"http://127.0.0.1:{port}/")
            assert (response.status_code, response.text, response.headers.get("link")) == (200, "ok", None)
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
            assert len(accepted) == 1


async def test_the_request_goes_out_as_httpx_built_it():
    seen: list = []
    async with serve(answering(OK, OK, seen=seen)) as (port, _):
        async with client_for() as client:
            await client.post(f"http://127.0.0.1:{port}/rest/app-chat?x=1%202", content=b'{"message":"hi"}',
                              headers={"Cookie": "sso=abc", "X-Order": "1"})

            async def body():
                yield b"part one, "
                yield b"part two"

            await client.post(f"http://127.0.0.1:{port}/upload", content=body())
    (head, payload), (head2, payload2) = seen
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /rest/app-chat?x=1%202 HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}" in lines and "Cookie: sso=abc" in lines and "X-Order: 1" in lines
    assert "Content-Length: 16" in lines and payload == b'{"message":"hi"}'
    assert b"Transfer-Encoding: chunked" in head2 and payload2 == b"part one, part two"


async def test_a_head_request_returns_the_headers_and_does_not_wait_for_a_body():
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: image/jpeg\r\n\r\n"
    async with serve(answering(answer)) as (port, _):
        async with client_for() as client:
            response = await client.head(f"http://127.0.0.1:{port}/img.jpg")
            assert response.status_code == 200 and response.headers["content-length"] == "1234"
            assert response.content == b""


async def test_a_complete_body_left_unread_is_not_seen_by_the_next_request():
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nfirst body!"
    async with serve(answering(first, OK)) as (port, accepted):
        async with client_for() as client:
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
                conn = response.stream._stream._conn  # httpx wraps our body stream (BoundAsyncStream)
                await eventually(lambda: conn.complete, "the whole body arrived")
            # closed without reading: the message had ended, so the connection is kept, empty
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
            assert len(accepted) == 1


# --------------------------------------------------------------------------------------------
# broken exchanges and timeouts


async def test_eof_in_the_middle_of_a_body_is_a_remote_protocol_error():
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"
    async with serve(answering(answer, then_close=True)) as (port, _):
        async with client_for() as client:
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
                with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection"):
                    await response.aread()
            assert client._transport.open_connections == 0


async def test_eof_before_the_answer_is_a_remote_protocol_error():
    async def hang_up(reader, writer):
        await read_request(reader)

    async with serve(hang_up) as (port, _):
        async with client_for() as client:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await client.get(f"http://127.0.0.1:{port}/")


async def test_an_invalid_answer_is_a_remote_protocol_error():
    async with serve(answering(b"HTTP/1.1 abc nonsense\r\n\r\n")) as (port, _):
        async with client_for() as client:
            with pytest.raises(httpx.RemoteProtocolError, match="invalid HTTP response"):
                await client.get(f"http://127.0.0.1:{port}/")


async def test_a_silent_server_is_a_read_timeout_and_the_connection_is_dropped():
    async with serve(never_answer) as (port, _):
        async with client_for(timeout=0.2) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"http://127.0.0.1:{port}/")
            assert client._transport.open_connections == 0


async def test_a_stalled_body_is_a_read_timeout():
    async def stall(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await reader.read()

    async with serve(stall) as (port, _):
        async with client_for(timeout=0.2) as client:
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
                with pytest.raises(httpx.ReadTimeout):
                    await response.aread()


async def test_connecting_to_a_closed_port_is_a_connect_error():
    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with client_for() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")
        assert client._transport.open_connections == 0


async def test_a_response_closed_before_its_end_closes_the_connection():
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"
    async with serve(answering(answer, OK)) as (port, accepted):
        async with client_for() as client:
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
                await response.aiter_bytes().__anext__()
            assert client._transport.open_connections == 0
            await eventually(lambda: accepted[0].is_closing() or accepted[0].transport.is_closing(), "server saw the close")


# --------------------------------------------------------------------------------------------
# the pool


async def test_an_idle_connection_the_server_closed_is_never_handed_out():
    async with serve(answering(OK, then_close=True)) as (port, accepted):
        async with client_for() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
            (conn,) = client._transport._idle[("http", "127.0.0.1", port)]
            await eventually(lambda: conn.eof, "the client saw the server's close")
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
            assert len(accepted) == 2


async def test_requests_over_max_connections_wait_for_a_free_one():
    async with serve(answering(*[OK] * 20)) as (port, accepted):
        async with client_for(httpx.Limits(max_connections=2, max_keepalive_connections=2)) as client:
            results = await asyncio.gather(*(client.get(f"http://127.0.0.1:{port}/") for _ in range(12)))
            assert [r.text for r in results] == ["ok"] * 12
            assert len(accepted) == 2 and client._transport.open_connections == 2


async def test_waiting_longer_than_the_pool_timeout_is_a_pool_timeout():
    async with serve(never_answer) as (port, _):
        client = httpx.AsyncClient(transport=FastH1Transport(ssl_context=ssl_context(verify=True),
                                                             limits=httpx.Limits(max_connections=1)),
                                   timeout=httpx.Timeout(5.0, pool=0.2))
        async with client:
            first = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/"))
            await eventually(lambda: client._transport.open_connections == 1, "the first request holds the connection")
            with pytest.raises(httpx.PoolTimeout):
                await client.get(f"http://127.0.0.1:{port}/")
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            assert client._transport.open_connections == 0


async def test_idle_connections_above_the_keep_alive_slots_are_closed():
    async with serve(answering(*[OK] * 5)) as (port, _):
        async with client_for(httpx.Limits(max_connections=10, max_keepalive_connections=2)) as client:
            opened = [await client.send(client.build_request("GET", f"http://127.0.0.1:{port}/"), stream=True)
                      for _ in range(5)]
            assert client._transport.open_connections == 5
            for response in opened:
                await response.aread()
                await response.aclose()
            assert client._transport.idle_connections == 2 and client._transport.open_connections == 2


async def test_the_sweep_closes_expired_idle_connections_and_every_one_with_idle_all():
    async with serve(answering(*[OK] * 5)) as (port, _):
        async with client_for(httpx.Limits(keepalive_expiry=0.1)) as client:
            await client.get(f"http://127.0.0.1:{port}/")
            assert client._transport.sweep() == 0
            await asyncio.sleep(0.15)
            assert client._transport.sweep() == 1 and client._transport.open_connections == 0
            await client.get(f"http://127.0.0.1:{port}/")
            assert client._transport.sweep(idle_all=True) == 1


async def test_upstream_sweep_reaches_the_direct_client(simulator_server, settings):
    settings.UPSTREAM_HTTP = "fast"
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    assert isinstance(client._transport, FastH1Transport)
    assert (await client.get(f"{simulator_server.url}/__sim/knobs")).status_code == 200
    assert await transport.upstream_sweep() == 0
    assert await transport.upstream_sweep(idle_all=True) == 1
    assert client._transport.open_connections == 0


def test_proxied_egress_and_upstream_http_httpx_use_httpx_own_transport():
    assert isinstance(transport._build_upstream_client(None, True, impl="fast")._transport, FastH1Transport)
    for proxy, impl in ((None, "httpx"), ("http://127.0.0.1:9", "fast"), ("socks5://127.0.0.1:9", "fast")):
        assert isinstance(transport._build_upstream_client(proxy, True, impl=impl)._transport, httpx.AsyncHTTPTransport)


# --------------------------------------------------------------------------------------------
# TLS


async def test_https_works_without_verification_and_fails_verification_of_a_self_signed_cert(tmp_path):
    _, server_ctx = self_signed_tls(tmp_path)
    async with serve(answering(OK, OK), server_ctx) as (port, _):
        async with client_for(verify=False) as client:
            response = await client.get(f"https://127.0.0.1:{port}/")
            assert (response.status_code, response.text) == (200, "ok")
            (conn,) = client._transport._idle[("https", "127.0.0.1", port)]
            assert conn.transport.get_extra_info("ssl_object").selected_alpn_protocol() in (None, "http/1.1")
        async with client_for(verify=True) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"https://127.0.0.1:{port}/")


async def test_https_verified_by_a_trusting_context_reuses_its_connection(tmp_path):
    certfile, server_ctx = self_signed_tls(tmp_path)
    trusting = ssl.create_default_context(cafile=certfile)
    async with serve(answering(OK, OK), server_ctx) as (port, accepted):
        client = httpx.AsyncClient(transport=FastH1Transport(ssl_context=trusting, limits=httpx.Limits()), timeout=5)
        async with client:
            assert [(await client.get(f"https://127.0.0.1:{port}/")).text for _ in range(2)] == ["ok", "ok"]
            assert len(accepted) == 1
