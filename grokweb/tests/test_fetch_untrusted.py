"""fetch_untrusted: credential-free, SSRF-guarded fetches of client-supplied URLs (docs/upstream-protocol.md §3.5),
against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from grokweb import transport
from grokweb.transport import FetchRefused, address_refusal, fetch_untrusted

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        _Handler.seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        path, _, query = self.path.partition("?")
        if path == "/img.png":
            self._send(200, PNG, "image/png")
        elif path == "/octet":
            self._send(200, PNG, "application/octet-stream")
        elif path == "/html":
            self._send(200, b"<html>hi</html>", "text/html")
        elif path == "/missing":
            self._send(404, b"nope", "text/plain")
        elif path == "/big":
            self._send(200, PNG + b"\x00" * 5000, "image/png")
        elif path == "/big-chunked":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(10):
                chunk = PNG + b"\x00" * 500
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query.removeprefix("to="))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/slow":
            time.sleep(2)
            self._send(200, PNG, "image/png")
        elif path == "/set-cookie":
            self.send_response(200)
            self.send_header("Set-Cookie", "tracker=1; Path=/")
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)
        else:
            self._send(404, b"", "text/plain")

    def _send(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.server_address[1]
    httpd.shutdown()


LOOPBACK = ["127.0.0.0/8"]


@pytest.mark.parametrize(
    ("address", "reason"),
    [("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.1", "private"), ("172.16.0.1", "private"),
     ("169.254.169.254", "metadata"), ("169.254.1.1", "link-local"), ("0.0.0.0", "unspecified"),
     ("224.0.0.1", "multicast"), ("240.0.0.1", "reserved"), ("100.64.0.1", "non-public"), ("::1", "loopback"),
     ("fd00:ec2::254", "metadata"), ("fe80::1", "link-local"), ("::ffff:127.0.0.1", "loopback"), ("::", "unspecified")],
)
def test_internal_addresses_are_refused(address, reason):
    assert reason in address_refusal(ipaddress.ip_address(address))


def test_public_addresses_are_allowed():
    assert address_refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert address_refusal(ipaddress.ip_address("2606:4700::1111")) is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/x.png", "http://169.254.169.254/latest/meta-data/",
                                 "http://[fd00:ec2::254]/", "http://10.0.0.1/a.png", "http://[::ffff:127.0.0.1]/a",
                                 "http://0.0.0.0:80/"])
async def test_private_loopback_and_metadata_urls_are_refused(url):
    with pytest.raises(FetchRefused) as info:
        await fetch_untrusted(url, max_bytes=1000, allowlist=[])
    assert info.value.code == "url_not_allowed"
    assert info.value.status == 400 and info.value.type == "invalid_request_error"


async def test_a_name_resolving_to_loopback_is_refused(server):
    _, port = server
    with pytest.raises(FetchRefused) as info:
        await fetch_untrusted(f"http://localhost:{port}/img.png", max_bytes=1000, allowlist=[])
    assert info.value.code == "url_not_allowed"


async def test_an_internal_name_and_an_unresolvable_name_get_the_same_answer(server):
    _, port = server
    with pytest.raises(FetchRefused) as internal:
        await fetch_untrusted(f"http://localhost:{port}/img.png", max_bytes=1000, allowlist=[])
    with pytest.raises(FetchRefused) as unresolvable:
        await fetch_untrusted(f"http://no-such-host.invalid:{port}/img.png", max_bytes=1000, allowlist=[])
    for refused in (internal.value, unresolvable.value):
        assert (refused.status, refused.code, refused.message) == (
            400, "url_not_allowed", "The URL host is not reachable or not allowed; it is not fetched.")


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://x/", "not a url", "http:///nohost",
                                 "http://user:pw@example.com/x.png"])
async def test_only_plain_http_urls_are_valid(url):
    with pytest.raises(FetchRefused) as info:
        await fetch_untrusted(url, max_bytes=1000, allowlist=[])
    assert info.value.code == "invalid_url"


async def test_allowlisted_cidr_is_fetched_without_credentials(server):
    base, _ = server
    _Handler.seen.clear()
    fetched = await fetch_untrusted(f"{base}/img.png", max_bytes=1000, allowlist=LOOPBACK)
    assert fetched.data == PNG and fetched.content_type == "image/png"
    headers = _Handler.seen[-1]["headers"]
    assert not {"cookie", "x-statsig-id", "x-xai-request-id", "origin", "referer"} & set(headers)


async def test_allowlisted_hostname_is_fetched(server):
    _, port = server
    fetched = await fetch_untrusted(f"http://localhost:{port}/img.png", max_bytes=1000, allowlist=["LOCALHOST"])
    assert fetched.data == PNG


async def test_the_connection_goes_to_the_vetted_address_without_a_second_lookup(server, monkeypatch):
    _, port = server
    lookups = []

    async def fake_resolve(host, port_):
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(transport, "_resolve", fake_resolve)
    _Handler.seen.clear()
    # "pinned.invalid" resolves nowhere for real: only the vetted address can have been used.
    fetched = await fetch_untrusted(f"http://pinned.invalid:{port}/img.png", max_bytes=1000, allowlist=LOOPBACK)
    assert fetched.data == PNG
    assert lookups == ["pinned.invalid"]
    assert _Handler.seen[-1]["headers"]["host"] == f"pinned.invalid:{port}"


async def test_redirects_are_re_vetted_at_every_hop(server):
    base, port = server
    # the first hop is allowlisted by name, the redirect target (127.0.0.1) is not
    with pytest.raises(FetchRefused) as info:
        await fetch_untrusted(f"http://localhost:{port}/redirect?to={base}/img.png", max_bytes=1000, allowlist=["localhost"])
    assert info.value.code == "url_not_allowed"
    with pytest.raises(FetchRefused) as info:
        await fetch_untrusted(f"{base}/redirect?to=http://169.254.169.254/latest/", max_bytes=1000, allowlist=LOOPBACK)
    assert info.value.code == "url_not_allowed"
    fetched = await fetch_untrusted(f"{base}/redirect?to=/img.png", max_bytes=1000, allowlist=LOOPBACK)
    assert fetched.data == PNG and fetched.url.endswith("/img.png")


async def test_redirect_loops_are_capped(server):
    base, _ = server
    with pytest.raises(FetchRefused) as info:
        await fetch_untrusted(f"{base}/loop", max_bytes=1000, allowlist=LOOPBACK)
    assert info.value.code == "fetch_failed" and "redirected more than 3" in info.value.message


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
async def test_bodies_over_the_cap_are_refused(server, path):
    base, _ = server
    with pytest.raises(FetchRefused) as info:
        await fetch_untrusted(f"{base}{path}", max_bytes=1000, allowlist=LOOPBACK)
    assert info.value.code == "too_large"


async def test_unexpected_content_types_are_refused(server):
    base, _ = server
    with pytest.raises(FetchRefused) as info:
        await fetch_untrusted(f"{base}/html", max_bytes=1000, allowlist=LOOPBACK)
    assert info.value.code == "unsupported_media_type"
    fetched = await fetch_untrusted(f"{base}/html", max_bytes=1000, accept=("text/html",), allowlist=LOOPBACK)
    assert fetched.content_type == "text/html"


async def test_octet_stream_images_are_recognised_by_their_bytes(server):
    base, _ = server
    fetched = await fetch_untrusted(f"{base}/octet", max_bytes=1000, allowlist=LOOPBACK)
    assert fetched.content_type == "image/png"


async def test_error_statuses_and_slow_servers_fail_the_fetch(server):
    base, _ = server
    with pytest.raises(FetchRefused) as info:
        await fetch_untrusted(f"{base}/missing", max_bytes=1000, allowlist=LOOPBACK)
    assert info.value.code == "fetch_failed" and "404" in info.value.message
    with pytest.raises(FetchRefused) as info:
        await fetch_untrusted(f"{base}/slow", max_bytes=1000, allowlist=LOOPBACK, timeout=0.3)
    assert info.value.code == "fetch_failed" and "longer than" in info.value.message


async def test_cookies_set_by_a_fetched_server_are_never_replayed(server):
    base, _ = server
    await fetch_untrusted(f"{base}/set-cookie", max_bytes=1000, allowlist=LOOPBACK)
    _Handler.seen.clear()
    await fetch_untrusted(f"{base}/img.png", max_bytes=1000, allowlist=LOOPBACK)
    assert "cookie" not in _Handler.seen[-1]["headers"]
