"""Classification of upstream failures (protocol docs/upstream-protocol.md §11) and what each means for the pool.

Wire input, one of:
  * an HTTP status + body + content type from grok.com. JSON error bodies come wrapped
    `{"error":{"code":N,"message":"…","details":[]}}` or bare `{"code":N,"message":"…"}`; `code` is a
    gRPC status number (3, 7, 8, 16, …) or a string (`"content-moderated"`); messages often end
    with a `[WKE=<category>:<reason>]` tag. Cloudflare answers with an HTML challenge page;
  * an in-band error found in the NDJSON chat stream after HTTP 200: a whole-line
    `{"error":{…}}`, a response-level `{"result":{"response":{"error":{…}}}}`, or a terminal
    `modelResponse.streamErrors[0]`;
  * an Imagine WebSocket error frame `{"type":"error","err_code":"…","err_msg":"…"}` or a refused
    WebSocket handshake (HTTP 401/403/429);
  * a transport exception (httpx2 / websockets / OSError / asyncio timeouts).

Output: one UpstreamError whose `kind` drives the reaction matrix of docs/upstream-protocol.md §11.4 (retry on another
account or not, cooldown, expire, disable, health penalty, operator alert) and whose
status/type/code/message is what the API client sees (§11.6). Nothing escapes unclassified: every
unexpected body or exception still becomes one UpstreamError with an operator-actionable message.
"""
from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Collection, Mapping
from typing import Any

import orjson

from grokweb.errors import GatewayError


def status_codes_parse(raw: Any) -> frozenset[int]:
    """A status-code list as stored ("429,401,503" or [403]) -> a set; junk entries are skipped
    (the saved value was validated; this must never fail on the request path). Here, beside the
    classifier that reads `retry_on_codes`, so the client parses `retry.on_codes` itself."""
    items = raw if isinstance(raw, (list, tuple)) else str(raw or "").replace(";", ",").split(",")
    out = set()
    for item in items:
        try:
            out.add(int(str(item).strip()))
        except ValueError:
            continue
    return frozenset(out)


class UpstreamKind(str, enum.Enum):
    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    AUTH_INVALID = "auth_invalid"          # marker present: persist as expired
    AUTH_SUSPECT = "auth_suspect"          # plain 401 without marker: health penalty only
    BLOCKED = "blocked"
    ANTI_BOT = "anti_bot"
    CLOUDFLARE = "cloudflare"
    MODERATED = "moderated"
    FORBIDDEN_OTHER = "forbidden_other"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    UPSTREAM_5XX = "upstream_5xx"
    UPSTREAM_OTHER = "upstream_other"
    TRANSPORT = "transport"
    TIMEOUT = "timeout"
    TRUNCATED = "truncated"
    PROTOCOL = "protocol"


# Pool hints per kind (docs/upstream-protocol.md §11.4): (retry_elsewhere, account_action, health_factor).
#   account_action: "expire"   persist status=expired, state_reason=invalid_credentials
#                   "disable"  persist status=expired, state_reason=blocked (a ban the operator must see)
#                   "penalize" usage_fail_count + 1 (and health × health_factor when not None)
#                   "none"     leave the account record alone
# UPSTREAM_5XX retries only when its status is in `retry_on_codes` (resolved per error).
_MATRIX: dict[UpstreamKind, tuple[bool, str, float | None]] = {
    UpstreamKind.RATE_LIMITED: (True, "penalize", 0.45),
    UpstreamKind.QUOTA_EXHAUSTED: (True, "penalize", 0.45),
    UpstreamKind.AUTH_INVALID: (True, "expire", None),
    UpstreamKind.AUTH_SUSPECT: (True, "penalize", 0.55),
    UpstreamKind.BLOCKED: (True, "disable", None),
    UpstreamKind.ANTI_BOT: (False, "penalize", None),
    UpstreamKind.CLOUDFLARE: (False, "penalize", None),
    UpstreamKind.MODERATED: (False, "none", None),
    UpstreamKind.FORBIDDEN_OTHER: (False, "penalize", 0.25),
    UpstreamKind.BAD_REQUEST: (False, "none", None),
    UpstreamKind.NOT_FOUND: (False, "none", None),
    UpstreamKind.UPSTREAM_5XX: (False, "penalize", 0.75),
    UpstreamKind.UPSTREAM_OTHER: (False, "penalize", None),
    UpstreamKind.TRANSPORT: (True, "penalize", 0.75),
    UpstreamKind.TIMEOUT: (True, "penalize", 0.75),
    UpstreamKind.TRUNCATED: (True, "penalize", None),
    UpstreamKind.PROTOCOL: (True, "penalize", None),
}

