"""transport.py: proxy URLs, pooled clients, credential-safe redirects — with a real origin server
and a real HTTP forward proxy on 127.0.0.1. The egress pool (choice, health feedback, Proxy rows)
is the core's: core/tests/test_egress.py."""
from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import httpx2
import pytest

from grokweb.tests._config import make_cfg
from grokweb.tests.rawservers import h2_server, self_signed_tls, serve
from grokweb.classify import UpstreamKind, classify_transport
from grokweb import transport
from grokweb.egress import DIRECT, Egress, EgressConfigError, egress_state_reset, proxy_label, proxy_url_normalize
from grokweb.transport import send_with_redirects, upstream_client, ws_connect


@pytest.fixture(autouse=True)
def _fresh_egress_state():
    egress_state_reset()
    yield
    egress_state_reset()


# --------------------------------------------------------------------------------------------
# proxy URLs


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("socks5://u:p@h:1080", "socks5h://u:p@h:1080"), ("SOCKS5://h:1", "socks5h://h:1"), ("socks://h:1", "socks5h://h:1"),
     ("socks4://h:1", "socks4a://h:1"), ("socks5h://h:1", "socks5h://h:1"), ("http://h:3128", "http://h:3128"),
     (" https://u:p@h:443 ", "https://u:p@h:443")],
)
def test_proxy_urls_are_normalised_to_remote_dns_forms(raw, normal):
    assert proxy_url_normalize(raw) == normal


@pytest.mark.parametrize("raw", ["", "h:3128", "ftp://h:1", "http://", "http://h:notaport"])
def test_bad_proxy_urls_are_rejected(raw):
    with pytest.raises(ValueError):
        proxy_url_normalize(raw)


def test_proxy_labels_never_contain_credentials():
    assert proxy_label("socks5h://user:secret@10.0.0.1:1080") == "socks5h://10.0.0.1:1080"
    assert "secret" not in proxy_label("http://user:secret@proxy")


# --------------------------------------------------------------------------------------------
# pooled clients


async def test_clients_are_pooled_per_egress_on_one_loop():
    cfg = make_cfg()
    a = await upstream_client(egress=DIRECT, cfg=cfg)
    assert await upstream_client(egress=DIRECT, cfg=cfg) is a
    b = await upstream_client(egress=Egress("http://127.0.0.1:9", "p"), cfg=cfg)
    assert b is not a
    assert a.follow_redirects is False


def test_each_event_loop_gets_its_own_client():
    cfg = make_cfg()

    async def grab():
        return await upstream_client(egress=DIRECT, cfg=cfg)

    first = asyncio.run(grab())
    second = asyncio.run(grab())
    assert first is not second


async def test_socks4_egress_fails_with_an_actionable_error():
    with pytest.raises(EgressConfigError) as info:
        await upstream_client(egress=Egress("socks4a://h:1", "s4"), cfg=make_cfg())
    assert "SOCKS4" in info.value.message


async def test_websocket_over_socks_without_python_socks_is_a_clear_error():
    try:
        import python_socks  # noqa: F401
        pytest.skip("python-socks is installed")
    except ImportError:
        pass
    with pytest.raises(EgressConfigError):
        ws_connect("ws://127.0.0.1:1/ws", headers={}, egress=Egress("socks5h://127.0.0.1:1080", "s5"))


# --------------------------------------------------------------------------------------------
# the one client stack on scripted servers: HTTP/2 where offered, bounded response heads


def _tls_offering(tmp_path, *protocols: str):
    _certfile, server_ctx = self_signed_tls(tmp_path)
    server_ctx.set_alpn_protocols(list(protocols))
    return server_ctx


async def test_it_speaks_http2_to_a_tls_origin_that_offers_it(tmp_path):
    handler = h2_server([("content-type", "text/plain")], b"over h2")
    async with serve(handler, _tls_offering(tmp_path, "h2", "http/1.1")) as (port, _accepted):
        client = await upstream_client(egress=DIRECT, cfg=make_cfg({"proxy.egress.skip_ssl_verify": True}))
        response = await client.get(f"https://127.0.0.1:{port}/")
    assert (response.http_version, response.text) == ("HTTP/2", "over h2")


