"""transport.py: proxy URLs, egress choice and health feedback, pooled clients, credential-safe
redirects — with a real origin server and a real HTTP forward proxy on 127.0.0.1."""
from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import httpx
import pytest

from gateway.tests.upstream._config import make_cfg
from gateway.upstream import transport
from gateway.upstream.transport import (
    DIRECT,
    Egress,
    EgressConfigError,
    egress_candidates,
    egress_choose,
    egress_flush,
    egress_report,
    proxy_label,
    proxy_url_normalize,
    send_with_redirects,
    upstream_client,
    ws_connect,
)


@pytest.fixture(autouse=True)
def _fresh_egress_state():
    transport._egress_reset_for_tests()
    yield
    transport._egress_reset_for_tests()


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
# egress choice


def test_direct_mode_has_no_proxy():
    assert egress_choose(cfg=make_cfg()) == DIRECT


def test_single_proxy_mode_uses_the_configured_url():
    cfg = make_cfg({"proxy.egress.mode": "single_proxy", "proxy.egress.proxy_url": "socks5://u:p@10.0.0.9:1080"})
    egress = egress_choose(cfg=cfg)
    assert egress.proxy_url == "socks5h://u:p@10.0.0.9:1080"
    assert egress.label == "socks5h://10.0.0.9:1080"


def test_single_proxy_mode_without_a_url_is_a_clear_error():
    with pytest.raises(EgressConfigError) as info:
        egress_choose(cfg=make_cfg({"proxy.egress.mode": "single_proxy"}))
    assert "proxy.egress.proxy_url" in info.value.message


def _pool_cfg(*urls):
    return make_cfg({"proxy.egress.mode": "proxy_pool", "proxy.egress.proxy_pool": list(urls)})


@pytest.mark.django_db
def test_pool_is_sticky_until_a_failure_rotates_it():
    cfg = _pool_cfg("http://p1:1", "http://p2:2", "http://p3:3")
    transport.proxies_snapshot.refresh_now()
    first = egress_choose(cfg=cfg)
    assert first.proxy_url == "http://p1:1"
    egress_report(egress=first, ok=True)
    assert egress_choose(cfg=cfg) == first  # sticky
    egress_report(egress=first, ok=False, error="connect refused")
    second = egress_choose(cfg=cfg)
    assert second.proxy_url == "http://p2:2"
    assert egress_choose(cfg=cfg) == second


@pytest.mark.django_db
def test_a_proxy_failing_repeatedly_is_skipped_for_a_while():
    cfg = _pool_cfg("http://p1:1", "http://p2:2")
    transport.proxies_snapshot.refresh_now()
    bad = Egress("http://p1:1", "p1")
    for _ in range(transport.FAIL_STREAK_DOWN):
        egress_report(egress=bad, ok=False)
    choices = {egress_choose(cfg=cfg).proxy_url for _ in range(5)}
    assert choices == {"http://p2:2"}


@pytest.mark.django_db
def test_pool_includes_enabled_proxy_rows_and_feeds_back_their_health():
    from accounts.models import Proxy

    row = Proxy.objects.create(url="socks5://user:pw@10.9.9.9:1080", label="office")
    Proxy.objects.create(url="http://10.8.8.8:3128", label="disabled", enabled=False)
    transport.proxies_snapshot.refresh_now()
    cfg = _pool_cfg("http://p1:1")
    candidates = egress_candidates(cfg=cfg)
    assert [c.proxy_url for c in candidates] == ["http://p1:1", "socks5h://user:pw@10.9.9.9:1080"]
    office = candidates[1]
    assert office.proxy_id == row.pk and office.label == "office"

    egress_report(egress=office, ok=True)
    for _ in range(transport.FAIL_STREAK_DOWN):
        egress_report(egress=office, ok=False, error="proxy refused")
    row.refresh_from_db()
    assert (row.success_count, row.fail_count) == (0, 0)  # nothing written on the request path
    assert egress_flush() == 1
    row.refresh_from_db()
    assert (row.success_count, row.fail_count, row.healthy, row.last_error) == (1, 3, False, "proxy refused")
    assert row.last_used_at is not None and row.last_fail_at is not None
    assert egress_flush() == 0  # buffer drained


@pytest.mark.django_db
def test_empty_pool_is_a_clear_error():
    transport.proxies_snapshot.refresh_now()
    with pytest.raises(EgressConfigError):
        egress_choose(cfg=_pool_cfg())


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
# idle connection sweep (a real socket to the simulator)