# What the API client sees (docs/upstream-protocol.md §11.4 / §11.6): (status, type, code).
_CLIENT: dict[UpstreamKind, tuple[int, str, str]] = {
    UpstreamKind.RATE_LIMITED: (429, "rate_limit_exceeded", "rate_limit_exceeded"),
    UpstreamKind.QUOTA_EXHAUSTED: (429, "rate_limit_exceeded", "rate_limit_exceeded"),
    UpstreamKind.AUTH_INVALID: (502, "upstream_error", "upstream_auth_invalid"),
    UpstreamKind.AUTH_SUSPECT: (502, "upstream_error", "upstream_auth_invalid"),
    UpstreamKind.BLOCKED: (502, "upstream_error", "upstream_account_blocked"),
    UpstreamKind.ANTI_BOT: (502, "upstream_error", "upstream_anti_bot"),
    UpstreamKind.CLOUDFLARE: (502, "upstream_error", "upstream_cloudflare_challenge"),
    UpstreamKind.MODERATED: (400, "invalid_request_error", "content_policy_violation"),
    UpstreamKind.FORBIDDEN_OTHER: (502, "upstream_error", "upstream_forbidden"),
    UpstreamKind.BAD_REQUEST: (400, "invalid_request_error", "upstream_bad_request"),
    UpstreamKind.NOT_FOUND: (502, "upstream_error", "upstream_not_found"),
    UpstreamKind.UPSTREAM_5XX: (502, "upstream_error", "upstream_unavailable"),
    UpstreamKind.UPSTREAM_OTHER: (502, "upstream_error", "upstream_error"),
    UpstreamKind.TRANSPORT: (502, "upstream_error", "upstream_connection_error"),
    UpstreamKind.TIMEOUT: (504, "upstream_error", "upstream_timeout"),
    UpstreamKind.TRUNCATED: (502, "upstream_error", "upstream_protocol_error"),
    UpstreamKind.PROTOCOL: (502, "upstream_error", "upstream_protocol_error"),
}

_FAIL_REASON = {UpstreamKind.QUOTA_EXHAUSTED: "rate_limited", UpstreamKind.AUTH_SUSPECT: "auth_invalid"}

DEFAULT_RETRY_ON_CODES: frozenset[int] = frozenset({503})
_DEFAULT = object()  # "not given": take the matrix default (None is a meaningful health_factor)


class UpstreamError(GatewayError):
    """A classified upstream failure.

    Attributes beyond GatewayError:
      kind             UpstreamKind
      upstream_status  HTTP status from upstream (None for transport / in-band errors)
      retry_elsewhere  whether the pool may retry on another account (before the first byte only)
      endpoint         upstream path that failed (for operator alerts), e.g. "/rest/app-chat/conversations/new"
      mode             upstream mode that was charged (for per-mode cooldowns), if known
      detail           short upstream message (never contains secrets)
      cooldown_seconds upstream-announced wait (waitTimeSeconds / Retry-After), None when unknown
      account_action   "expire" | "disable" | "penalize" | "none" (see _MATRIX)
      health_factor    multiply the account's health by this (None: leave health alone)
    Unless given explicitly, client status/type/code and the pool hints default from `kind`.
    """

    status = 502
    type = "upstream_error"
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        kind: UpstreamKind,
        upstream_status: int | None = None,
        retry_elsewhere: bool | None = None,
        endpoint: str = "",
        mode: str | None = None,
        detail: str = "",
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        cooldown_seconds: int | None = None,
        account_action: str | None = None,
        health_factor: float | None | object = _DEFAULT,
    ) -> None:
        kind = UpstreamKind(kind)
        client = _CLIENT.get(kind)
        if client is not None:
            status = client[0] if status is None else status
            type = client[1] if type is None else type
            code = client[2] if code is None else code
        super().__init__(message, status=status, type=type, code=code, param=param)
        matrix = _MATRIX.get(kind, (False, "none", None))
        self.kind = kind
        self.upstream_status = upstream_status
        self.retry_elsewhere = matrix[0] if retry_elsewhere is None else retry_elsewhere
        self.endpoint = endpoint
        self.mode = mode
        self.detail = detail
        self.cooldown_seconds = cooldown_seconds
        self.account_action = matrix[1] if account_action is None else account_action
        self.health_factor = matrix[2] if health_factor is _DEFAULT else health_factor

    @property
    def is_operator_problem(self) -> bool:
        """Anti-bot and Cloudflare rejections are configuration/egress problems, not the account's."""
        return self.kind in (UpstreamKind.ANTI_BOT, UpstreamKind.CLOUDFLARE)

    @property
    def fail_reason(self) -> str:
        """Value for the account's `last_fail_reason` column."""
        return _FAIL_REASON.get(self.kind, self.kind.value)