async def test_it_speaks_http1_to_a_tls_origin_that_offers_only_http1(tmp_path):
    async def http1(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nover1")
        await writer.drain()
        await reader.read()

    async with serve(http1, _tls_offering(tmp_path, "http/1.1")) as (port, _accepted):
        client = await upstream_client(egress=DIRECT, cfg=make_cfg({"proxy.egress.skip_ssl_verify": True}))
        response = await client.get(f"https://127.0.0.1:{port}/")
    assert (response.http_version, response.text) == ("HTTP/1.1", "over1")


async def test_it_refuses_a_self_signed_origin_unless_verification_is_skipped(tmp_path):
    handler = h2_server([], b"x")
    async with serve(handler, _tls_offering(tmp_path, "h2")) as (port, _accepted):
        client = await upstream_client(egress=DIRECT, cfg=make_cfg())
        with pytest.raises(httpx2.ConnectError) as info:
            await client.get(f"https://127.0.0.1:{port}/")
    assert classify_transport(info.value).kind is UpstreamKind.TRANSPORT


async def test_a_tls_origin_is_reached_through_an_http_connect_proxy_and_still_gets_http2(tmp_path):
    tunnels = []

    async def connect_proxy(reader, writer):
        # an HTTP CONNECT proxy: read the CONNECT head, answer 200, then relay bytes both ways
        head = await reader.readuntil(b"\r\n\r\n")
        tunnels.append(head.split(b"\r\n", 1)[0].decode())
        target = head.split()[1].decode()
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src, dst):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    handler = h2_server([("content-type", "text/plain")], b"tunnelled")
    async with serve(handler, _tls_offering(tmp_path, "h2", "http/1.1")) as (origin_port, _a), \
            serve(connect_proxy) as (proxy_port, _b):
        egress = Egress(f"http://127.0.0.1:{proxy_port}", "connect proxy")
        client = await upstream_client(egress=egress, cfg=make_cfg({"proxy.egress.skip_ssl_verify": True}))
        response = await client.get(f"https://127.0.0.1:{origin_port}/")
    assert tunnels == [f"CONNECT 127.0.0.1:{origin_port} HTTP/1.1"]
    assert (response.http_version, response.text) == ("HTTP/2", "tunnelled")


async def test_an_origin_is_reached_through_a_socks5_proxy_with_remote_dns():
    asked = []

    async def origin(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsocks")
        await writer.drain()
        await reader.read()

    async def socks5(reader, writer):
        # RFC 1928, no authentication, CONNECT only; records the address the client asked for
        _version, n_methods = await reader.readexactly(2)
        await reader.readexactly(n_methods)
        writer.write(b"\x05\x00")
        _version, _cmd, _rsv, atyp = await reader.readexactly(4)
        if atyp == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        else:
            host = ".".join(str(b) for b in await reader.readexactly(4))
        port = int.from_bytes(await reader.readexactly(2), "big")
        asked.append((atyp, host, port))
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x00\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))

        async def pipe(src, dst):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    async with serve(origin) as (origin_port, _a), serve(socks5) as (proxy_port, _b):
        egress = Egress(proxy_url_normalize(f"socks5://127.0.0.1:{proxy_port}"), "socks")
        client = await upstream_client(egress=egress, cfg=make_cfg())
        response = await client.get(f"http://localhost:{origin_port}/")
    assert asked == [(3, "localhost", origin_port)]  # the name went to the proxy: socks5h, DNS there
    assert response.text == "socks"


