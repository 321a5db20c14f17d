"""Classification of upstream failures (protocol spec §11) and what each means for the pool.

Wire input: an HTTP status + body + content type from grok.com, an in-band error object found in
the NDJSON stream, a WebSocket error frame, or a transport exception. Output: one UpstreamError
whose `kind` drives the reaction matrix of spec §11.4 (retry elsewhere or not, cooldown, expire,
disable, operator alert) and whose status/code/message is what the API client sees.
"""
from __future__ import annotations

import enum

from gateway.errors import GatewayError


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


class UpstreamError(GatewayError):
    """A classified upstream failure.

    Attributes beyond GatewayError:
      kind            UpstreamKind
      upstream_status HTTP status from upstream (None for transport / in-band errors)
      retry_elsewhere whether the pool may retry on another account (before the first byte only)
      endpoint        upstream path that failed (for operator alerts), e.g. "/rest/app-chat/conversations/new"
      mode            upstream mode that was charged (for per-mode cooldowns), if known
      detail          short upstream message (never contains secrets)
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
        retry_elsewhere: bool = False,
        endpoint: str = "",
        mode: str | None = None,
        detail: str = "",
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, status=status, type=type, code=code, param=param)
        self.kind = kind
        self.upstream_status = upstream_status
        self.retry_elsewhere = retry_elsewhere
        self.endpoint = endpoint
        self.mode = mode
        self.detail = detail

    @property
    def is_operator_problem(self) -> bool:
        """Anti-bot and Cloudflare rejections are configuration/egress problems, not the account's."""
        return self.kind in (UpstreamKind.ANTI_BOT, UpstreamKind.CLOUDFLARE)
