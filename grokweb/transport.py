"""The only module that builds HTTP and WebSocket clients (httpx2 / websockets).

What it speaks:
- Upstream HTTP (grok.com roles, docs/upstream-protocol.md §2): one pooled `httpx2.AsyncClient` per (egress proxy,
  TLS-verify flag, running event loop), on httpx2's own transport for direct and proxied egress
  alike (httpcore2: h11 for HTTP/1.1, h2 where a TLS origin offers HTTP/2 by ALPN, HTTP CONNECT
  and SOCKS5 through socksio). Why httpx2 (the maintained fork of httpx) and not httpx 0.28 or the
  aiohttp transport: docs/benchmarks.md, "what each removal cost". Response heads are bounded by
  the libraries: httpcore2 gives h11 a 100 KiB cap on an incomplete head and announces a 64 KiB
  header list to HTTP/2 peers (h2 enforces it); either is an upstream protocol error. Redirects are
  never followed implicitly; environment proxies are ignored (`trust_env=False`) so only the
  configured egress is used; the client's cookie jar stores nothing, so a `Set-Cookie` from one
  host can never ride along to another. Credentials are per-request headers chosen by
  grokweb/core.py.
- Egress: the client is built for one `Egress` (grokweb/egress.py: direct or one proxy URL);
  which one, from the config and the proxy rows, is the core's choice (core/egress.py).
  `socks4a://` proxies, which httpx2 cannot speak, fail with an actionable error.
- Untrusted fetches (`fetch_untrusted`, docs/upstream-protocol.md §3.5): client-supplied http(s) URLs are fetched by a
  separate credential-free client: the host is resolved once, every address is vetted (loopback,
  private, link-local, multicast, unspecified, reserved, CGNAT and cloud-metadata addresses are
  refused unless `security.fetch_allowlist` names the host or a CIDR holding the address), the
  connection goes to the vetted IP (the URL is rewritten to the IP, `Host` and TLS SNI carry the
  name, so there is no second resolution), every redirect hop is re-vetted (at most 3), the body
  and the total time are capped and the content type must match `accept`.
- WebSockets (`ws_connect`): the `websockets` asyncio client, direct or through an HTTP(S) proxy;
  SOCKS for WebSockets needs the optional `python-socks` package (not installed by default), so a
  SOCKS egress fails the WebSocket call with a clear error.
"""
from __future__ import annotations

import asyncio
import http.cookiejar
import ipaddress
import logging
import os
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2

from grokweb.egress import Egress, EgressConfigError, proxy_label
from grokweb.errors import GatewayError
from grokweb.host import settings_current

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Pooled httpx2 clients
# ---------------------------------------------------------------------------------------------


class _NoCookieJar(http.cookiejar.CookieJar):
    """Never stores a cookie: credentials are explicit per-request headers only. httpx2 keeps a
    CookieJar passed to the client as its store (a `Cookies` object would be copied instead)."""

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:  # noqa: D401
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


DEFAULT_TIMEOUT = httpx2.Timeout(connect=15.0, read=60.0, write=60.0, pool=30.0)
# max_connections bounds concurrent upstream requests per client (one per (proxy, event loop), so per
# worker): over HTTP/1.1 each open stream holds a connection, and one worker must hold 1,000 streams
# (issue 8; docs/benchmarks.md lane 4: with 512, streams 513+ waited for the pool and failed with 504).
# Over HTTP/2 many streams share one connection. Keep-alive: at most 64 idle connections stay, each
# for 30 s; httpcore2 closes expired ones when the pool is next used.
UPSTREAM_LIMITS = httpx2.Limits(max_connections=2048, max_keepalive_connections=64, keepalive_expiry=30.0)

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, httpx2.AsyncClient]]" = (
    weakref.WeakKeyDictionary()
)
_clients_lock = threading.Lock()


def _skip_verify(cfg: Any | None) -> bool:
    try:
        return bool(settings_current(cfg).get("proxy.egress.skip_ssl_verify", False))
    except Exception:
        return False