@pytest.fixture
def httpx_transport(settings):
    """Direct egress on httpx's own transport (UPSTREAM_HTTP=httpx): these tests look inside its
    httpcore pool (the one-pass assignment, which proxied egress uses too)."""
    settings.UPSTREAM_HTTP = "httpx"


def _pool(client: httpx.AsyncClient):
    return client._transport._pool


async def test_sweep_keeps_an_idle_connection_whose_keep_alive_has_not_expired(httpx_transport, simulator_server):
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    assert (await client.get(f"{simulator_server.url}/__sim/knobs")).status_code == 200
    (conn,) = _pool(client).connections
    assert conn.is_idle()
    assert await transport.upstream_sweep() == 0
    assert _pool(client).connections == [conn] and not conn.is_closed()
    await client.get(f"{simulator_server.url}/__sim/knobs")
    assert _pool(client).connections == [conn]  # and it is still reused


async def test_sweep_closes_connections_whose_keep_alive_expired(httpx_transport, simulator_server, monkeypatch):
    monkeypatch.setattr(transport, "UPSTREAM_LIMITS", httpx.Limits(max_connections=8, keepalive_expiry=0.2))
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    await client.get(f"{simulator_server.url}/__sim/knobs")
    (conn,) = _pool(client).connections
    for _ in range(500):  # a bound for a hung test, not a speed check
        if conn.has_expired():
            break
        await asyncio.sleep(0.01)
    assert await transport.upstream_sweep() == 1
    assert _pool(client).connections == [] and conn.is_closed()
    # the next call opens a new connection
    assert (await client.get(f"{simulator_server.url}/__sim/knobs")).status_code == 200
    assert len(_pool(client).connections) == 1 and _pool(client).connections[0] is not conn


async def test_sweep_closes_idle_connections_beyond_the_keep_alive_slots(httpx_transport, simulator_server, monkeypatch):
    monkeypatch.setattr(transport, "UPSTREAM_LIMITS", httpx.Limits(max_connections=50, max_keepalive_connections=3))
    monkeypatch.setattr(transport, "POOL_TIDY_SECONDS", 3600.0)  # only the sweep tidies here
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    url = f"{simulator_server.url}/__sim/knobs"
    await client.get(url)  # the first call's tidy-up pass
    opened = [await client.send(client.build_request("GET", url), stream=True) for _ in range(8)]
    for response in opened:  # a burst of 8 at once, all idle afterwards
        await response.aread()
        await response.aclose()
    assert len(_pool(client).connections) == 8
    assert await transport.upstream_sweep() == 5
    assert len(_pool(client).connections) == 3 and all(c.is_idle() for c in _pool(client).connections)


async def test_sweep_of_all_idle_connections_spares_one_with_a_response_still_open(httpx_transport, simulator_server):
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    url = f"{simulator_server.url}/__sim/knobs"
    open_response = await client.send(client.build_request("GET", url), stream=True)  # body not read yet
    (busy,) = _pool(client).connections
    await client.get(url)  # needs a second connection, idle afterwards
    (idle,) = [c for c in _pool(client).connections if c is not busy]
    assert await transport.upstream_sweep(idle_all=True) == 1
    assert _pool(client).connections == [busy] and idle.is_closed() and not busy.is_closed()
    await open_response.aread()
    await open_response.aclose()
    assert busy.is_idle()
    assert await transport.upstream_sweep(idle_all=True) == 1
    assert _pool(client).connections == [] and busy.is_closed()


def _count_new_connections(pool) -> list:
    made = []
    create = pool.create_connection

    def counting(origin):
        connection = create(origin)
        made.append(connection)
        return connection

    pool.create_connection = counting
    return made


async def test_connections_are_reused_when_more_requests_run_than_keep_alive_slots(httpx_transport, simulator_server, monkeypatch):
    # httpcore 1.0.9 itself closed every connection that turned idle while the pool held more than
    # max_keepalive_connections in total: 10 clients with 8 keep-alive slots opened 50 connections
    # for 50 requests (measured); here a connection is reused unless 8 others are idle at that moment
    monkeypatch.setattr(transport, "UPSTREAM_LIMITS", httpx.Limits(max_connections=50, max_keepalive_connections=8))
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    made = _count_new_connections(_pool(client))
    url = f"{simulator_server.url}/__sim/knobs"

    async def five_in_a_row():
        for _ in range(5):
            assert (await client.get(url)).status_code == 200

    await asyncio.gather(*(five_in_a_row() for _ in range(10)))
    assert 10 <= len(made) <= 25, len(made)  # 13-15 measured
    await asyncio.sleep(transport.POOL_TIDY_SECONDS)
    assert (await client.get(url)).status_code == 200  # the next request after the interval tidies up
    assert len(_pool(client).connections) <= 8  # idle ones above the keep-alive slots were closed
    assert all(c.is_idle() for c in _pool(client).connections)