async def test_an_endless_http1_response_head_is_an_upstream_error_not_memory_growth():
    sent = []

    async def endless_head(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Filler: ")
        try:
            for _ in range(1024):  # up to 64 MiB, far beyond any cap; the client hangs up long before
                writer.write(b"a" * 65536)
                await writer.drain()
                sent.append(65536)
        except (ConnectionError, OSError):
            pass

    async with serve(endless_head) as (port, _accepted):
        client = await upstream_client(egress=DIRECT, cfg=make_cfg())
        with pytest.raises(httpx2.RemoteProtocolError) as info:
            await client.get(f"http://127.0.0.1:{port}/")
    assert classify_transport(info.value, endpoint="/rest/app-chat").kind is UpstreamKind.TRANSPORT
    assert sum(sent) < 16 * 1024 * 1024  # the client stopped reading at its cap (plus socket buffers)


async def test_an_oversized_http2_header_list_is_an_upstream_error(tmp_path):
    handler = h2_server([("x-filler", "a" * (256 * 1024))], b"x")
    async with serve(handler, _tls_offering(tmp_path, "h2")) as (port, _accepted):
        client = await upstream_client(egress=DIRECT, cfg=make_cfg({"proxy.egress.skip_ssl_verify": True}))
        # h2 refuses the header block past the 64 KiB list size httpcore2 announced in its SETTINGS
        with pytest.raises(httpx2.ProtocolError, match="header list larger than 65536") as info:
            await client.get(f"https://127.0.0.1:{port}/")
    assert classify_transport(info.value).kind is UpstreamKind.TRANSPORT


# --------------------------------------------------------------------------------------------
# real servers: an origin that records requests, and an HTTP forward proxy


class _Origin(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        self._handle()

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._handle()

    def _handle(self):
        _Origin.seen.append({"method": self.command, "path": self.path,
                             "headers": {k.lower(): v for k, v in self.headers.items()}})
        path, _, query = self.path.partition("?")
        if path == "/redirect":
            params = dict(parse_qsl(query))
            self.send_response(int(params.get("code", "302")))
            self.send_header("Location", params["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"ok"
        self.send_response(200)
        if path == "/set-cookie":
            self.send_header("Set-Cookie", "sticky=1; Path=/")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def origin():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


class ForwardProxy:
    """A minimal HTTP forward proxy (absolute-form requests for http:// targets), counting requests."""

    def __init__(self):
        self.requests: list[str] = []
        self.server = None

    async def start(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            self.requests.append(f"{method} {target}")
            url = httpx2.URL(target)
            length = 0
            out_headers = []
            for line in lines[1:]:
                if not line:
                    continue
                name, value = line.split(":", 1)
                if name.lower() == "content-length":
                    length = int(value)
                if name.lower() in ("proxy-connection", "connection", "keep-alive"):
                    continue
                out_headers.append(f"{name}:{value}")
            body = await reader.readexactly(length) if length else b""
            up_reader, up_writer = await asyncio.open_connection(url.host, url.port or 80)
            path = url.raw_path.decode()
            up_writer.write((f"{method} {path} HTTP/1.1\r\n" + "\r\n".join(out_headers) + "\r\nConnection: close\r\n\r\n").encode("latin-1") + body)
            await up_writer.drain()
            response = await up_reader.read()
            up_writer.close()
            writer.write(response)
            await writer.drain()
        finally:
            writer.close()

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()


async def test_the_cookie_jar_never_replays_set_cookie(origin):
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    await client.get(f"http://127.0.0.1:{origin}/set-cookie")
    _Origin.seen.clear()
    await client.get(f"http://127.0.0.1:{origin}/plain")
    assert "cookie" not in _Origin.seen[-1]["headers"]


async def test_redirect_within_credentialed_origins_keeps_credentials(origin):
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    base = f"http://127.0.0.1:{origin}"
    request = client.build_request("GET", f"{base}/redirect?to={base}/target", headers={"Cookie": "sso=s", "x-statsig-id": "v"})
    _Origin.seen.clear()
    response, still = await send_with_redirects(client, request, credentialed=lambda u: u.host == "127.0.0.1")
    await response.aclose()
    assert still is True
    assert _Origin.seen[-1]["path"] == "/target"
    assert _Origin.seen[-1]["headers"]["cookie"] == "sso=s"


async def test_redirect_to_another_origin_drops_cookie_and_grok_headers(origin):
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    request = client.build_request(
        "GET", f"http://127.0.0.1:{origin}/redirect?to=http://localhost:{origin}/elsewhere",
        headers={"Cookie": "sso=s; sso-rw=s", "x-statsig-id": "v", "x-xai-request-id": "r", "Origin": "http://127.0.0.1",
                 "Referer": "http://127.0.0.1/", "User-Agent": "UA"},
    )
    _Origin.seen.clear()
    response, still = await send_with_redirects(client, request, credentialed=lambda u: u.host == "127.0.0.1")
    await response.aclose()
    assert still is False
    hop = _Origin.seen[-1]
    assert hop["path"] == "/elsewhere" and hop["headers"]["host"] == f"localhost:{origin}"
    assert not {"cookie", "x-statsig-id", "x-xai-request-id", "origin", "referer"} & set(hop["headers"])
    assert hop["headers"]["user-agent"] == "UA"


async def test_redirect_of_a_request_body_to_another_origin_is_refused(origin):
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    request = client.build_request(
        "POST", f"http://127.0.0.1:{origin}/redirect?code=307&to=http://localhost:{origin}/steal",
        headers={"Cookie": "sso=s"}, content=b'{"secret":1}',
    )
    with pytest.raises(transport.RedirectRefused):
        await send_with_redirects(client, request, credentialed=lambda u: u.host == "127.0.0.1")


async def test_redirect_loops_are_capped(origin):
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    base = f"http://127.0.0.1:{origin}"
    request = client.build_request("GET", f"{base}/redirect?to={base}/redirect%3Fto%3D/x")
    # /redirect?to=/redirect?to=/x → /x after two hops: allowed with max 3, refused with max 1
    _Origin.seen.clear()
    response, _ = await send_with_redirects(client, request, credentialed=lambda u: True, max_redirects=3)
    await response.aclose()
    assert [hop["path"].split("?")[0] for hop in _Origin.seen] == ["/redirect", "/redirect", "/x"]
    with pytest.raises(transport.RedirectRefused):
        await send_with_redirects(client, client.build_request("GET", f"{base}/redirect?to={base}/redirect%3Fto%3D/x"),
                                  credentialed=lambda u: True, max_redirects=1)


# --------------------------------------------------------------------------------------------
# idle workers close their kept-alive connections (grok2api/memory.py)


async def test_closing_idle_clients_closes_kept_alive_connections_and_the_next_call_gets_a_new_client():
    closed_by_client = asyncio.Event()

    async def keep_alive(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except asyncio.IncompleteReadError:  # end of stream: the client closed the connection
            closed_by_client.set()

    cfg = make_cfg()
    async with serve(keep_alive) as (port, accepted):
        client = await upstream_client(egress=DIRECT, cfg=cfg)
        assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
        assert len(accepted) == 1 and not closed_by_client.is_set()  # kept alive in the pool

        assert await transport.transport_aclose() == 1
        await asyncio.wait_for(closed_by_client.wait(), 5)  # a bound for a hung test
        assert client.is_closed

        again = await upstream_client(egress=DIRECT, cfg=cfg)
        assert again is not client
        assert (await again.get(f"http://127.0.0.1:{port}/")).text == "ok"
    await transport.transport_aclose()