def _build_upstream_client(proxy_url: str | None, verify: bool) -> httpx2.AsyncClient:
    """The one upstream client stack, direct or proxied: httpx2's own transport (httpcore2; h11 for
    HTTP/1.1, h2 where a TLS origin offers HTTP/2 by ALPN; HTTP CONNECT and SOCKS5 via socksio)."""
    if proxy_url and proxy_url.startswith("socks4"):
        raise EgressConfigError(
            f"SOCKS4 proxy {proxy_label(proxy_url)} is not supported by the HTTP client; use an http(s) or socks5 proxy."
        )
    try:
        transport = httpx2.AsyncHTTPTransport(
            verify=verify, http1=True, http2=True, proxy=proxy_url, limits=UPSTREAM_LIMITS, trust_env=False
        )
    except (ValueError, ImportError, httpx2.InvalidURL) as exc:
        raise EgressConfigError(f"Egress proxy {proxy_label(proxy_url or '')} cannot be used: {exc}") from None
    return httpx2.AsyncClient(
        transport=transport,
        timeout=DEFAULT_TIMEOUT,
        follow_redirects=False,
        trust_env=False,
        cookies=_NoCookieJar(),
    )


def _pooled(key: tuple, factory: Callable[[], httpx2.AsyncClient]) -> httpx2.AsyncClient:
    loop = asyncio.get_running_loop()
    per_loop = _clients.get(loop)
    client = per_loop.get(key) if per_loop is not None else None
    if client is not None and not client.is_closed:
        return client  # every request but the first of each client: no lock, no sweep
    with _clients_lock:
        for old_loop in [lp for lp in list(_clients.keys()) if lp.is_closed()]:
            # the loop is gone (asyncio.run() ended): drop its clients, their sockets die with them
            _clients.pop(old_loop, None)
        per_loop = _clients.setdefault(loop, {})
        client = per_loop.get(key)
        if client is None or client.is_closed:
            client = factory()
            per_loop[key] = client
        return client


async def upstream_client(*, egress: Egress, cfg: Any | None = None) -> httpx2.AsyncClient:
    """The pooled upstream client for `egress` on the running loop (built on first use, ~40 ms)."""
    verify = not _skip_verify(cfg)
    return _pooled(("upstream", egress.proxy_url, verify), lambda: _build_upstream_client(egress.proxy_url, verify))


async def transport_aclose() -> int:
    """Close the pooled clients of the running loop and forget them; the next call builds new ones.
    Returns how many were closed.

    At shutdown and in tests; and for an idle worker (grok2api/memory.py): httpcore2 closes an
    expired keep-alive connection only when its pool is next used, so after a burst up to
    `max_keepalive_connections` connections stay open, each with its parser state, buffers and the
    context of the request that opened it, until the next request. A request still using one of
    these clients would fail: the caller makes sure there is none."""
    loop = asyncio.get_running_loop()
    with _clients_lock:
        per_loop = _clients.pop(loop, {})
    for client in per_loop.values():
        await client.aclose()
    return len(per_loop)


def deadline(seconds: float | None) -> "asyncio.Timeout":
    """A total deadline for a whole call (httpx2's read timeout only bounds the gap between chunks).

    Use as `async with deadline(t): ...`; expiry raises TimeoutError inside the block. Never hold
    it across a `yield` of an async generator (it would cancel the consumer instead).
    """
    return asyncio.timeout(seconds)


# ---------------------------------------------------------------------------------------------
# Redirects for credentialed requests (docs/upstream-protocol.md §3.5)
# ---------------------------------------------------------------------------------------------

# Headers that belong to grok.com only: stripped when a redirect leaves the credentialed origins.
CREDENTIAL_HEADERS = ("cookie", "x-statsig-id", "x-xai-request-id", "origin", "referer", "authorization")


