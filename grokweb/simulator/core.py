"""The simulator's state and its framework-free request handling (docs/upstream-protocol.md §15).

``Simulator.handle(SimRequest) -> SimResponse`` answers every HTTP path; ``Simulator.websocket`` runs
the WebSocket roles. The ASGI app (:mod:`.asgi`) and the ``httpx.MockTransport`` (:mod:`.transport`)
are thin adapters around these two calls.

Determinism: ids are UUIDs derived from (seed, token, per-token request counter, purpose); timestamps
come from the virtual clock (``time_scale`` 0 freezes it; ``advance()`` moves it).
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable
from urllib.parse import parse_qsl

import orjson

from . import media
from .tokens import EXAMPLE_TOKENS, Scenario, TokenError, apply_directive, parse_token

MODES = ("auto", "fast", "expert", "heavy", "grok-420-computer-use-sa")
PRODUCTS = ("image", "imagePro", "imageEdit", "video", "video720p")

# Spec §9.3: (totals per mode, window seconds).
TIER_TABLE: dict[str, tuple[dict[str, int], int]] = {
    "basic": ({"fast": 30}, 86400),
    "super": ({"auto": 50, "fast": 140, "expert": 50, "grok-420-computer-use-sa": 50}, 7200),
    "heavy": ({"auto": 150, "fast": 400, "expert": 150, "heavy": 20, "grok-420-computer-use-sa": 150}, 7200),
}

# ---------------------------------------------------------------- error bodies (docs/upstream-protocol.md §15.7)
AUTH_BODY = {"error": {"code": 16, "message": "Failed to look up session ID. [WKE=unauthenticated:invalid-credentials]", "details": []}}
BLOCKED_BODY = {"code": 7, "message": "User is blocked: Bot abuse - free tier account 1234567890 [WKE=unauthorized:blocked-user]", "details": []}
EMAIL_BODY = {"code": 3, "message": "This email domain has been rejected. [WKE=account:email-domain-rejected]", "details": []}
ANTIBOT_BODY = {"error": {"code": 7, "message": "Request rejected by anti-bot rules.", "details": []}}
MODERATED_BODY = {"error": {"code": "content-moderated", "message": "rejected"}}
RATE_BODY = {"error": {"code": 8, "message": "Too many requests", "details": []}}
MODEL_NOT_FOUND_BODY = {"code": 5, "message": "Model not found", "details": []}
UPLOAD_REJECTED_BODY = {"error": {"message": "reference rejected"}}
UNAVAILABLE_BODY = {"error": {"code": 14, "message": "unavailable", "details": []}}
CF_HTML = (
    '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>'
    '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8"></head><body>'
    '<div id="challenge-body-text">Checking if the site connection is secure</div>'
    '<script src="/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1?ray=sim"></script>'
    "</body></html>"
)
ERROR_HTML = "<!DOCTYPE html><html><head><title>{status} Error</title></head><body><h1>{status}</h1><p>The server encountered a temporary error.</p></body></html>"

DEFAULT_KNOBS: dict[str, Any] = {
    "pace": 0.0,
    "require_cookie_pair": False,
    "require_statsig": "",            # "" off | "any" | exact expected value
    "require_clearance": None,        # {"cf_clearance": str, "user_agent": str}
    "non_sim_tokens": "basic",        # basic | reject
    "final_metadata": "none",         # none | empty | nonempty
    "exhausted": "429",               # 429 | inband
    "imagine_percent_strings": False,
    "imagine_close_after_round": False,
    "imagine_moderated_orders": [],
    "imagine_preview_frames": 2,
    "max_concurrent_per_account": 0,
    "upload_v2": "ok",                # ok | terminal_error | upload_id_only
    "delete_status": 200,             # 200 | 204
    "error_body": "json",             # json | html (5xx bodies)
    "basic_auto_total": 0,            # 0 | 7 | 20
    "quota_overrides": {},            # {mode|product: total}
    "window_overrides": {},           # {mode|product: seconds}
    "imagine_quota": {"image": 100, "imagePro": 50, "imageEdit": 100, "video": 50, "video720p": 20},
    "imagine_window": 86400,
    "lite_image_error": False,
    "inband_image_chunk": False,
    "download_delay_ms": 0,
    "answer_tokens": None,
    "chars_per_token": None,
}


@dataclass
class SimRequest:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    host: str = ""

    @classmethod
    def build(cls, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes = b"") -> "SimRequest":
        path, _, qs = raw_path.partition("?")
        merged: dict[str, str] = {}
        for k, v in headers:
            k = k.lower()
            if k in merged:
                merged[k] = merged[k] + ("; " if k == "cookie" else ", ") + v
            else:
                merged[k] = v
        return cls(method=method.upper(), path=path, query=dict(parse_qsl(qs, keep_blank_values=True)),
                   headers=merged, body=body, host=merged.get("host", ""))

    def cookies(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in self.headers.get("cookie", "").split(";"):
            name, eq, value = part.strip().partition("=")
            if eq and name and name not in out:
                out[name] = value
        return out

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class SimResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes | AsyncIterator[bytes] = b""
    on_close: Callable[[], None] | None = None  # adapters call it once when the exchange ends

    def close(self) -> None:
        cb, self.on_close = self.on_close, None
        if cb is not None:
            cb()

    @classmethod
    def json(cls, status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> "SimResponse":
        return cls(status, [("content-type", "application/json")] + (headers or []), orjson.dumps(obj))

    @classmethod
    def html(cls, status: int, text: str) -> "SimResponse":
        return cls(status, [("content-type", "text/html; charset=UTF-8")], text.encode())

    @classmethod
    def raw(cls, status: int, data: bytes, content_type: str) -> "SimResponse":
        return cls(status, [("content-type", content_type)], data)


@dataclass
class Asset:
    path: str
    asset_id: str
    token: str
    user_id: str
    content_type: str
    created: float
    file_name: str
    data: bytes | None = None
    gen: tuple | None = None
    listed: bool = True

    def bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        kind = self.gen[0]
        if kind == "jpeg":
            return media.jpeg_bytes(self.gen[1], self.gen[2], self.gen[3])
        if kind == "png":
            return media.png_bytes(self.gen[1], self.gen[2], self.gen[3])
        if kind == "mp4":
            return media.mp4_bytes(self.gen[1])
        if kind == "flac":
            return media.flac_bytes()
        raise ValueError(kind)


class Reject(Exception):
    """Short-circuits a handler with a prepared response."""

    def __init__(self, response: SimResponse):
        self.response = response


def endpoint_of(method: str, path: str) -> str | None:
    """Logical endpoint names used by scripted queues and the log."""
    if path == "/rest/app-chat/conversations/new" or (path.startswith("/rest/app-chat/conversations/") and path.endswith("/responses")):
        return "chat"
    table = {
        "/rest/app-chat/upload-file": "upload", "/http/upload-file-v2/direct": "upload",
        "/rest/assets": "assets", "/rest/rate-limits": "rate-limits", "/rest/media/imagine/quota_info": "imagine-quota",
        "/rest/media/post/create": "media-post", "/rest/livekit/tokens": "livekit", "/api/auth/session": "session",
        "/ws/imagine/listen": "imagine-ws",
    }
    if path in table:
        return table[path]
    if path.startswith("/rest/assets-metadata/"):
        return "assets"
    if path.startswith("/users/"):
        return "download"
    return None


_ISO_SECOND: tuple = (None, "")  # (epoch second, its "%Y-%m-%dT%H:%M:%S"), for Simulator.iso


def _uuid4(digest: bytes) -> str:
    """str(uuid.UUID(bytes=digest[:16], version=4)) without building the UUID object."""
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Simulator:
    """All simulator state. Thread-safe for control calls made from another thread (tests)."""

    def __init__(self, *, seed: int = 0, pace: float = 0.0, advertised_url: str = "http://127.0.0.1:9010",
                 control: bool = False, time_scale: float = 1.0, start_time: float | None = None,
                 **knobs: Any) -> None:
        self.control_enabled = control
        self.advertised_url = advertised_url.rstrip("/")
        self._lock = threading.RLock()
        self._initial = dict(seed=seed, pace=pace, time_scale=time_scale, start_time=start_time, knobs=knobs)
        self.reset()

    # ------------------------------------------------------------ state
    def reset(self, *, seed: int | None = None) -> None:
        init = self._initial
        with self._lock:
            self.seed = init["seed"] if seed is None else seed
            self.knobs: dict[str, Any] = json.loads(json.dumps(DEFAULT_KNOBS))
            self.knobs["pace"] = init["pace"]
            self.knobs.update(init["knobs"])
            self.time_scale = init["time_scale"]
            self._virtual_base = init["start_time"] if init["start_time"] is not None else 1781078400.0  # 2026-06-10
            self._real_base = time.monotonic()
            self._offset = 0.0
            self.counters: dict[str, int] = collections.defaultdict(int)
            self.queues: dict[tuple, collections.deque] = {}
            self.tiers: dict[str, str] = {}
            self.usage: dict[tuple[str, str], dict] = {}
            self.quota_overrides: dict[tuple[str, str], dict] = {}
            self.assets: dict[str, Asset] = {}
            self.public: dict[str, tuple] = {}
            self.posts: dict[str, dict] = {}
            self.livekit_tokens: dict[str, dict] = {}
            self.inflight: dict[str, int] = collections.defaultdict(int)
            self.log: collections.deque = collections.deque(maxlen=20000)
            self.leaks: list[dict] = []
            self.foreign: list[dict] = []
            self.rtc_connections: list[dict] = []
            self._log_seq = 0

    def configure(self, **knobs: Any) -> None:
        unknown = set(knobs) - set(DEFAULT_KNOBS) - {"time_scale", "advertised_url"}
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        with self._lock:
            if "time_scale" in knobs:
                self.set_time(self.now())
                self.time_scale = float(knobs.pop("time_scale"))
            if "advertised_url" in knobs:
                self.advertised_url = str(knobs.pop("advertised_url")).rstrip("/")
            self.knobs.update(knobs)

    @property
    def pace(self) -> float:
        return float(self.knobs["pace"])

    # ------------------------------------------------------------ clock
    def now(self) -> float:
        return self._virtual_base + self._offset + (time.monotonic() - self._real_base) * self.time_scale

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset += float(seconds)
        return self.now()

    def set_time(self, epoch: float) -> None:
        with self._lock:
            self._virtual_base = float(epoch)
            self._real_base = time.monotonic()
            self._offset = 0.0

    @staticmethod
    def iso(ts: float) -> str:
        """`datetime.fromtimestamp(ts, utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")`, the microseconds
        rounded half-even as datetime does; the whole second is formatted once per second (every
        chat answer stamps several records: this was ~6 % of the simulator's CPU under load)."""
        frac, whole = math.modf(ts)
        micro = round(frac * 1e6)
        if micro >= 1000000:
            whole, micro = whole + 1, micro - 1000000
        elif micro < 0:
            whole, micro = whole - 1, micro + 1000000
        global _ISO_SECOND
        second = int(whole)
        cached = _ISO_SECOND  # one tuple, read once: simulators in other threads may replace it
        if cached[0] != second:
            cached = _ISO_SECOND = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return "%s.%06dZ" % (cached[1], micro)

    def delay_seconds(self, nominal_ms: float, override_ms: int | None = None) -> float:
        if override_ms is not None:
            return override_ms / 1000.0
        return nominal_ms * self.pace / 1000.0

    # ------------------------------------------------------------ ids
    def uuid(self, token: str, n: int, purpose: str) -> str:
        return _uuid4(hashlib.sha256(f"{self.seed}|{token}|{n}|{purpose}".encode()).digest())

    def next_request(self, token: str) -> int:
        with self._lock:
            self.counters[token] += 1
            return self.counters[token]

    @staticmethod
    def user_id(token: str) -> str:
        return _uuid4(hashlib.sha256(f"user|{token}".encode()).digest())

    # ------------------------------------------------------------ scripted outcomes
    def queue(self, token: str, outcomes: list[str], *, endpoint: str | None = None, mode: str | None = None) -> None:
        for outcome in outcomes:
            sc = Scenario()
            for part in str(outcome).split("~"):
                apply_directive(sc, part)  # validate now, fail loudly
        with self._lock:
            self.queues.setdefault((token, endpoint, mode), collections.deque()).extend(outcomes)

    def _pop_outcome(self, token: str, endpoint: str | None, mode: str | None) -> str | None:
        with self._lock:
            for key in ((token, endpoint, mode), (token, endpoint, None), (token, None, None)):
                q = self.queues.get(key)
                if q:
                    return q.popleft()
        return None

    def set_tier(self, token: str, tier: str) -> None:
        if tier not in TIER_TABLE:
            raise ValueError(f"tier must be one of {sorted(TIER_TABLE)}")
        with self._lock:
            self.tiers[token] = tier

    # ------------------------------------------------------------ quotas
    def _limits(self, token: str, sc: Scenario, key: str) -> tuple[int | None, int]:
        """(total, window) for a chat mode or an Imagine product; total None = product unavailable."""
        tier = self.tiers.get(token, sc.tier)
        if key in PRODUCTS:
            total = self.knobs["imagine_quota"].get(key)
            window = int(self.knobs["imagine_window"])
        else:
            totals, window = TIER_TABLE[tier]
            total = totals.get(key, 0)
            if tier == "basic" and key == "auto" and self.knobs["basic_auto_total"]:
                total = int(self.knobs["basic_auto_total"])
        if key in self.knobs["quota_overrides"]:
            total = self.knobs["quota_overrides"][key]
        if key in self.knobs["window_overrides"]:
            window = int(self.knobs["window_overrides"][key])
        if sc.quota is not None and total is not None:
            total = sc.quota
        if sc.window is not None:
            window = sc.window
        ov = self.quota_overrides.get((token, key), {})
        total = ov.get("total", total)
        window = int(ov.get("window", window))
        return total, window

    def quota_view(self, token: str, sc: Scenario, key: str) -> dict:
        total, window = self._limits(token, sc, key)
        now = self.now()
        with self._lock:
            st = self.usage.get((token, key))
            if st and st["started"] is not None and now >= st["started"] + window:
                st = self.usage[(token, key)] = {"used": 0, "started": None}
            used = st["used"] if st else 0
            started = st["started"] if st else None
        remaining = max(0, (total or 0) - used)
        wait = 0
        if remaining == 0 and started is not None:
            wait = max(0, math.ceil(started + window - now))
        return {"total": total, "remaining": remaining, "window": window, "started": started, "wait": wait}

    def charge(self, token: str, sc: Scenario, key: str) -> bool:
        """Decrement one unit; False (nothing charged) when exhausted."""
        view = self.quota_view(token, sc, key)
        if view["total"] is None or view["remaining"] <= 0:
            return False
        with self._lock:
            st = self.usage.setdefault((token, key), {"used": 0, "started": None})
            if st["started"] is None:
                st["started"] = self.now()
            st["used"] += 1
        return True

    def set_quota(self, token: str, key: str, *, total: int | None = None, window: int | None = None,
                  remaining: int | None = None) -> dict:
        if key not in MODES and key not in PRODUCTS:
            raise ValueError(f"unknown mode/product {key!r}")
        with self._lock:
            ov = self.quota_overrides.setdefault((token, key), {})
            if total is not None:
                ov["total"] = int(total)
            if window is not None:
                ov["window"] = int(window)
        sc = self._scenario_for(token) or Scenario()
        if remaining is not None:
            t, _ = self._limits(token, sc, key)
            with self._lock:
                st = self.usage.setdefault((token, key), {"used": 0, "started": None})
                st["used"] = max(0, (t or 0) - int(remaining))
                if st["started"] is None:
                    st["started"] = self.now()
        return self.quota_view(token, sc, key)

    def quotas(self, token: str) -> dict:
        sc = self._scenario_for(token) or Scenario()
        return {"modes": {m: self.quota_view(token, sc, m) for m in MODES},
                "imagine": {p: self.quota_view(token, sc, p) for p in PRODUCTS},
                "tier": self.tiers.get(token, sc.tier)}

    def _scenario_for(self, token: str) -> Scenario | None:
        try:
            return parse_token(token, non_sim_policy=self.knobs["non_sim_tokens"])
        except TokenError:
            return None

    # ------------------------------------------------------------ assets
    def asset_put(self, *, token: str, user_id: str, path: str, asset_id: str, content_type: str,
                  data: bytes | None = None, gen: tuple | None = None, file_name: str | None = None,
                  listed: bool = True) -> Asset:
        asset = Asset(path=path, asset_id=asset_id, token=token, user_id=user_id, content_type=content_type,
                      created=self.now(), file_name=file_name or path.rsplit("/", 1)[-1], data=data, gen=gen,
                      listed=listed)
        with self._lock:
            self.assets[path] = asset
            # The upstream also serves every generated asset at users/<uid>/<assetId>/content
            # (docs/upstream-protocol.md §6.3 step 5, §6.5); the alias is unlisted so E5 shows each asset once.
            content_path = f"users/{user_id}/{asset_id}/content"
            if content_path != path and content_path not in self.assets:
                self.assets[content_path] = dataclasses.replace(asset, path=content_path, listed=False)
        return asset

    def public_image(self, image_id: str, *, ext: str = "jpg", size: tuple[int, int] = (64, 64)) -> str:
        with self._lock:
            self.public[f"{image_id}.{ext}"] = ("jpeg" if ext == "jpg" else "png", image_id, size[0], size[1])
        return f"{self.advertised_url}/imagine-public/images/{image_id}.{ext}"

    def livekit_url(self) -> str:
        base = self.advertised_url
        return ("wss://" + base[8:]) if base.startswith("https://") else ("ws://" + base.split("://", 1)[-1])

    # ------------------------------------------------------------ request log
    def _log(self, req: SimRequest, *, endpoint: str | None, token: str | None, body: Any) -> dict:
        cookies = req.cookies()
        entry = {
            "seq": 0,
            "time": self.now(),
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "host": req.host,
            "endpoint": endpoint,
            "token": token,
            "cookie": "cookie" in req.headers,
            "cookie_names": sorted(cookies),
            "sso": "sso" in cookies,
            "sso_rw": "sso-rw" in cookies,
            "cookie_pair_equal": "sso" in cookies and cookies.get("sso") == cookies.get("sso-rw"),
            "cf_clearance": cookies.get("cf_clearance"),
            "statsig": req.headers.get("x-statsig-id"),
            "request_id": req.headers.get("x-xai-request-id"),
            "user_agent": req.headers.get("user-agent"),
            "origin": req.headers.get("origin"),
            "referer": req.headers.get("referer"),
            "content_type": req.headers.get("content-type"),
            "body": body,
            "status": None,
            "disconnected": False,
            "completed": False,
        }
        with self._lock:
            self._log_seq += 1
            entry["seq"] = self._log_seq
            self.log.append(entry)
        return entry

    def requests(self, *, token: str | None = None, path: str | None = None, endpoint: str | None = None) -> list[dict]:
        with self._lock:
            entries = list(self.log)
        return [e for e in entries if (token is None or e["token"] == token) and (path is None or e["path"] == path)
                and (endpoint is None or e["endpoint"] == endpoint)]

    # ------------------------------------------------------------ scenario gate
    def error_response(self, status: int, *, bare: bool = False) -> SimResponse:
        if self.knobs["error_body"] == "html" and status >= 500:
            return SimResponse.html(status, ERROR_HTML.format(status=status))
        if status >= 500:
            return SimResponse.json(status, UNAVAILABLE_BODY["error"] if bare else UNAVAILABLE_BODY)
        if status == 429:
            return SimResponse.json(status, RATE_BODY["error"] if bare else RATE_BODY)
        if status in (401, 403):
            return SimResponse.json(status, AUTH_BODY["error"] if bare else AUTH_BODY)
        body = {"code": 3 if status == 400 else 2, "message": f"simulated HTTP {status}", "details": []}
        return SimResponse.json(status, body if bare else {"error": body})

    def gate(self, req: SimRequest, endpoint: str, *, mode: str | None = None, role: str = "web") -> tuple[str, Scenario]:
        """Resolve token + scenario for a credentialed call or raise Reject with the error answer.

        ``role``: ``web`` (REST), ``assets`` (downloads) or ``ws`` (handshakes)."""
        bare = endpoint == "rate-limits"
        auth = SimResponse.json(401, AUTH_BODY["error"] if bare else AUTH_BODY)
        cookies = req.cookies()
        if self.knobs["require_cookie_pair"] and not (cookies.get("sso") and cookies.get("sso") == cookies.get("sso-rw")):
            raise Reject(auth)
        token = cookies.get("sso") or cookies.get("sso-rw") or ""
        try:
            sc = parse_token(token, non_sim_policy=self.knobs["non_sim_tokens"]) if token else None
        except TokenError:
            sc = None
        if sc is None:
            raise Reject(auth)
        outcome = self._pop_outcome(token, endpoint, mode)
        if outcome:
            for part in outcome.split("~"):
                sc = apply_directive(sc, part)
        if token in self.tiers:
            from dataclasses import replace
            sc = replace(sc, tier=self.tiers[token])
        clearance = self.knobs["require_clearance"]
        if sc.has("cf") or (clearance and (cookies.get("cf_clearance") != clearance.get("cf_clearance")
                                           or req.headers.get("user-agent") != clearance.get("user_agent"))):
            raise Reject(SimResponse.html(403, CF_HTML))
        if endpoint == "session" and (sc.has("expired") or sc.has("expired403") or sc.has("blocked")):
            return token, sc  # E13 answers 200 with a status instead
        if sc.has("expired"):
            raise Reject(auth)
        if sc.has("expired403"):
            raise Reject(SimResponse(403, auth.headers, auth.body))
        if sc.has("blocked"):
            raise Reject(SimResponse.json(401 if role == "ws" else 403, BLOCKED_BODY))
        if sc.has("emaildomain"):
            raise Reject(SimResponse.json(401 if role == "ws" else 400, EMAIL_BODY))
        if role == "web":
            statsig = self.knobs["require_statsig"]
            got = req.headers.get("x-statsig-id", "")
            if sc.has("antibot") or (statsig == "any" and not got) or (statsig and statsig != "any" and got != statsig):
                raise Reject(SimResponse.json(403, ANTIBOT_BODY["error"] | {"details": []} if bare else ANTIBOT_BODY))
        if endpoint in ("chat", "media-post", "imagine-ws", "livekit"):
            if sc.has("rl"):
                raise Reject(SimResponse.json(429, RATE_BODY))
            if sc.http_status:
                raise Reject(self.error_response(sc.http_status))
        return token, sc


def control_allowed(sim: Simulator) -> bool:
    return sim.control_enabled


def example_tokens() -> tuple[str, ...]:
    return EXAMPLE_TOKENS