# --------------------------------------------------------------------------------------------
# Markers (docs/upstream-protocol.md §11.5 and §11.2)

CREDENTIAL_MARKERS = (
    "invalid-credentials",
    "bad-credentials",
    "failed to look up session id",
    "blocked-user",
    "email-domain-rejected",
    "session not found",
    "account suspended",
    "token revoked",
    "token expired",
)
BLOCKED_MARKERS = ("blocked-user", "user is blocked", "email-domain-rejected")
CLOUDFLARE_MARKERS = (
    "just a moment",
    "challenge-platform",
    "__cf_chl",
    "cf-chl-",
    "cf-browser-verification",
    "attention required! | cloudflare",
)
_ANTI_BOT = ("anti-bot", "anti bot", "antibot")
_RATE_WORDS = ("too many requests", "rate limit", "rate_limit")
_QUOTA_WORDS = ("usage limit", "usage quota")
_LIMIT_WKE_WORDS = ("rate", "limit", "quota", "exhaust", "too-many", "too_many")

# gRPC status number → the HTTP status it stands for (in-band errors carry no HTTP status).
_GRPC_HTTP = {3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 11: 400, 12: 501, 13: 500, 14: 503, 16: 401}

_WKE = re.compile(r"\[wke=([^\]]*)\]")
_JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_SCAN_LIMIT = 65536  # bytes of a body worth looking at; error bodies are small, HTML pages are not


def _text(body: bytes | str | None) -> str:
    if body is None:
        return ""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body[:_SCAN_LIMIT]).decode("utf-8", "replace")
    return body[:_SCAN_LIMIT]


