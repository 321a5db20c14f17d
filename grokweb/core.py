"""The Grok Web client's core: settings, URLs, credential scope, header sets, REST plumbing.

GrokClient (grokweb/client.py) is this core plus its calls along their seams: chat
(grokweb/chat.py), uploads and assets (grokweb/assets.py), Imagine and media posts
(grokweb/imagine.py); the quota probe, voice token and session stay here. Together they are the
only code that knows grok.com paths, headers and payloads.

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
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx2
import orjson

from grokweb.classify import (
    UpstreamError,
    UpstreamKind,
    classify_http,
    classify_transport,
    status_codes_parse,
)
from grokweb.egress import Egress, egress_report
from grokweb.host import host_get, settings_current
from grokweb.payloads import livekit_payload
from grokweb.transport import upstream_client

EP_RATE_LIMITS = "/rest/rate-limits"
EP_LIVEKIT = "/rest/livekit/tokens"
EP_SESSION = "/api/auth/session"
NAVIGATION_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"
)
ERROR_BODY_CAP = 64 * 1024  # bytes of a non-200 body read for classification
JSON_BODY_CAP = 8 * 1024 * 1024
RATE_LIMITS_TIMEOUT = 20.0  # the reference's per-probe timeout


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


async def read_capped(response: httpx2.Response, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= cap:
            break
    return b"".join(chunks)[:cap]



# ---------------------------------------------------------------------------------------------
# The core of the client
# ---------------------------------------------------------------------------------------------


class GrokCore:
    """One account's view of grok.com: settings, URLs, credential scope, header sets and the REST
    plumbing every call goes through. GrokClient (grokweb/client.py) adds the calls: chat, assets,
    Imagine. Cheap to build (the httpx2 client underneath is pooled).

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
                        body = await read_capped(response, ERROR_BODY_CAP)
                        egress_report(egress=self.egress, ok=True)
                        raise self._http_failed(status=response.status_code, body=body, response=response,
                                                endpoint=endpoint, mode=mode)
                    body = await read_capped(response, JSON_BODY_CAP + 1)
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

    # -- quotas (E8, E9) -----------------------------------------------------------------------

    async def rate_limits(self, *, mode: str) -> dict[str, Any]:
        """Raw E8 JSON for one mode (`{"windowSizeSeconds","remainingQueries","totalQueries",…}`)."""
        data = await self._rest("POST", EP_RATE_LIMITS, endpoint=EP_RATE_LIMITS, json_body={"modelName": mode},
                                timeout=RATE_LIMITS_TIMEOUT, mode=mode)
        if not isinstance(data, dict):
            raise self._unexpected(data, endpoint=EP_RATE_LIMITS, what="rate limits are not an object")
        return data

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