class RedirectRefused(httpx2.HTTPError):
    """A redirect that the policy does not follow (non-http scheme, a body to another origin, too many)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


async def send_with_redirects(
    client: httpx2.AsyncClient,
    request: httpx2.Request,
    *,
    credentialed: Callable[[httpx2.URL], bool],
    max_redirects: int = 3,
) -> tuple[httpx2.Response, bool]:
    """Send `request` (streamed) and follow up to `max_redirects` redirects, re-checking each hop.

    A hop to an origin for which `credentialed(url)` is false is followed without the Cookie and
    grok headers (CREDENTIAL_HEADERS); a hop that would re-send a request body there is refused.
    Returns (response, still_credentialed). The caller closes the response.
    """
    still = credentialed(request.url)
    for _hop in range(max_redirects + 1):
        response = await client.send(request, stream=True)
        if not response.is_redirect:
            return response, still
        status = response.status_code
        location = response.headers.get("location", "")
        await response.aclose()
        try:
            target = request.url.join(location)
        except httpx2.InvalidURL:
            raise RedirectRefused(f"invalid redirect location from {request.url.host}", status=status) from None
        if target.scheme not in ("http", "https"):
            raise RedirectRefused(f"redirect to a {target.scheme!r} URL refused", status=status)
        method = request.method
        content: bytes | None = request.content if method not in ("GET", "HEAD") else None
        if status == 303 or (status in (301, 302) and method == "POST"):
            method, content = "GET", None
        headers = httpx2.Headers(request.headers)
        headers.pop("host", None)
        if content is None:
            headers.pop("content-type", None)
            headers.pop("content-length", None)
        if not credentialed(target):
            if content is not None:
                raise RedirectRefused(f"redirect of a {method} request to {target.host} refused", status=status)
            for name in CREDENTIAL_HEADERS:
                headers.pop(name, None)
            still = False
        request = client.build_request(method, target, headers=headers, content=content, extensions=request.extensions)
    raise RedirectRefused(f"more than {max_redirects} redirects", status=0)


# ---------------------------------------------------------------------------------------------
# Untrusted fetches (client-supplied URLs), SSRF-guarded
# ---------------------------------------------------------------------------------------------

METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
FETCH_MAX_REDIRECTS = 3
FETCH_USER_AGENT = "grok2api-fetch/1 (+media input)"


class FetchRefused(GatewayError):
    """A client-supplied URL could not be used. code: invalid_url, url_not_allowed, fetch_failed,
    too_large, unsupported_media_type. The caller sets `param` (e.g. messages[0].content[1].image_url)."""

    status = 400
    type = "invalid_request_error"
    code = "fetch_failed"

    def __init__(self, message: str, *, code: str = "fetch_failed", param: str | None = None) -> None:
        super().__init__(message, code=code, param=param)


@dataclass(frozen=True, slots=True)
class Fetched:
    data: bytes
    content_type: str
    url: str  # the final URL after redirects


def address_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address may not be fetched, or None when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a non-public address"
    return None


class FetchAllowlist:
    """`security.fetch_allowlist`: hostnames (exact, or `*.example.com` for subdomains) and IPs/CIDRs."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in entries:
            entry = str(raw).strip().lower()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                self.suffixes.append(entry[1:])
            else:
                self.names.add(entry.rstrip("."))

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.names or any(host.endswith(sfx) for sfx in self.suffixes)

    def address_allowed(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            if any(ip.ipv4_mapped in net for net in self.networks if net.version == 4):
                return True
        return any(ip in net for net in self.networks if net.version == ip.version)


# One answer whether a host does not resolve, has no address or resolves to an internal one: a client
# must not learn which internal names exist from the difference (the reason is logged at DEBUG).
HOST_REFUSED_MESSAGE = "The URL host is not reachable or not allowed; it is not fetched."


def _host_refused() -> FetchRefused:
    return FetchRefused(HOST_REFUSED_MESSAGE, code="url_not_allowed")


async def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        log.debug("fetch refused: %r does not resolve (%s)", host, exc)
        raise _host_refused() from None
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in out:
            out.append(ip)
    if not out:
        log.debug("fetch refused: %r has no address", host)
        raise _host_refused()
    return out


async def vet_url(url: str, allowlist: FetchAllowlist) -> tuple[httpx2.URL, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Parse and vet one URL hop; returns (url, the address to connect to)."""
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError, ValueError):
        raise FetchRefused("The URL is not valid.", code="invalid_url") from None
    if parsed.scheme not in ("http", "https"):
        raise FetchRefused("Only http and https URLs can be fetched.", code="invalid_url")
    host = parsed.host
    if not host:
        raise FetchRefused("The URL has no host.", code="invalid_url")
    if parsed.userinfo:
        raise FetchRefused("URLs with credentials are not fetched.", code="invalid_url")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await _resolve(host, port)
    host_ok = allowlist.host_allowed(host)
    for ip in addresses:
        if host_ok or allowlist.address_allowed(ip):
            continue
        reason = address_refusal(ip)
        if reason:
            # Every address must pass: a name that also resolves to an internal address is refused.
            log.debug("fetch refused: %r resolves to %s", host, reason)
            raise _host_refused()
    return parsed, addresses[0]


def _pinned_request(
    client: httpx2.AsyncClient, url: httpx2.URL, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, headers: dict[str, str]
) -> httpx2.Request:
    pinned = url.copy_with(host=str(ip))
    default_port = 443 if url.scheme == "https" else 80
    name = f"[{url.host}]" if ":" in url.host else url.host
    host_header = name if url.port in (None, default_port) else f"{name}:{url.port}"
    extensions: dict[str, Any] = {}
    if url.scheme == "https":
        extensions["sni_hostname"] = url.host
    return client.build_request("GET", pinned, headers={**headers, "Host": host_header}, extensions=extensions)


def _build_fetch_client() -> httpx2.AsyncClient:
    # No keep-alive: a connection made for one host name must not serve another name on the same IP.
    transport = httpx2.AsyncHTTPTransport(
        http1=True, http2=False, trust_env=False, limits=httpx2.Limits(max_connections=100, max_keepalive_connections=0)
    )
    return httpx2.AsyncClient(
        transport=transport, follow_redirects=False, trust_env=False, cookies=_NoCookieJar(), timeout=DEFAULT_TIMEOUT
    )


MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image(data: bytes) -> str:
    for magic, mime in MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return ""


def _type_ok(content_type: str, accept: Sequence[str]) -> bool:
    if not accept:
        return True
    return any(content_type == a or (a.endswith("/") and content_type.startswith(a)) for a in accept)


async def fetch_untrusted(
    url: str,
    *,
    max_bytes: int,
    accept: Sequence[str] = ("image/",),
    timeout: float = 30.0,
    allowlist: Iterable[str] | None = None,
) -> Fetched:
    """Fetch a client-supplied URL without any credentials, SSRF-guarded (docs/upstream-protocol.md §3.5).

    `accept` holds MIME prefixes ending in "/" ("image/") or exact types ("application/pdf");
    empty = anything. `allowlist` defaults to `security.fetch_allowlist`. Raises FetchRefused.
    """
    if allowlist is None:
        allowlist = settings_current(None).get("security.fetch_allowlist") or []
    allow = FetchAllowlist(allowlist)
    client = _pooled(("fetch",), _build_fetch_client)
    accept_header = ", ".join(a + "*" if a.endswith("/") else a for a in accept) or "*/*"
    headers = {"User-Agent": FETCH_USER_AGENT, "Accept": accept_header + ", */*;q=0.1", "Accept-Encoding": "gzip, deflate"}
    current = url
    try:
        async with asyncio.timeout(timeout):
            for _hop in range(FETCH_MAX_REDIRECTS + 1):
                target, ip = await vet_url(current, allow)
                request = _pinned_request(client, target, ip, headers)
                try:
                    response = await client.send(request, stream=True)
                except httpx2.HTTPError as exc:
                    raise FetchRefused(f"Fetching the URL failed: {type(exc).__name__}.", code="fetch_failed") from None
                try:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        try:
                            current = str(target.join(location))
                        except httpx2.InvalidURL:
                            raise FetchRefused("The URL redirected to an invalid location.", code="invalid_url") from None
                        continue
                    if response.status_code != 200:
                        raise FetchRefused(f"Fetching the URL failed with HTTP {response.status_code}.", code="fetch_failed")
                    length = response.headers.get("content-length")
                    if length and length.isdigit() and int(length) > max_bytes:
                        raise FetchRefused(f"The URL's content is larger than {max_bytes} bytes.", code="too_large")
                    content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                    if content_type and content_type != "application/octet-stream" and not _type_ok(content_type, accept):
                        raise FetchRefused(
                            f"The URL's content type {content_type!r} is not accepted here.", code="unsupported_media_type"
                        )
                    chunks: list[bytes] = []
                    size = 0
                    try:
                        async for chunk in response.aiter_bytes():
                            size += len(chunk)
                            if size > max_bytes:
                                raise FetchRefused(f"The URL's content is larger than {max_bytes} bytes.", code="too_large")
                            chunks.append(chunk)
                    except httpx2.HTTPError as exc:
                        raise FetchRefused(f"Fetching the URL failed: {type(exc).__name__}.", code="fetch_failed") from None
                    data = b"".join(chunks)
                    if not content_type or content_type == "application/octet-stream":
                        content_type = sniff_image(data) or content_type
                        if not _type_ok(content_type, accept):
                            raise FetchRefused(
                                "The URL's content type could not be recognised as an accepted type.",
                                code="unsupported_media_type",
                            )
                    if not data:
                        raise FetchRefused("The URL returned an empty body.", code="fetch_failed")
                    return Fetched(data=data, content_type=content_type, url=str(target))
                finally:
                    await response.aclose()
            raise FetchRefused(f"The URL redirected more than {FETCH_MAX_REDIRECTS} times.", code="fetch_failed")
    except TimeoutError:
        raise FetchRefused(f"Fetching the URL took longer than {timeout:g} s.", code="fetch_failed") from None


# ---------------------------------------------------------------------------------------------
# WebSockets
# ---------------------------------------------------------------------------------------------

WS_MAX_MESSAGE = 32 * 1024 * 1024  # Imagine frames carry base64 JPEG/PNG blobs


def ws_connect(
    url: str,
    *,
    headers: dict[str, str],
    egress: Egress,
    open_timeout: float = 20.0,
    verify: bool | None = None,
    ping_interval: float | None = 20.0,
) -> Any:
    """A `websockets` client connection (await it, or `async with` it).

    `headers` are sent verbatim on the upgrade request (websockets adds no User-Agent or Origin
    of its own). Direct, or through an HTTP(S) egress proxy; a SOCKS egress needs `python-socks`.
    Errors surface as websockets' InvalidStatus (handshake status), OSError or TimeoutError.
    """
    from websockets.asyncio.client import connect

    proxy = egress.proxy_url
    if proxy and proxy.startswith("socks"):
        try:
            import python_socks  # noqa: F401
        except ImportError:
            raise EgressConfigError(
                f"The Imagine WebSocket cannot use the SOCKS egress {egress.label}: install python-socks or use an HTTP proxy."
            ) from None
    kwargs: dict[str, Any] = {}
    if url.startswith("wss://"):
        if verify is None:
            verify = not _skip_verify(None)
        if not verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            kwargs["ssl"] = ctx
    return connect(
        url,
        additional_headers=headers,
        user_agent_header=None,
        origin=None,
        proxy=proxy,  # never True: environment proxies are not used
        open_timeout=open_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_interval,
        close_timeout=2,  # bounds the closing handshake (run in the background by callers)
        max_size=WS_MAX_MESSAGE,
        **kwargs,
    )


def quote_path(segment: str) -> str:
    """Percent-encode one path segment (asset ids in URLs)."""
    return quote(segment, safe="")


__all__ = [
    "CREDENTIAL_HEADERS",
    "FetchAllowlist",
    "FetchRefused",
    "Fetched",
    "RedirectRefused",
    "address_refusal",
    "deadline",
    "fetch_untrusted",
    "send_with_redirects",
    "transport_aclose",
    "upstream_client",
    "vet_url",
    "ws_connect",
]