async def test_requests_over_max_connections_wait_for_a_free_connection(httpx_transport, simulator_server, monkeypatch):
    monkeypatch.setattr(transport, "UPSTREAM_LIMITS", httpx.Limits(max_connections=2, max_keepalive_connections=2))
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    made = _count_new_connections(_pool(client))
    url = f"{simulator_server.url}/__sim/knobs"
    results = await asyncio.gather(*(client.get(url) for _ in range(12)))
    assert [r.status_code for r in results] == [200] * 12
    assert len(made) == 2 and len(_pool(client).connections) == 2


async def test_an_idle_connection_the_server_closed_is_never_handed_out(httpx_transport, simulator_server, monkeypatch):
    monkeypatch.setattr(transport, "POOL_TIDY_SECONDS", 3600.0)  # no tidy-up pass: the pick itself checks
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    url = f"{simulator_server.url}/__sim/knobs"
    await client.get(url)
    await client.get(url)  # the first call's tidy-up pass is done; from here on only picks
    (first,) = _pool(client).connections
    first._connection._network_stream._transport.abort()  # as a server closing the idle socket would
    for _ in range(200):  # a bound for a hung test, not a speed check
        if first.has_expired():
            break
        await asyncio.sleep(0.01)
    assert first.has_expired()
    assert (await client.get(url)).status_code == 200
    assert first.is_closed() and first not in _pool(client).connections
    assert len(_pool(client).connections) == 1


async def test_a_closed_connection_is_replaced_and_dropped_at_the_next_tidy_up(httpx_transport, simulator_server):
    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    url = f"{simulator_server.url}/__sim/knobs"
    await client.get(url)
    (first,) = _pool(client).connections
    await first.aclose()
    assert (await client.get(url)).status_code == 200
    (second,) = [c for c in _pool(client).connections if not c.is_closed()]
    assert second is not first
    await asyncio.sleep(transport.POOL_TIDY_SECONDS)
    assert (await client.get(url)).status_code == 200
    assert _pool(client).connections == [second]


def test_the_one_pass_assignment_is_installed_on_every_kind_of_pool():
    for proxy in (None, "http://127.0.0.1:9", "socks5://127.0.0.1:9"):
        pool = transport._build_upstream_client(proxy, True, impl="httpx")._transport._pool
        assert pool._assign_requests_to_connections.__func__ is transport._assign_requests_linear, proxy


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
            url = httpx.URL(target)
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


async def test_single_proxy_egress_really_routes_through_the_proxy(origin):
    proxy = ForwardProxy()
    proxy_url = await proxy.start()
    try:
        cfg = make_cfg({"proxy.egress.mode": "single_proxy", "proxy.egress.proxy_url": proxy_url})
        egress = egress_choose(cfg=cfg)
        client = await upstream_client(egress=egress, cfg=cfg)
        response = await client.get(f"http://127.0.0.1:{origin}/hello")
        assert response.text == "ok"
        assert proxy.requests == [f"GET http://127.0.0.1:{origin}/hello"]
    finally:
        await proxy.stop()


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


@pytest.mark.django_db(transaction=True)
async def test_a_failing_pool_proxy_is_classified_and_rotated_away(sim):
    import socket

    from gateway.tests.upstream._config import sim_cfg
    from gateway.upstream.client import GrokClient
    from gateway.upstream.errors import UpstreamError, UpstreamKind

    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}"
    dead.close()  # nothing listens there any more
    proxy = ForwardProxy()
    live_url = await proxy.start()
    try:
        await asyncio.to_thread(transport.proxies_snapshot.refresh_now)
        cfg = sim_cfg(sim, **{"proxy.egress.mode": "proxy_pool", "proxy.egress.proxy_pool": [dead_url, live_url]})
        first = GrokClient(token="sim-super-a", cfg=cfg)
        assert first.egress.proxy_url == dead_url
        with pytest.raises(UpstreamError) as info:
            await first.rate_limits(mode="auto")
        assert info.value.kind is UpstreamKind.TRANSPORT and info.value.retry_elsewhere
        second = GrokClient(token="sim-super-a", cfg=cfg)
        assert second.egress.proxy_url == live_url
        assert (await second.rate_limits(mode="auto"))["totalQueries"] == 50
        assert proxy.requests == [f"POST {sim.url}/rest/rate-limits"]
        assert GrokClient(token="sim-super-a", cfg=cfg).egress.proxy_url == live_url  # sticky again
    finally:
        await proxy.stop()
