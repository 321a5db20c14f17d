"""The Grok Web client: the only code that knows grok.com paths, headers and payloads.

Wire format (protocol docs/upstream-protocol.md §2–§10):
- REST (web base, `upstream.web_base_url`, path prefixes kept): E1 chat
  `POST /rest/app-chat/conversations/new` (JSON → NDJSON stream, parsed by
  grokweb/parse.py into neutral events), E3 `POST /rest/app-chat/upload-file`, E4
  `POST /http/upload-file-v2/direct` (multipart), E5 `GET /rest/assets`, E6
  `DELETE /rest/assets-metadata/{id}`, E8 `POST /rest/rate-limits`, E9
  `POST /rest/media/imagine/quota_info`, E10 `POST /rest/media/post/create`, E12
  `POST /rest/livekit/tokens`, E13 `GET /api/auth/session`.
- Assets (`upstream.assets_base_url`): E7 `GET /<path>` with browser-navigation headers.
- WebSocket (`upstream.ws_base_url`): E11 `/ws/imagine/listen` (JSON text frames).

Credentials (§3.1, §3.5): `Cookie: sso=<t>; sso-rw=<t>` (plus the operator's Cloudflare cookies
in manual clearance mode) and the grok header set (Origin/Referer of the web base,
x-xai-request-id, optional static x-statsig-id) go ONLY to the credentialed origins — scheme, host
and port of the web, assets and WebSocket bases. Public Imagine URLs, LiveKit and any other host
get a credential-free request. Redirects are re-checked hop by hop.

Every failure leaves as an UpstreamError built by grokweb/classify.py (HTTP status and body,
transport exceptions, in-band stream errors, WebSocket frames and handshakes).
"""
from __future__ import annotations

import asyncio
import functools
import base64
import contextlib
import os
import re
import tempfile
import uuid
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import orjson

from grokweb.classify import (
    UpstreamError,
    UpstreamKind,
    classify_http,
    classify_transport,
    classify_ws_error,
    status_codes_parse,
)
from grokweb.events import ImageProgress, ImageResult
from grokweb.egress import Egress, egress_report
from grokweb.host import host_get, settings_current
from grokweb.transport import RedirectRefused, quote_path, send_with_redirects, upstream_client, ws_connect

# Re-exported payload builders (pure): chat_payload, image_edit_payload, video_payload, …
from grokweb.payloads import (  # noqa: F401
    chat_payload,
    image_edit_payload,
    imagine_frames,
    livekit_payload,
    media_post_payload,
    size_to_aspect_ratio,
    video_aspect_ratio,
    video_extension_payload,
    video_payload,
    video_segments,
)

EP_CHAT = "/rest/app-chat/conversations/new"
EP_UPLOAD = "/rest/app-chat/upload-file"
EP_UPLOAD_MULTIPART = "/http/upload-file-v2/direct"
EP_ASSETS = "/rest/assets"
EP_ASSET_DELETE = "/rest/assets-metadata/{asset_id}"
EP_RATE_LIMITS = "/rest/rate-limits"
EP_IMAGINE_QUOTA = "/rest/media/imagine/quota_info"
EP_MEDIA_POST = "/rest/media/post/create"
EP_IMAGINE_WS = "/ws/imagine/listen"
EP_LIVEKIT = "/rest/livekit/tokens"
EP_SESSION = "/api/auth/session"

NAVIGATION_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"
)
ERROR_BODY_CAP = 64 * 1024  # bytes of a non-200 body read for classification
JSON_BODY_CAP = 8 * 1024 * 1024
RATE_LIMITS_TIMEOUT = 20.0  # the reference's per-probe timeout
CHAT_TOTAL_CAP = 900.0  # overall cap of one chat/media stream, on top of the idle timeout
DOWNLOAD_TOTAL_FACTOR = 10  # total download cap = asset.download_timeout (idle gap) × this
IMAGINE_MAX_RECONNECTS = 2  # consecutive reconnects without a new image before giving up
IMAGINE_MAX_ROUNDS = 8
DRAIN_TAIL_SECONDS = 5.0  # a completed chat body's tail is read for at most this long, then the connection is dropped
DRAIN_TAIL_BYTES = 256 * 1024
_draining: set[asyncio.Task] = set()


async def chat_drains_settle() -> None:
    """Wait for the background reads of completed chat bodies (their connections then are back in
    the pool, and the upstream has sent everything). Tests and shutdown use it."""
    while _draining:
        await asyncio.gather(*list(_draining), return_exceptions=True)


def _drain(response: httpx2.Response, chunks: AsyncIterator[bytes]) -> None:
    """Read the rest of a completed body in a background task so the connection can be reused.
    The answer is already complete: the client's response never waits for this tail."""
    _drain_in_background(response, chunks)


def _drain_in_background(response: httpx2.Response, chunks: AsyncIterator[bytes]) -> asyncio.Task:
    async def drain() -> None:
        try:
            seen = 0
            async with asyncio.timeout(DRAIN_TAIL_SECONDS):
                async for chunk in chunks:
                    seen += len(chunk)
                    if seen > DRAIN_TAIL_BYTES:
                        break
        except Exception:  # best effort (timeout, reset): aclose below drops the connection
            pass
        finally:
            await response.aclose()

    task = asyncio.get_running_loop().create_task(drain())
    _draining.add(task)
    task.add_done_callback(_draining.discard)
    return task


@functools.lru_cache(maxsize=64)
def _parsed_url(url: str) -> httpx2.URL:
    """httpx2 parses a str URL on every request (~2 % of a chat request's CPU in the profile); the
    chat endpoint's URL is one of a handful per configuration, so parse each once."""
    return httpx2.URL(url)