def _short(text: str, limit: int = 300) -> str:
    """Trim, collapse whitespace, cap the length and redact anything shaped like a JWT (SSO tokens are JWTs)."""
    text = " ".join(text.split())
    text = _JWT.sub("[redacted]", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_fields(data: Any) -> tuple[Any, str, dict]:
    """(code, message, container) from a wrapped {"error":{…}}, a bare {"code","message"} or an error dict."""
    if not isinstance(data, dict):
        return None, "", {}
    inner = data.get("error")
    if isinstance(inner, dict):
        data = inner
    elif isinstance(inner, str):
        return data.get("code"), inner, data
    message = data.get("message")
    if message is None:
        message = data.get("err_msg") or data.get("msg") or data.get("detail") or ""
    code = data.get("code")
    if code is None:
        code = data.get("err_code")
    return code, str(message), data


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _retry_after(headers: Mapping[str, str] | None, container: dict, data: Any) -> int | None:
    for source in (container, data if isinstance(data, dict) else {}):
        wait = _int(source.get("waitTimeSeconds")) if source else None
        if wait is not None and wait > 0:
            return wait
    if headers:
        for key, value in headers.items():
            if key.lower() == "retry-after":
                wait = _int(str(value).strip())
                if wait is not None and wait > 0:
                    return wait
    return None


def _where(endpoint: str) -> str:
    return f" on {endpoint}" if endpoint else ""


def _message(kind: UpstreamKind, *, endpoint: str, status: int | None, detail: str, mode: str | None) -> str:
    """Operator-actionable wording (docs/upstream-protocol.md §16.7). `detail` is already trimmed and secret-free."""
    where = _where(endpoint)
    got = f" (HTTP {status})" if status else ""
    tail = f": {detail}" if detail else "."
    if kind is UpstreamKind.ANTI_BOT:
        return (
            f"Upstream rejected the request as automated traffic (anti-bot, code 7){where}. The operator must "
            "check the account session or supply a fresh x-statsig-id copied from their browser."
        )
    if kind is UpstreamKind.CLOUDFLARE:
        return (
            f"Upstream answered with a Cloudflare challenge{where}{got}. The operator must refresh cf_clearance "
            "and the matching User-Agent from a browser on the same egress IP."
        )
    if kind is UpstreamKind.RATE_LIMITED:
        on_mode = f" for mode '{mode}'" if mode else ""
        return f"Upstream rate limit reached{on_mode}{where}{tail}"
    if kind is UpstreamKind.QUOTA_EXHAUSTED:
        on_mode = f" for mode '{mode}'" if mode else ""
        return f"Upstream usage quota exhausted{on_mode}{where}{tail}"
    if kind is UpstreamKind.AUTH_INVALID:
        return (
            f"Upstream rejected the account's session as invalid or expired{where}{got}. "
            f"The operator must import a fresh SSO token for this account{tail}"
        )
    if kind is UpstreamKind.AUTH_SUSPECT:
        return (
            f"Upstream refused the account's session{where}{got} without saying why; "
            f"if this repeats, import a fresh SSO token{tail}"
        )
    if kind is UpstreamKind.BLOCKED:
        return f"The upstream account is blocked{where}{got}; the operator must replace it{tail}"
    if kind is UpstreamKind.MODERATED:
        return f"The request was rejected by the upstream content policy{tail}"
    if kind is UpstreamKind.BAD_REQUEST:
        return f"Upstream rejected the request as invalid{tail}"
    if kind is UpstreamKind.FORBIDDEN_OTHER:
        return f"Upstream refused the request{where}{got}{tail}"
    if kind is UpstreamKind.NOT_FOUND:
        return f"Upstream endpoint or resource not found{where}{got}{tail}"
    if kind is UpstreamKind.UPSTREAM_5XX:
        return f"Upstream is unavailable{where}{got}{tail}"
    return f"Upstream error{where}{got}{tail}"


def _build(
    kind: UpstreamKind,
    *,
    endpoint: str,
    mode: str | None,
    status: int | None,
    detail: str,
    cooldown: int | None = None,
    retry_on_codes: Collection[int] = DEFAULT_RETRY_ON_CODES,
    effective_status: int | None = None,
) -> UpstreamError:
    retry = None
    if kind is UpstreamKind.UPSTREAM_5XX:
        retry = (effective_status or status or 0) in retry_on_codes
    err = UpstreamError(
        _message(kind, endpoint=endpoint, status=status, detail=detail, mode=mode),
        kind=kind,
        upstream_status=status,
        retry_elsewhere=retry,
        endpoint=endpoint,
        mode=mode,
        detail=detail,
        cooldown_seconds=cooldown,
    )
    return err


def _has(text: str, words: tuple[str, ...]) -> bool:
    return any(w in text for w in words)


def _decide(
    *,
    status: int | None,
    code: Any,
    message: str,
    lower: str,
    is_html: bool,
    inband: bool,
) -> tuple[UpstreamKind, int | None]:
    """The §11.3 procedure (steps 2–9). Returns (kind, effective HTTP status used for the decision)."""
    code_int = _int(code) if not isinstance(code, bool) else None
    code_str = str(code).lower() if isinstance(code, str) else ""
    eff = status if status is not None else _GRPC_HTTP.get(code_int) if code_int is not None else None
    msg = message.lower()

    # 2. invalid-credential markers (only meaningful on 400/401/403, or in-band)
    if (inband or eff in (400, 401, 403)) and _has(lower, CREDENTIAL_MARKERS + ("user is blocked",)):
        if _has(lower, BLOCKED_MARKERS):
            return UpstreamKind.BLOCKED, eff
        if _has(lower, CREDENTIAL_MARKERS):
            return UpstreamKind.AUTH_INVALID, eff
    # 3. plain 401 / code 16: credentials refused without a definitive marker
    if eff == 401:
        return UpstreamKind.AUTH_SUSPECT, eff
    # 4. Cloudflare challenge (HTML on 403, or a challenge marker on any status)
    if (eff == 403 and is_html) or _has(lower, CLOUDFLARE_MARKERS):
        return UpstreamKind.CLOUDFLARE, eff
    # 5./6./7. the remaining 403 family (in-band: code 7 / anti-bot / moderation wording)
    anti_bot = _has(msg, _ANTI_BOT) or (not msg and _has(lower, _ANTI_BOT))
    moderated = code_str == "content-moderated" or "moderat" in msg or "content_moderated" in code_str
    if eff == 403 or (inband and (anti_bot or moderated)):
        if anti_bot and (code_int == 7 or inband or eff == 403):
            return UpstreamKind.ANTI_BOT, eff
        if moderated:
            return UpstreamKind.MODERATED, eff
        if eff == 403:
            return UpstreamKind.FORBIDDEN_OTHER, eff
    # 8. rate limit / quota; a [WKE=…] tag is more specific than code 8 when present
    if _has(msg or lower, _QUOTA_WORDS):
        return UpstreamKind.QUOTA_EXHAUSTED, eff
    if eff == 429 or code_int == 8 or _has(msg or lower, _RATE_WORDS):
        wke = _WKE.search(msg)
        if wke and not _has(wke.group(1), _LIMIT_WKE_WORDS):
            return UpstreamKind.UPSTREAM_OTHER, eff
        return UpstreamKind.RATE_LIMITED, eff
    # 9. by status
    if eff == 400:
        return UpstreamKind.BAD_REQUEST, eff
    if eff == 404:
        return UpstreamKind.NOT_FOUND, eff
    if eff is not None and eff >= 500:
        return UpstreamKind.UPSTREAM_5XX, eff
    return UpstreamKind.UPSTREAM_OTHER, eff


def _looks_html(text: str, content_type: str) -> bool:
    if "html" in content_type.lower():
        return True
    head = text.lstrip()[:64].lower()
    return head.startswith("<!doctype html") or head.startswith("<html") or head.startswith("<head")


def _html_detail(text: str, status: int) -> str:
    title = _TITLE.search(text)
    if title and title.group(1).strip():
        return _short(f"HTML page '{title.group(1).strip()}'", 160)
    return f"HTML page ({len(text)} characters)" if text.strip() else f"empty body (HTTP {status})"


# --------------------------------------------------------------------------------------------
# Public classifiers


def classify_http(
    *,
    status: int,
    body: bytes | str | None,
    content_type: str = "",
    endpoint: str = "",
    mode: str | None = None,
    headers: Mapping[str, str] | None = None,
    retry_on_codes: Collection[int] = DEFAULT_RETRY_ON_CODES,
) -> UpstreamError:
    """Classify an HTTP answer the caller could not use (any non-200, or a 2xx whose body is unusable)."""
    text = _text(body)
    lower = text.lower()
    data: Any = None
    if text.lstrip()[:1] in ("{", "["):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None  # a truncated JSON body: the raw text still carries the markers
    # A JSON body mislabelled text/html is still JSON: the body wins over the header.
    is_html = data is None and _looks_html(text, content_type)
    code, message, container = _error_fields(data)
    if is_html:
        detail = _html_detail(text, status)
    elif message:
        detail = _short(message)
    else:
        detail = _short(text) if text.strip() else f"empty body (HTTP {status})"

    if 200 <= status < 300 and not _has(lower, CLOUDFLARE_MARKERS):
        # The caller got a success status but could not use the body: a shape we do not understand.
        err = _build(UpstreamKind.PROTOCOL, endpoint=endpoint, mode=mode, status=status, detail=detail)
        err.message = f"Upstream answered HTTP {status}{_where(endpoint)} with an unexpected body ({detail})."
        err.args = (err.message,)
        return err

    kind, eff = _decide(status=status, code=code, message=message, lower=lower, is_html=is_html, inband=False)
    if kind is UpstreamKind.CLOUDFLARE and not is_html and not _has(lower, CLOUDFLARE_MARKERS):
        kind = UpstreamKind.FORBIDDEN_OTHER  # defensive; _decide only returns CLOUDFLARE with evidence
    cooldown = _retry_after(headers, container, data) if kind in (
        UpstreamKind.RATE_LIMITED, UpstreamKind.QUOTA_EXHAUSTED) else None
    return _build(kind, endpoint=endpoint, mode=mode, status=status, detail=detail, cooldown=cooldown,
                  retry_on_codes=retry_on_codes, effective_status=eff)


def inband_error_of(obj: Any) -> dict | None:
    """The error object of any of the three in-band forms (docs/upstream-protocol.md §4.10), or None."""
    if not isinstance(obj, dict):
        return None
    err = obj.get("error")
    if err:
        return err if isinstance(err, dict) else {"message": str(err)}
    result = obj.get("result")
    if not isinstance(result, dict):
        return None
    response = result.get("response")
    if not isinstance(response, dict):
        response = result  # flat wrapper
    err = response.get("error")
    if err:
        return err if isinstance(err, dict) else {"message": str(err)}
    model = response.get("modelResponse")
    if isinstance(model, dict):
        errors = model.get("streamErrors")
        if errors:
            first = errors[0] if isinstance(errors, list) else errors
            return first if isinstance(first, dict) else {"message": str(first)}
    return None


def classify_inband(
    obj: dict,
    *,
    endpoint: str = "",
    mode: str | None = None,
    retry_on_codes: Collection[int] = DEFAULT_RETRY_ON_CODES,
) -> UpstreamError:
    """Classify an in-band error line: whole-line `error`, `response.error`, or `modelResponse.streamErrors`.

    Also accepts the bare error dict itself ({"code":8,"message":"…"}).
    """
    err = inband_error_of(obj)
    response_level = False
    if err is None:
        err = obj if isinstance(obj, dict) else {"message": str(obj)}
    elif isinstance(obj, dict) and not obj.get("error"):
        result = obj.get("result")
        response = result.get("response") if isinstance(result, dict) else None
        response = response if isinstance(response, dict) else result
        response_level = isinstance(response, dict) and bool(response.get("error"))
    code, message, _ = _error_fields(err)
    try:
        raw = orjson.dumps(err).decode()
    except TypeError:
        raw = str(err)
    lower = raw.lower()
    kind, eff = _decide(status=None, code=code, message=message, lower=lower, is_html=False, inband=True)
    if response_level and kind is UpstreamKind.FORBIDDEN_OTHER and _int(code) == 7:
        kind = UpstreamKind.ANTI_BOT  # docs/upstream-protocol.md §4.7 rule 4: a response-level code 7 is the anti-bot rejection
    detail = _short(message) if message else _short(raw)
    return _build(kind, endpoint=endpoint, mode=mode, status=None, detail=detail,
                  cooldown=_int(err.get("waitTimeSeconds")) if isinstance(err, dict) else None,
                  retry_on_codes=retry_on_codes, effective_status=eff)


def classify_ws_error(frame: dict, *, endpoint: str = "/ws/imagine/listen") -> UpstreamError:
    """Classify an Imagine WebSocket error frame `{"type":"error","err_code":…,"err_msg":…}`."""
    if not isinstance(frame, dict):
        frame = {"err_msg": str(frame)}
    code = str(frame.get("err_code") or frame.get("code") or "")
    message = str(frame.get("err_msg") or frame.get("message") or "")
    lower = f"{code} {message}".lower()
    if "unauth" in lower or _has(lower, CREDENTIAL_MARKERS):
        kind = UpstreamKind.BLOCKED if _has(lower, BLOCKED_MARKERS) else UpstreamKind.AUTH_INVALID
    elif "moderat" in lower:
        kind = UpstreamKind.MODERATED
    elif _has(lower, _QUOTA_WORDS) or "quota" in lower:
        kind = UpstreamKind.QUOTA_EXHAUSTED
    elif "rate_limit" in lower or _has(lower, _RATE_WORDS):
        kind = UpstreamKind.RATE_LIMITED
    elif _has(lower, _ANTI_BOT):
        kind = UpstreamKind.ANTI_BOT
    else:
        kind = UpstreamKind.UPSTREAM_OTHER
    detail = _short(" ".join(p for p in (code, message) if p)) or "error frame without a message"
    return _build(kind, endpoint=endpoint, mode=None, status=None, detail=detail)


def classify_ws_handshake(status: int, body: bytes | str = b"", *, endpoint: str = "/ws/imagine/listen",
                          content_type: str = "") -> UpstreamError:
    """A refused WebSocket upgrade: 401 invalid/blocked session, 403 Cloudflare, 429 Imagine quota."""
    return classify_http(status=status, body=body, content_type=content_type, endpoint=endpoint)


def _transport(kind: UpstreamKind, what: str, exc: BaseException, endpoint: str) -> UpstreamError:
    text = _short(str(exc), 160)
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    err = UpstreamError(f"{what}{_where(endpoint)} ({detail}).", kind=kind, endpoint=endpoint, detail=detail)
    return err


def classify_transport(exc: BaseException, *, endpoint: str = "") -> UpstreamError:
    """Classify an exception raised while talking to upstream (HTTP or WebSocket)."""
    if isinstance(exc, UpstreamError):
        return exc
    import httpx2  # isinstance checks only; this module never builds clients

    try:
        import websockets.exceptions as wsx
    except ImportError:  # pragma: no cover - websockets is a runtime dependency
        wsx = None

    if isinstance(exc, (httpx2.TimeoutException, asyncio.TimeoutError, TimeoutError)):
        if isinstance(exc, httpx2.ConnectTimeout):
            what = "Timed out connecting to upstream"
        elif isinstance(exc, httpx2.PoolTimeout):
            what = "Timed out waiting for a free upstream connection"
        else:
            what = "Upstream did not answer within the deadline"
        return _transport(UpstreamKind.TIMEOUT, what, exc, endpoint)
    if wsx is not None:
        if isinstance(exc, wsx.InvalidStatus):
            response = exc.response
            ctype = response.headers.get("Content-Type", "") if response.headers else ""
            return classify_ws_handshake(response.status_code, response.body or b"", endpoint=endpoint
                                         or "/ws/imagine/listen", content_type=ctype)
        if isinstance(exc, wsx.ConnectionClosedOK):
            return _transport(UpstreamKind.TRUNCATED, "Upstream closed the WebSocket before the result arrived",
                              exc, endpoint)
        if isinstance(exc, wsx.ConnectionClosed):
            return _transport(UpstreamKind.TRANSPORT, "The upstream WebSocket closed abruptly", exc, endpoint)
        if isinstance(exc, wsx.InvalidMessage):
            return _transport(UpstreamKind.PROTOCOL, "Upstream sent an invalid WebSocket message", exc, endpoint)
        legacy_status = getattr(exc, "status_code", None)  # websockets' legacy InvalidStatusCode
        if isinstance(exc, wsx.InvalidHandshake) and isinstance(legacy_status, int):
            return classify_ws_handshake(legacy_status, b"", endpoint=endpoint or "/ws/imagine/listen")
        if isinstance(exc, wsx.WebSocketException):
            return _transport(UpstreamKind.TRANSPORT, "WebSocket connection to upstream failed", exc, endpoint)
    if isinstance(exc, httpx2.HTTPStatusError):  # raise_for_status() somewhere: classify the answer itself
        response = exc.response
        try:
            payload = response.content
        except httpx2.ResponseNotRead:
            payload = b""
        return classify_http(status=response.status_code, body=payload, content_type=response.headers.get(
            "content-type", ""), endpoint=endpoint or response.request.url.path, headers=response.headers)
    if isinstance(exc, httpx2.ProxyError):
        return _transport(UpstreamKind.TRANSPORT, "The egress proxy refused or failed the upstream connection",
                          exc, endpoint)
    if isinstance(exc, httpx2.ConnectError):
        return _transport(UpstreamKind.TRANSPORT, "Could not connect to upstream", exc, endpoint)
    if isinstance(exc, httpx2.RemoteProtocolError):
        return _transport(UpstreamKind.TRANSPORT, "Upstream closed or broke the connection", exc, endpoint)
    if isinstance(exc, httpx2.DecodingError):
        return _transport(UpstreamKind.PROTOCOL, "Upstream sent a body that could not be decoded", exc, endpoint)
    if isinstance(exc, httpx2.TransportError):
        return _transport(UpstreamKind.TRANSPORT, "Network error talking to upstream", exc, endpoint)
    if isinstance(exc, httpx2.TooManyRedirects):
        return _transport(UpstreamKind.UPSTREAM_OTHER, "Upstream redirected too many times", exc, endpoint)
    if isinstance(exc, (ConnectionError, OSError)):
        return _transport(UpstreamKind.TRANSPORT, "Network error talking to upstream", exc, endpoint)
    if isinstance(exc, (ValueError, UnicodeError)):
        return _transport(UpstreamKind.PROTOCOL, "Upstream sent data that could not be parsed", exc, endpoint)
    return _transport(UpstreamKind.UPSTREAM_OTHER, "Unexpected failure talking to upstream", exc, endpoint)
