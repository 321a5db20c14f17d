"""What one upstream outcome means for the pool (docs/upstream-protocol.md §11.4): the effect on the
account's record (`outcome_effect`) and whether the caller may retry on another account
(`account_retry_allowed`, the one retry policy, read from the operator's `retry.*` runtime config).

No database and no shared state: the lease (accounts/lease.py), the quota sync (accounts/quota.py)
and the attempt helper (accounts/attempt.py) all decide with these two functions.
"""
from __future__ import annotations

from accounts import pool as P
from core.config import config
from grokweb.classify import status_codes_parse
from grokweb.classify import UpstreamError, UpstreamKind
from core.text import text_clip

ALERT_HINTS = {
    "anti_bot": (
        "Upstream rejected the request with its anti-bot rules. This is not the account's fault: open grok.com "
        "in a browser with this account on the same egress, check the session works, and if the web app sends "
        "an x-statsig-id copy it into upstream.static_statsig_id. The gateway does not forge anti-bot signals."
    ),
    "cloudflare": (
        "Cloudflare answered with a challenge: the clearance is missing, expired, or bound to another IP or "
        "User-Agent. Copy a fresh cf_clearance (proxy.clearance.cf_clearance) and the matching User-Agent "
        "(proxy.clearance.user_agent) from a browser on the same egress IP, with proxy.clearance.mode = manual."
    ),
}


def _pool_interval(cfg, pool: str) -> int:
    return int(cfg.get(f"account.refresh.{pool}_interval_sec", 7200) or 7200)


def outcome_effect(*, outcome: UpstreamError | None, mode: str | None, pool: str, now: float, strategy: str, egress: str = "", cfg=None) -> P.Effect:
    """The account-record column of docs/upstream-protocol.md §11.4 for one outcome (pure apart from reading config)."""
    cfg = cfg if cfg is not None else config()
    if outcome is None:
        return P.Effect(at=now, mode=mode, use=1, health_add=0.12, quota_decrement=True)
    kind = outcome.kind if isinstance(outcome.kind, UpstreamKind) else UpstreamKind(outcome.kind)
    factor = getattr(outcome, "health_factor", ...)
    action = getattr(outcome, "account_action", None)

    def mul(default: float) -> float:
        return default if factor is ... or factor is None else float(factor)

    if kind in (UpstreamKind.RATE_LIMITED, UpstreamKind.QUOTA_EXHAUSTED):
        cd = getattr(outcome, "cooldown_seconds", None)
        effect = P.Effect(
            at=now, mode=mode, fail=1, fail_reason="rate_limited", health_mul=mul(0.45), quota_exhaust=True,
            cooldown_seconds=float(cd) if cd else None,
        )
        if strategy == "random":
            effect.cooling_until = now + _pool_interval(cfg, pool)
        return effect
    if kind is UpstreamKind.BLOCKED or action == "disable":
        return P.Effect(
            at=now, mode=mode, fail=1, fail_reason="blocked", status=P.EXPIRED, state_reason="blocked",
            ext={"expired_at": now, "expired_reason": text_clip(outcome.detail or outcome.message, 300)},
        )
    if kind is UpstreamKind.AUTH_INVALID or action == "expire":
        return P.Effect(
            at=now, mode=mode, fail=1, fail_reason="invalid_credentials", status=P.EXPIRED, state_reason="invalid_credentials",
            ext={"expired_at": now, "expired_reason": text_clip(outcome.detail or outcome.message, 300)},
        )
    if kind is UpstreamKind.AUTH_SUSPECT:
        return P.Effect(at=now, mode=mode, fail=1, fail_reason="auth_suspect", health_mul=mul(0.55), memory_status=P.EXPIRED)
    if kind in (UpstreamKind.ANTI_BOT, UpstreamKind.CLOUDFLARE):
        name = kind.value
        return P.Effect(
            at=now, mode=mode, fail=1, fail_reason=name,
            alert={
                "kind": name, "endpoint": outcome.endpoint or "", "egress": egress or getattr(outcome, "egress", "") or "direct",
                "message": outcome.message, "hint": ALERT_HINTS[name],
            },
        )
    if kind in (UpstreamKind.MODERATED, UpstreamKind.BAD_REQUEST, UpstreamKind.NOT_FOUND):
        return P.Effect(at=now, mode=mode)
    if kind is UpstreamKind.FORBIDDEN_OTHER:
        return P.Effect(at=now, mode=mode, fail=1, fail_reason="forbidden", health_mul=mul(0.25))
    if kind in (UpstreamKind.UPSTREAM_5XX, UpstreamKind.TRANSPORT, UpstreamKind.TIMEOUT, UpstreamKind.UPSTREAM_OTHER):
        return P.Effect(at=now, mode=mode, fail=1, fail_reason=kind.value, health_mul=mul(0.75))
    return P.Effect(at=now, mode=mode, fail=1, fail_reason=kind.value)  # TRUNCATED / PROTOCOL



_RETRY_KINDS_ALWAYS = frozenset({
    UpstreamKind.AUTH_INVALID, UpstreamKind.BLOCKED, UpstreamKind.TRANSPORT, UpstreamKind.TIMEOUT,
    UpstreamKind.TRUNCATED, UpstreamKind.PROTOCOL, UpstreamKind.RATE_LIMITED, UpstreamKind.QUOTA_EXHAUSTED,
    UpstreamKind.AUTH_SUSPECT,
})


def _on_codes(cfg) -> frozenset[int]:
    return status_codes_parse(cfg.get("retry.on_codes", "429,401,503"))


def account_retry_allowed(
    *,
    error: BaseException | None = None,
    attempt: int | None = None,
    answer_started: bool = False,
    outcome: BaseException | None = None,
    attempts: int | None = None,
) -> bool:
    """May the caller retry on another account after `attempt` attempts ended with `error`?

    Never after the first byte reached the client. Attempts are capped at retry.max_retries + 1.
    HTTP statuses 429/401/5xx retry only when listed in retry.on_codes; invalid-credential and
    blocked bodies, transport errors, timeouts, truncation and in-band rate limits always may;
    anti-bot, Cloudflare, moderation, bad requests and other 403s never do.
    (`outcome`/`attempts` are accepted as aliases of `error`/`attempt`.)"""
    error = error if error is not None else outcome
    attempt = attempt if attempt is not None else (attempts or 0)
    if answer_started or not isinstance(error, UpstreamError):
        return False
    cfg = config()
    if attempt >= int(cfg.get("retry.max_retries", 1)) + 1:
        return False
    kind = error.kind
    status = error.upstream_status
    codes = _on_codes(cfg)
    if kind is UpstreamKind.UPSTREAM_5XX:
        return status is not None and status in codes
    if kind in (UpstreamKind.AUTH_INVALID, UpstreamKind.BLOCKED):
        return True  # invalid-credential bodies always swap accounts
    if status in (429, 401):
        return status in codes
    if kind in _RETRY_KINDS_ALWAYS:
        return True
    if kind in (UpstreamKind.ANTI_BOT, UpstreamKind.CLOUDFLARE, UpstreamKind.MODERATED, UpstreamKind.BAD_REQUEST, UpstreamKind.FORBIDDEN_OTHER):
        return False
    return bool(getattr(error, "retry_elsewhere", False))