USER_ID_IN_PATH = re.compile(r"(?:^|/)users/([0-9A-Za-z_-]{1,64})/")


def _accept_encoding() -> str:
    """Advertise only encodings httpx2 can decode here (br / zstd need optional packages)."""
    encodings = ["gzip", "deflate"]
    try:
        import brotli  # noqa: F401

        encodings.append("br")
    except ImportError:
        try:
            import brotlicffi  # noqa: F401

            encodings.append("br")
        except ImportError:
            pass
    try:
        import zstandard  # noqa: F401

        encodings.append("zstd")
    except ImportError:
        pass
    return ", ".join(encodings)


ACCEPT_ENCODING = _accept_encoding()


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Uploaded:
    file_id: str
    file_uri: str


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class AssetInfo:
    asset_id: str
    name: str = ""
    path: str = ""
    content_type: str = ""
    size: int | None = None
    created_at: str = ""


@dataclass(frozen=True, slots=True)
class AssetPage:
    assets: list[AssetInfo]
    next_cursor: str | None = None
    raw: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# URL helpers
# ---------------------------------------------------------------------------------------------

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def join_url(base: str, path: str) -> str:
    """Join a base URL (which may carry a path prefix) and a path, without doubling slashes."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in; host lower-cased."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        port = -1
    return scheme, host, port


def _site(host: str) -> str:
    """A registrable-domain approximation (last two labels); IP literals are their own site."""
    if not host or host.replace(".", "").isdigit() or ":" in host:
        return host
    labels = host.split(".")
    return ".".join(labels[-2:])


def cookie_header(token: str, *, clearance_mode: str = "none", cf_cookies: str = "", cf_clearance: str = "") -> str:
    """`sso=<t>; sso-rw=<t>` (+ the manual Cloudflare cookies), docs/upstream-protocol.md §3.1.

    In `manual` clearance mode the operator's cookie string is appended (its own sso/sso-rw pairs,
    if pasted, are dropped so the account's token always wins); a bare `cf_clearance` value is
    inserted as `cf_clearance=<value>`, replacing any cf_clearance pair of the string.
    """
    pairs = [f"sso={token}", f"sso-rw={token}"]
    if clearance_mode == "manual":
        extra: list[str] = []
        text = (cf_cookies or "").strip()
        if text and "=" not in text and ";" not in text:
            cf_clearance = cf_clearance or text  # a bare value pasted into the cookie-string field
            text = ""
        for part in text.split(";"):
            part = part.strip()
            if not part or "=" not in part:
                continue
            name = part.split("=", 1)[0].strip().lower()
            if name in ("sso", "sso-rw"):
                continue
            if cf_clearance and name == "cf_clearance":
                continue
            extra.append(part)
        if cf_clearance:
            extra.append(f"cf_clearance={cf_clearance.strip()}")
        pairs.extend(extra)
    return "; ".join(pairs)


def user_id_from_path(path: str) -> str:
    match = USER_ID_IN_PATH.search(path or "")
    return match.group(1) if match else ""


async def _read_capped(response: httpx2.Response, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= cap:
            break
    return b"".join(chunks)[:cap]


_semaphores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]]" = (
    weakref.WeakKeyDictionary()
)


def _semaphore(name: str, size: int) -> asyncio.Semaphore:
    """A process-wide (per event loop) concurrency limit, e.g. batch.asset_upload_concurrency."""
    loop = asyncio.get_running_loop()
    per_loop = _semaphores.setdefault(loop, {})
    sem = per_loop.get(name)
    if sem is None:
        sem = per_loop[name] = asyncio.Semaphore(max(1, int(size)))
    return sem


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


class GrokClient:
    """One account's view of grok.com. Cheap to build (the httpx2 client underneath is pooled).

    `cfg` (settings with `.get(key, default)`) and `egress` default to the host's (grokweb/host.py:
    the runtime config snapshot and the proxy pool of the core); `cfg` is read once here.
    """

    def __init__(self, *, token: str, user_id: str = "", egress: Egress | None = None, cfg: Any = None) -> None:
        cfg = settings_current(cfg)
        self.cfg = cfg
        self.token = token
        self.user_id = user_id
        self.egress = egress if egress is not None else host_get().egress_pick(cfg=cfg)
        self.web_base = cfg.get("upstream.web_base_url").rstrip("/")
        self.assets_base = cfg.get("upstream.assets_base_url").rstrip("/")
        self.ws_base = cfg.get("upstream.ws_base_url").rstrip("/")
        self.imagine_public_base = cfg.get("upstream.imagine_public_base_url").rstrip("/")
        self.livekit_url = cfg.get("upstream.livekit_url")
        self.statsig = (cfg.get("upstream.static_statsig_id") or "").strip()
        self.accept_language = cfg.get("upstream.accept_language") or "en-US,en;q=0.9"
        self.user_agent = cfg.get("proxy.clearance.user_agent") or ""
        self.retry_on_codes = status_codes_parse(cfg.get("retry.on_codes", "503"))
        self.credentialed_origins = frozenset(origin_of(u) for u in (self.web_base, self.assets_base, self.ws_base))
        self._web_origin = origin_of(self.web_base)
        parts = urlsplit(self.web_base)
        self.origin_header = f"{parts.scheme}://{parts.netloc}"

    def __repr__(self) -> str:  # never show the token
        return f"GrokClient(user_id={self.user_id!r}, egress={self.egress.label!r})"

    # -- URLs and credential scope -------------------------------------------------------------

    def web_url(self, path: str) -> str:
        return join_url(self.web_base, path)

    def ws_url(self, path: str) -> str:
        return join_url(self.ws_base, path)

    def asset_url(self, url_or_path: str) -> str:
        """Absolute URL of an asset: absolute URLs unchanged, `users/…` paths joined with the assets base."""
        text = (url_or_path or "").strip()
        if text.startswith(("http://", "https://")):
            return text
        return join_url(self.assets_base, text)

    def is_credentialed(self, url: str | httpx2.URL) -> bool:
        """True only for the web, assets and WebSocket origins (scheme + host + port)."""
        return origin_of(str(url)) in self.credentialed_origins

    def is_public_imagine(self, url: str) -> bool:
        return origin_of(url) == origin_of(self.imagine_public_base)

    def cookie(self) -> str:
        cfg = self.cfg
        return cookie_header(
            self.token,
            clearance_mode=cfg.get("proxy.clearance.mode", "none"),
            cf_cookies=cfg.get("proxy.clearance.cf_cookies", ""),
            cf_clearance=cfg.get("proxy.clearance.cf_clearance", ""),
        )

    def _fetch_site(self, url: str) -> str:
        target = origin_of(url)
        if target == self._web_origin:
            return "same-origin"
        if _site(target[1]) == _site(self._web_origin[1]) and target[0] == self._web_origin[0]:
            return "same-site"
        return "cross-site"

    # -- header sets (docs/upstream-protocol.md §3.2) ---------------------------------------------------------------

    def rest_headers(
        self, *, url: str, referer_path: str = "/", content_type: str | None = "application/json", request_id: bool = True
    ) -> dict[str, str]:
        """The minimal REST set. Raises if `url` is not a credentialed origin (defence in depth)."""
        if not self.is_credentialed(url):
            raise ValueError(f"refusing to build credentialed headers for {origin_of(url)[1]}")
        headers = {
            "Accept": "*/*",
            "Accept-Encoding": ACCEPT_ENCODING,
            "Accept-Language": self.accept_language,
            "Origin": self.origin_header,
            "Referer": join_url(self.web_base, referer_path),
            "Sec-Fetch-Dest": "empty",
            "Sec-Fetch-Mode": "cors",
            "Sec-Fetch-Site": self._fetch_site(url),
            "User-Agent": self.user_agent,
            "Cookie": self.cookie(),
        }
        if content_type:
            headers["Content-Type"] = content_type
        if request_id:
            headers["x-xai-request-id"] = str(uuid.uuid4())
        if self.statsig and origin_of(url) == self._web_origin:
            headers["x-statsig-id"] = self.statsig  # verbatim, never generated or altered (§3.3)
        return headers

    def navigation_headers(self, *, url: str, referer_path: str = "/") -> dict[str, str]:
        """Browser-navigation set for asset downloads (E7): no Content-Type, no Origin."""
        if not self.is_credentialed(url):
            raise ValueError(f"refusing to build credentialed headers for {origin_of(url)[1]}")
        return {
            "Accept": NAVIGATION_ACCEPT,
            "Accept-Encoding": ACCEPT_ENCODING,
            "Accept-Language": self.accept_language,
            "Cache-Control": "no-cache",
            "Pragma": "no-cache",
            "Priority": "u=0, i",
            "Referer": join_url(self.web_base, referer_path),
            "Sec-Fetch-Dest": "document",
            "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Site": self._fetch_site(url),
            "Upgrade-Insecure-Requests": "1",
            "User-Agent": self.user_agent,
            "Cookie": self.cookie(),
        }

    def ws_headers(self) -> dict[str, str]:
        """WebSocket upgrade set (E11): Origin, User-Agent, Accept-Language, no-cache, Cookie."""
        return {
            "Origin": self.origin_header,
            "User-Agent": self.user_agent,
            "Accept-Language": self.accept_language,
            "Cache-Control": "no-cache",
            "Pragma": "no-cache",
            "Cookie": self.cookie(),
        }

    def public_headers(self, *, accept: str = "image/avif,image/webp,image/*,*/*;q=0.8") -> dict[str, str]:
        """For non-credentialed hosts (public Imagine): no cookie, no grok headers."""
        return {"Accept": accept, "Accept-Encoding": ACCEPT_ENCODING, "User-Agent": self.user_agent}

    # -- plumbing ------------------------------------------------------------------------------

    def _timeout(self, key: str, default: float = 60.0) -> float:
        try:
            value = float(self.cfg.get(key, default))
        except (TypeError, ValueError):
            value = default
        return value if value > 0 else default

    def _transport_failed(self, exc: BaseException, endpoint: str) -> UpstreamError:
        err = classify_transport(exc, endpoint=endpoint)
        if err.kind in (UpstreamKind.TRANSPORT, UpstreamKind.TIMEOUT):
            egress_report(egress=self.egress, ok=False, error=err.detail)
        return err

    def _http_failed(self, *, status: int, body: bytes, response: httpx2.Response | None, endpoint: str,
                     mode: str | None = None) -> UpstreamError:
        return classify_http(
            status=status,
            body=body,
            content_type=response.headers.get("content-type", "") if response is not None else "",
            endpoint=endpoint,
            mode=mode,
            headers=response.headers if response is not None else None,
            retry_on_codes=self.retry_on_codes,
        )

    def _learn_user_id(self, path: str) -> None:
        if not self.user_id:
            self.user_id = user_id_from_path(path)

    async def _rest(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        files: Any = None,
        data: Mapping[str, str] | None = None,
        referer_path: str = "/",
        timeout: float,
        mode: str | None = None,
        request_id: bool = True,
        allow_empty: bool = False,
    ) -> Any:
        """One REST call to the web base; returns the parsed JSON body (None when empty and allowed)."""
        url = self.web_url(path)
        multipart = files is not None
        headers = self.rest_headers(
            url=url,
            referer_path=referer_path,
            content_type=None if (multipart or json_body is None) else "application/json",
            request_id=request_id,
        )
        content = orjson.dumps(json_body) if json_body is not None and not multipart else None
        try:
            client = await upstream_client(egress=self.egress, cfg=self.cfg)
            request = client.build_request(
                method, url, headers=headers, content=content, params=params, files=files, data=data,
                timeout=httpx2.Timeout(timeout),
            )
            async with asyncio.timeout(timeout):
                response = await client.send(request, stream=True)
                try:
                    if response.status_code not in (200, 201, 204):
                        body = await _read_capped(response, ERROR_BODY_CAP)
                        egress_report(egress=self.egress, ok=True)
                        raise self._http_failed(status=response.status_code, body=body, response=response,
                                                endpoint=endpoint, mode=mode)
                    body = await _read_capped(response, JSON_BODY_CAP + 1)
                finally:
                    await response.aclose()
        except UpstreamError:
            raise
        except (httpx2.HTTPError, OSError, TimeoutError) as exc:
            raise self._transport_failed(exc, endpoint) from exc
        egress_report(egress=self.egress, ok=True)
        if len(body) > JSON_BODY_CAP:
            raise self._http_failed(status=response.status_code, body=b"(body too large)", response=response,
                                    endpoint=endpoint, mode=mode)
        if not body.strip():
            if allow_empty:
                return None
            raise self._http_failed(status=response.status_code, body=body, response=response, endpoint=endpoint, mode=mode)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise self._http_failed(status=response.status_code, body=body, response=response,
                                    endpoint=endpoint, mode=mode) from None

    def _unexpected(self, data: Any, *, endpoint: str, what: str) -> UpstreamError:
        body = orjson.dumps(data)[:2000] if not isinstance(data, (bytes, str)) else data
        err = classify_http(status=200, body=body, content_type="application/json", endpoint=endpoint)
        err.detail = f"{what}; {err.detail}"[:300]
        return err

    # -- chat (E1) -----------------------------------------------------------------------------

    def build_chat_payload(self, *, message: str, mode: str, file_ids: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
        """chat_payload() with the account-independent feature switches of the runtime config."""
        return chat_payload(
            message=message,
            mode=mode,
            file_ids=file_ids,
            temporary=bool(self.cfg.get("features.temporary", True)),
            memory=bool(self.cfg.get("features.memory", False)),
            custom_personality=self.cfg.get("features.custom_instruction", "") or "",
        )

    @contextlib.asynccontextmanager
    async def chat_stream(
        self,
        *,
        payload: dict[str, Any],
        referer_path: str = "/",
        mode: str | None = None,
        idle_timeout: float | None = None,
        total_timeout: float | None = None,
    ) -> AsyncIterator[AsyncIterator[Any]]:
        """POST E1 and yield an async iterator of neutral events (grokweb/events.py).

        Non-200 answers raise the classified UpstreamError before anything is yielded. The idle
        timeout (gap between chunks, also the wait for the response headers) defaults to
        `chat.timeout` (`video.timeout` for video payloads, `image.timeout` for image edits);
        the whole stream is capped by `total_timeout` (default CHAT_TOTAL_CAP), checked as each chunk arrives. Leaving the
        context before the answer completed — by an exception, by cancellation or early — closes
        the upstream response at once; after `Completed`, the rest of the body (the title line) is
        read in the background (≤ DRAIN_TAIL_SECONDS)
        — so the connection returns to the pool.
        """
        from grokweb.parse import ChatStreamParser

        endpoint = EP_CHAT
        model_name = payload.get("modelName")
        mode = mode if mode is not None else payload.get("modeId")
        if idle_timeout is None:
            key = {"imagine-video-gen": "video.timeout", "imagine-image-edit": "image.timeout"}.get(model_name, "chat.timeout")
            idle_timeout = self._timeout(key)
        total = total_timeout or CHAT_TOTAL_CAP
        url = self.web_url(endpoint)
        headers = self.rest_headers(url=url, referer_path=referer_path)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            client = await upstream_client(egress=self.egress, cfg=self.cfg)
            request = client.build_request(
                "POST", _parsed_url(url), headers=headers, content=orjson.dumps(payload),
                timeout=httpx2.Timeout(connect=min(15.0, idle_timeout), read=idle_timeout, write=idle_timeout,
                                      pool=idle_timeout),
            )
            async with asyncio.timeout(min(idle_timeout, total)):
                response = await client.send(request, stream=True)
        except (httpx2.HTTPError, OSError, TimeoutError) as exc:
            raise self._transport_failed(exc, endpoint) from exc
        egress_report(egress=self.egress, ok=True)
        events: AsyncIterator[Any] | None = None
        parser = None
        chunks = response.aiter_bytes()
        try:
            if response.status_code != 200:
                try:
                    async with asyncio.timeout(idle_timeout):
                        body = await _read_capped(response, ERROR_BODY_CAP)
                except (httpx2.HTTPError, OSError, TimeoutError):
                    body = b""
                raise self._http_failed(status=response.status_code, body=body, response=response,
                                        endpoint=endpoint, mode=mode)
            parser = ChatStreamParser(assets_base_url=self.assets_base, endpoint=endpoint, mode=mode,
                                      user_id=self.user_id)
            events = self._chat_events(response, parser, idle_timeout, started + total, endpoint, chunks=chunks)
            yield events
        finally:
            if events is not None:
                await events.aclose()  # type: ignore[attr-defined]
            if parser is not None and parser.completed and not response.is_closed:
                # Completed: only the short tail (title line) is left. Read it, so the HTTP/1.1
                # connection goes back to the pool instead of being closed (measured in
                # docs/benchmarks.md: a new upstream connection per request otherwise).
                _drain(response, chunks)
            else:
                await response.aclose()

    async def _chat_events(
        self, response: httpx2.Response, parser: Any, idle: float, deadline_at: float, endpoint: str,
        chunks: AsyncIterator[bytes] | None = None,
    ) -> AsyncIterator[Any]:
        # Consumption pattern of grokweb/parse.py: yield what feed() returned, then
        # check() (an in-band error after those events raises here), stop at Completed / [DONE],
        # finish() only when the body ended before completion.
        loop = asyncio.get_running_loop()
        if chunks is None:
            chunks = response.aiter_bytes()
        got_data = False
        while True:
            remaining = deadline_at - loop.time()
            if remaining <= 0:
                raise classify_transport(TimeoutError("the stream exceeded its total deadline"), endpoint=endpoint)
            try:
                # The idle timeout is httpx2's read timeout (set on the request): no timer of our own
                # per read. The total deadline is checked between chunks, so a stream that stalls
                # right before it ends at most one idle timeout later.
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except httpx2.RemoteProtocolError as exc:
                if got_data:
                    # The connection broke mid-body: the parser reports an incomplete stream as
                    # truncated (EOF before the soft stop), which is what happened.
                    break
                raise classify_transport(exc, endpoint=endpoint) from exc
            except (httpx2.HTTPError, OSError, TimeoutError) as exc:
                raise classify_transport(exc, endpoint=endpoint) from exc
            got_data = True
            for event in parser.feed(chunk):
                yield event
            parser.check()
            if parser.completed or parser.done:
                return
        if not parser.completed:
            for event in parser.finish():
                yield event
            parser.check()

    # -- quotas (E8, E9) -----------------------------------------------------------------------

    async def rate_limits(self, *, mode: str) -> dict[str, Any]:
        """Raw E8 JSON for one mode (`{"windowSizeSeconds","remainingQueries","totalQueries",…}`)."""
        data = await self._rest("POST", EP_RATE_LIMITS, endpoint=EP_RATE_LIMITS, json_body={"modelName": mode},
                                timeout=RATE_LIMITS_TIMEOUT, mode=mode)
        if not isinstance(data, dict):
            raise self._unexpected(data, endpoint=EP_RATE_LIMITS, what="rate limits are not an object")
        return data

    async def imagine_quota(self) -> dict[str, Any]:
        """Raw E9 JSON: keys image, imagePro, imageEdit, video, video720p (each null or a window)."""
        data = await self._rest("POST", EP_IMAGINE_QUOTA, endpoint=EP_IMAGINE_QUOTA, json_body={},
                                timeout=RATE_LIMITS_TIMEOUT)
        if not isinstance(data, dict):
            raise self._unexpected(data, endpoint=EP_IMAGINE_QUOTA, what="imagine quota is not an object")
        return data

    # -- uploads and assets (E3–E7) ------------------------------------------------------------

    async def upload_file(self, *, name: str, mime: str, data: bytes) -> Uploaded:
        """E3 JSON upload (base64 content). Limited by `batch.asset_upload_concurrency`."""
        body = {"fileName": name, "fileMimeType": mime, "content": base64.b64encode(data).decode("ascii")}
        async with _semaphore("upload", self.cfg.get("batch.asset_upload_concurrency", 10)):
            result = await self._rest("POST", EP_UPLOAD, endpoint=EP_UPLOAD, json_body=body,
                                      timeout=self._timeout("asset.upload_timeout"))
        file_id = str((result or {}).get("fileMetadataId") or (result or {}).get("fileId") or "") if isinstance(result, dict) else ""
        if not file_id:
            raise self._unexpected(result, endpoint=EP_UPLOAD, what="no fileMetadataId in the upload answer")
        file_uri = str(result.get("fileUri") or "")
        if not file_uri and self.user_id:
            file_uri = f"users/{self.user_id}/{file_id}/content"
        self._learn_user_id(file_uri)
        return Uploaded(file_id=file_id, file_uri=file_uri)

    async def upload_file_multipart(
        self, *, name: str, mime: str, data: bytes, file_source: str = "IMAGINE_SELF_UPLOAD_FILE_SOURCE",
        fallback: bool = True,
    ) -> Uploaded:
        """E4 multipart upload (no x-xai-request-id, Referer /imagine); falls back to E3 when the
        answer carries no file id yet (asynchronous completion) and `fallback` is true."""
        async with _semaphore("upload", self.cfg.get("batch.asset_upload_concurrency", 10)):
            result = await self._rest(
                "POST", EP_UPLOAD_MULTIPART, endpoint=EP_UPLOAD_MULTIPART,
                files={"file": (name, data, mime)}, data={"file_source": file_source} if file_source else None,
                referer_path="/imagine", timeout=self._timeout("asset.upload_timeout"), request_id=False,
            )
        if not isinstance(result, dict):
            raise self._unexpected(result, endpoint=EP_UPLOAD_MULTIPART, what="upload answer is not an object")
        terminal = result.get("terminalError")
        if terminal:
            message = terminal.get("message") if isinstance(terminal, dict) else str(terminal)
            raise classify_http(status=400, body=orjson.dumps({"error": {"message": message or "upload rejected"}}),
                                content_type="application/json", endpoint=EP_UPLOAD_MULTIPART)
        meta = result.get("fileMetadata") if isinstance(result.get("fileMetadata"), dict) else {}
        file_id = str(meta.get("fileMetadataId") or meta.get("fileId") or "")
        if not file_id:
            if fallback:
                return await self.upload_file(name=name, mime=mime, data=data)
            raise self._unexpected(result, endpoint=EP_UPLOAD_MULTIPART, what="upload accepted without a file id")
        file_uri = str(meta.get("fileUri") or "")
        self._learn_user_id(file_uri)
        return Uploaded(file_id=file_id, file_uri=file_uri)

    async def list_assets(self, *, cursor: str | None = None, limit: int | None = None) -> AssetPage:
        """E5; cursor/limit passed through when given."""
        params: dict[str, Any] = {}
        if cursor:
            params["cursor"] = cursor
        if limit:
            params["limit"] = int(limit)
        async with _semaphore("list", self.cfg.get("batch.asset_list_concurrency", 50)):
            data = await self._rest("GET", EP_ASSETS, endpoint=EP_ASSETS, params=params or None,
                                    referer_path="/files", timeout=self._timeout("asset.list_timeout"))
        if not isinstance(data, dict):
            raise self._unexpected(data, endpoint=EP_ASSETS, what="asset list is not an object")
        items = data.get("assets")
        if items is None:
            items = data.get("items")
        if not isinstance(items, list):
            raise self._unexpected(data, endpoint=EP_ASSETS, what="no assets array")
        assets = []
        for item in items:
            if not isinstance(item, dict):
                continue
            asset_id = str(item.get("assetId") or item.get("id") or "")
            if not asset_id:
                continue
            size = item.get("fileSize")
            try:
                size = int(size) if size is not None else None
            except (TypeError, ValueError):
                size = None
            path = str(item.get("filePath") or item.get("fileUri") or "")
            self._learn_user_id(path)
            assets.append(AssetInfo(
                asset_id=asset_id,
                name=str(item.get("fileName") or item.get("name") or ""),
                path=path,
                content_type=str(item.get("contentType") or item.get("mimeType") or ""),
                size=size,
                created_at=str(item.get("createdAt") or item.get("createTime") or ""),
            ))
        next_cursor = data.get("nextCursor") or data.get("nextPageToken") or data.get("cursor") or None
        return AssetPage(assets=assets, next_cursor=str(next_cursor) if next_cursor else None, raw=data)

    async def delete_asset(self, *, asset_id: str) -> None:
        """E6 (200 or 204, empty or JSON body)."""
        path = EP_ASSET_DELETE.format(asset_id=quote_path(asset_id))
        async with _semaphore("delete", self.cfg.get("batch.asset_delete_concurrency", 50)):
            await self._rest("DELETE", path, endpoint=EP_ASSET_DELETE, referer_path="/files",
                             timeout=self._timeout("asset.delete_timeout"), allow_empty=True)

    async def download_asset(self, *, url: str, dest: Path, max_bytes: int, binary: bool = True) -> Downloaded:
        """E7: stream a file to `dest` (temp file in the same folder, then an atomic rename).

        Relative `users/…` paths are joined with the assets base. Credentialed origins get the
        navigation header set and the cookie; anything else (public Imagine URLs) is fetched
        without credentials. Rejects empty bodies, bodies over `max_bytes`, and — for binary
        media — bodies starting with `<` or `{` (an HTML/JSON error page served with 200).
        """
        absolute = self.asset_url(url)
        if not absolute.startswith(("http://", "https://")):
            raise classify_http(status=400, body=b"not an http(s) asset URL", endpoint="assets")
        endpoint = urlsplit(absolute).path or "/"
        credentialed = self.is_credentialed(absolute)
        headers = self.navigation_headers(url=absolute) if credentialed else self.public_headers(accept="*/*")
        idle = self._timeout("asset.download_timeout")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                try:
                    client = await upstream_client(egress=self.egress, cfg=self.cfg)
                    request = client.build_request("GET", absolute, headers=headers, timeout=httpx2.Timeout(idle))
                    async with asyncio.timeout(idle * DOWNLOAD_TOTAL_FACTOR):
                        response, _cred = await send_with_redirects(client, request, credentialed=self.is_credentialed)
                        try:
                            if response.status_code != 200:
                                body = await _read_capped(response, ERROR_BODY_CAP)
                                egress_report(egress=self.egress, ok=True)
                                raise self._http_failed(status=response.status_code, body=body, response=response,
                                                        endpoint=endpoint)
                            content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                            head = b""
                            async for chunk in response.aiter_bytes():
                                if not chunk:
                                    continue
                                if binary and not head.strip():
                                    head += chunk[:ERROR_BODY_CAP]
                                    if head.lstrip()[:1] in (b"<", b"{"):
                                        # an HTML/JSON error page served as the file: classify it
                                        raise self._http_failed(status=200, body=head, response=response,
                                                                endpoint=endpoint)
                                size += len(chunk)
                                if size > max_bytes:
                                    raise UpstreamError(
                                        f"The upstream file at {endpoint} is larger than the {max_bytes}-byte limit.",
                                        kind=UpstreamKind.PROTOCOL, endpoint=endpoint, detail="file too large",
                                    )
                                fh.write(chunk)
                        finally:
                            await response.aclose()
                except UpstreamError:
                    raise
                except RedirectRefused as exc:
                    raise classify_http(status=exc.status or 302, body=str(exc), endpoint=endpoint) from exc
                except (httpx2.HTTPError, OSError, TimeoutError) as exc:
                    raise self._transport_failed(exc, endpoint) from exc
            egress_report(egress=self.egress, ok=True)
            if size == 0:
                raise classify_http(status=200, body=b"", endpoint=endpoint)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._learn_user_id(urlsplit(absolute).path)
        return Downloaded(path=dest, content_type=content_type, size=size)

    # -- media posts (E10) ---------------------------------------------------------------------

    async def media_post_create(self, *, media_type: str, prompt: str | None = None, media_url: str | None = None) -> str:
        """E10 → the post id (parent of an image edit or a video)."""
        body = media_post_payload(media_type=media_type, prompt=prompt, media_url=media_url)
        data = await self._rest("POST", EP_MEDIA_POST, endpoint=EP_MEDIA_POST, json_body=body,
                                referer_path="/imagine", timeout=self._timeout("video.timeout"))
        post = data.get("post") if isinstance(data, dict) else None
        post_id = str(post.get("id") or post.get("postId") or "") if isinstance(post, dict) else ""
        if not post_id:
            raise self._unexpected(data, endpoint=EP_MEDIA_POST, what="no post id in the answer")
        return post_id

    # -- Imagine WebSocket (E11) ---------------------------------------------------------------

    async def imagine_generate(
        self, *, prompt: str, aspect_ratio: str, pro: bool, n: int
    ) -> AsyncIterator[ImageProgress | ImageResult]:
        """Generate `n` images over the Imagine WebSocket; yields ImageProgress and ImageResult.

        Rounds of reset + input_text frames run until `n` unmoderated finals arrived (moderated
        slots are dropped). Waits: `image.stream_timeout` per frame, `image.timeout` per round.
        A socket the server closed is reopened (at most IMAGINE_MAX_RECONNECTS times in a row
        without a new image). Error frames and refused handshakes raise the classified
        UpstreamError; when every produced image was moderated, MODERATED is raised.
        Consume with `contextlib.aclosing(...)` so an early exit closes the socket at once.
        """
        endpoint = EP_IMAGINE_WS
        frame_wait = self._timeout("image.stream_timeout")
        round_wait = self._timeout("image.timeout")
        url = self.ws_url(endpoint)
        collected = 0
        moderated = 0
        rounds = 0
        reconnects = 0
        index_base = 0
        ws: Any = None
        loop = asyncio.get_running_loop()
        try:
            while collected < n:
                rounds += 1
                if rounds > IMAGINE_MAX_ROUNDS:
                    break
                if ws is None or ws.close_code is not None:
                    if ws is not None:
                        _close_in_background(ws)
                    ws = await self._imagine_open(url, endpoint)
                # No num_generations: the server picks the slot count (speed 6, quality 4) like the
                # reference client; surplus finals are simply not consumed.
                reset, text = imagine_frames(prompt=prompt, aspect_ratio=aspect_ratio, pro=pro)
                slots: dict[str, dict[str, Any]] = {}
                progress_in_round = False
                try:
                    await ws.send(orjson.dumps(reset).decode())
                    await ws.send(orjson.dumps(text).decode())
                    round_deadline = loop.time() + round_wait
                    while True:
                        remaining = round_deadline - loop.time()
                        if remaining <= 0:
                            raise classify_transport(TimeoutError("Imagine round timed out"), endpoint=endpoint)
                        try:
                            async with asyncio.timeout(min(frame_wait, remaining)):
                                raw = await ws.recv()
                        except TimeoutError as exc:
                            raise classify_transport(exc, endpoint=endpoint) from exc
                        frame = _ws_json(raw)
                        if frame is None:
                            continue
                        kind = frame.get("type")
                        if kind == "error":
                            raise classify_ws_error(frame, endpoint=endpoint)
                        slot_id = _slot_id(frame)
                        if kind == "json":
                            status = frame.get("current_status")
                            if status == "start_stage" and slot_id:
                                slot = slots.setdefault(slot_id, {"order": _order(frame, len(slots))})
                                yield ImageProgress(image_index=index_base + slot["order"], progress=0)
                            elif status == "completed" and slot_id:
                                slot = slots.setdefault(slot_id, {"order": _order(frame, len(slots))})
                                slot["done"] = True
                                slot["moderated"] = bool(frame.get("moderated"))
                        elif kind == "image" and slot_id:
                            slot = slots.setdefault(slot_id, {"order": _order(frame, len(slots))})
                            pct = _percent(frame.get("percentage_complete"))
                            if pct >= 100:
                                slot["blob"] = frame.get("blob") or ""
                                slot["url"] = frame.get("url") or ""
                            else:
                                yield ImageProgress(image_index=index_base + slot["order"], progress=pct,
                                                    url=str(frame.get("url") or ""))
                        # emit every slot that is now complete
                        for sid, slot in slots.items():
                            if slot.get("emitted") or not slot.get("done"):
                                continue
                            if slot.get("moderated"):
                                slot["emitted"] = True
                                moderated += 1
                                continue
                            if "blob" not in slot:
                                continue  # completed frame first; the final image frame follows
                            slot["emitted"] = True
                            progress_in_round = True
                            image_url = str(slot.get("url") or "")
                            self._learn_user_id(urlsplit(image_url).path)
                            yield ImageResult(url=image_url, image_index=collected, image_id=sid,
                                              blob_b64=str(slot["blob"]))
                            collected += 1
                            if collected >= n:
                                return
                        if slots and all(s.get("emitted") for s in slots.values()):
                            break  # round over
                except UpstreamError:
                    raise
                except Exception as exc:  # websockets.ConnectionClosed and friends
                    from websockets.exceptions import ConnectionClosed

                    if isinstance(exc, ConnectionClosed) and (progress_in_round or reconnects < IMAGINE_MAX_RECONNECTS):
                        reconnects = 0 if progress_in_round else reconnects + 1
                        ws = None  # reopened at the top of the next round
                        index_base += len(slots)
                        continue
                    raise self._transport_failed(exc, endpoint) from exc
                reconnects = 0
                index_base += len(slots)
            if collected == 0 and moderated:
                raise UpstreamError(
                    "Every generated image was blocked by the upstream content policy.",
                    kind=UpstreamKind.MODERATED, endpoint=endpoint, detail=f"{moderated} moderated",
                    status=400, type="invalid_request_error", code="content_policy_violation",
                )
            if collected < n:
                raise classify_http(status=200, body=f"only {collected} of {n} images after {rounds - 1} rounds",
                                    endpoint=endpoint)
        finally:
            if ws is not None:
                _close_in_background(ws)

    async def _imagine_open(self, url: str, endpoint: str) -> Any:
        try:
            connection = await ws_connect(url, headers=self.ws_headers(), egress=self.egress,
                                          open_timeout=self._timeout("image.stream_timeout"))
        except UpstreamError:
            raise
        except Exception as exc:
            err = classify_transport(exc, endpoint=endpoint)
            if err.kind in (UpstreamKind.TRANSPORT, UpstreamKind.TIMEOUT):
                egress_report(egress=self.egress, ok=False, error=err.detail)
            raise err from exc
        egress_report(egress=self.egress, ok=True)
        return connection

    # -- voice (E12) and session (E13) ---------------------------------------------------------

    async def livekit_token(
        self, *, voice: str = "ara", personality: str = "assistant", speed: float = 1.0, instruction: str = ""
    ) -> dict[str, Any]:
        """E12 → {"token","url","participant_name","room_name"} (the browser talks to LiveKit itself)."""
        body = livekit_payload(livekit_url=self.livekit_url, voice=voice, personality=personality, speed=speed,
                               instruction=instruction)
        data = await self._rest("POST", EP_LIVEKIT, endpoint=EP_LIVEKIT, json_body=body,
                                timeout=self._timeout("voice.timeout"))
        token = data.get("token") if isinstance(data, dict) else None
        if not token:
            raise self._unexpected(data, endpoint=EP_LIVEKIT, what="no token in the answer")
        return {
            "token": str(token),
            "url": str(data.get("livekitUrl") or data.get("url") or self.livekit_url),
            "participant_name": str(data.get("participantName") or data.get("participant_name") or data.get("identity") or ""),
            "room_name": str(data.get("roomName") or data.get("room_name") or data.get("room") or ""),
        }

    async def session_identity(self) -> dict[str, Any]:
        """E13 → {"user_id","email","status","raw"}; also remembers the user id on this client.

        `status: unauthenticated` / `blocked` are the credential markers of docs/upstream-protocol.md §11.5 and raise
        the same UpstreamError as the corresponding HTTP answers.
        """
        data = await self._rest("GET", EP_SESSION, endpoint=EP_SESSION, timeout=RATE_LIMITS_TIMEOUT)
        if not isinstance(data, dict):
            raise self._unexpected(data, endpoint=EP_SESSION, what="session is not an object")
        status = str(data.get("status") or "")
        if status.lower() == "unauthenticated":
            raise classify_http(status=401, endpoint=EP_SESSION, content_type="application/json", body=orjson.dumps(
                {"code": 16, "message": "Session status unauthenticated [WKE=unauthenticated:invalid-credentials]"}))
        if status.lower() == "blocked":
            raise classify_http(status=403, endpoint=EP_SESSION, content_type="application/json", body=orjson.dumps(
                {"code": 7, "message": "User is blocked (session status blocked) [WKE=unauthorized:blocked-user]"}))
        session = data.get("session") if isinstance(data.get("session"), dict) else {}
        user = data.get("user") if isinstance(data.get("user"), dict) else {}
        user_id = str(session.get("userId") or user.get("id") or data.get("userId") or data.get("sub")
                      or session.get("sub") or "")
        if not user_id:
            raise self._unexpected(data, endpoint=EP_SESSION, what="no user id in the session")
        self.user_id = user_id
        return {
            "user_id": user_id,
            "email": str(session.get("email") or user.get("email") or data.get("email") or ""),
            "status": status,
            "raw": data,
        }


# ---------------------------------------------------------------------------------------------
# Imagine frame helpers
# ---------------------------------------------------------------------------------------------

_closing: set[asyncio.Task] = set()


def _close_in_background(ws: Any) -> None:
    """Close a WebSocket without making the consumer wait for the closing handshake: the server
    may still be streaming surplus slots and answer the close frame only after them."""
    try:
        task = asyncio.get_running_loop().create_task(ws.close())
    except RuntimeError:  # no running loop (interpreter shutdown): drop the socket
        return
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_IMAGE_ID_IN_URL = re.compile(r"/images/([0-9A-Za-z-]+)\.[A-Za-z0-9]+")


def _ws_json(raw: Any) -> dict | None:
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", "replace")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # malformed frame: skipped (the per-frame wait still bounds the round)
    return data if isinstance(data, dict) else None


def _slot_id(frame: dict) -> str:
    for key in ("image_id", "job_id", "id"):
        if frame.get(key):
            return str(frame[key])
    match = _IMAGE_ID_IN_URL.search(str(frame.get("url") or ""))
    return match.group(1) if match else ""


def _order(frame: dict, default: int) -> int:
    for key in ("order", "side_by_side_index", "grid_index"):
        value = frame.get(key)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return default


def _percent(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


__all__ = [
    "AssetInfo",
    "AssetPage",
    "Downloaded",
    "GrokClient",
    "Uploaded",
    "chat_payload",
    "cookie_header",
    "image_edit_payload",
    "imagine_frames",
    "join_url",
    "livekit_payload",
    "media_post_payload",
    "origin_of",
    "size_to_aspect_ratio",
    "user_id_from_path",
    "video_aspect_ratio",
    "video_extension_payload",
    "video_payload",
    "video_segments",
]
