"""Client authentication for /v1: `Authorization: Bearer <key>` or `x-api-key: <key>`.

A key is accepted when it matches one of `app.api_key` (comma-separated) or an enabled ApiKey
row. Both sets are held in memory (the "config" and "api_keys" snapshots), as SHA-256 digests;
the presented key's digest is compared with every known digest using hmac.compare_digest and no
early exit, so timing says nothing about which keys exist. When no key is configured at all
(empty `app.api_key` and no enabled ApiKey row) /v1 is open, as in the reference.

`api_auth` is the Ninja auth callable (async, so async operations do not hop threads);
`authenticate(request)` is the same check for sync callers. Both return a `Principal` or None.

A key past its `expires_at` is refused with 401 saying it expired. `api_auth` also admits the
request against the key's own limits (gateway/limits.py): over one, 429 naming it; admitted, the
grant goes on the request's trace (gateway/requestid.py), which adds the rate-limit headers and
releases the grant (the slot and the answer's tokens, one call) when the answer is over.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from functools import lru_cache

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from django.utils import timezone

from core.config import config
from grokweb.errors import AuthenticationFailed
from gateway.limits import NO_LIMITS, KeyLimitReached, KeyLimits, key_limits_acquire
from gateway.models import ApiKey
from gateway.requestid import request_trace
from core.crypto import hash_api_key
from core.snapshots import Snapshot, stamp_bump


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int | None  # ApiKey row id; None for app.api_key keys and for open access
    label: str
    allowed_models: tuple[str, ...] = ()  # empty = every model
    limits: KeyLimits = NO_LIMITS
    expires_at: datetime | None = None


OPEN = Principal(key_id=None, label="open")
_CONFIG_PRINCIPAL = Principal(key_id=None, label="app.api_key")


def _load_keys() -> tuple[tuple[bytes, Principal], ...]:
    rows = ApiKey.objects.filter(enabled=True).values_list(
        "id", "label", "key_hash", "allowed_models", "expires_at", "requests_per_minute", "tokens_per_minute",
        "max_concurrent_requests", "daily_token_budget", "monthly_token_budget")
    return tuple(
        (bytes.fromhex(key_hash), Principal(
            key_id=pk, label=label, allowed_models=tuple(models or ()), expires_at=expires_at,
            limits=KeyLimits(requests_per_minute=rpm or 0, tokens_per_minute=tpm or 0, concurrent=conc or 0,
                             daily_tokens=day or 0, monthly_tokens=month or 0)))
        for pk, label, key_hash, models, expires_at, rpm, tpm, conc, day, month in rows
    )


_keys: Snapshot[tuple[tuple[bytes, Principal], ...]] = Snapshot("api_keys", _load_keys)


@lru_cache(maxsize=8)
def _config_digests(api_key_setting: str) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(hash_api_key(k.strip())) for k in api_key_setting.split(",") if k.strip())


def presented_key(request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        key = header[7:].strip()
        if key:
            return key
    key = request.headers.get("x-api-key", "").strip()
    return key or None


def authenticate(request) -> Principal | None:
    config_digests = _config_digests(config().get("app.api_key") or "")
    rows = _keys.get()
    if not config_digests and not rows:
        return OPEN
    key = presented_key(request)
    if key is None:
        return None
    digest = bytes.fromhex(hash_api_key(key))
    found: Principal | None = None
    for known in config_digests:
        if hmac.compare_digest(digest, known):
            found = _CONFIG_PRINCIPAL
    for known, principal in rows:
        if hmac.compare_digest(digest, known):
            found = principal
    if found is not None and found.expires_at is not None and found.expires_at <= timezone.now():
        raise AuthenticationFailed(
            f"This API key expired on {found.expires_at.astimezone(dt_timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}.",
            code="expired_api_key")
    return found


def api_open() -> bool:
    """True when /v1 needs no key (empty `app.api_key` and no enabled ApiKey row)."""
    return not _config_digests(config().get("app.api_key") or "") and not _keys.get()


def key_match(key: str) -> tuple[bytes, Principal] | None:
    """The stored SHA-256 digest a presented key matches and its principal (for callers that keep
    a proof of which key signed in, e.g. the web pages), compared like `authenticate`: constant
    time, no early exit."""
    digest = bytes.fromhex(hash_api_key(key))
    found: tuple[bytes, Principal] | None = None
    for known, principal in _known_keys():
        if hmac.compare_digest(digest, known):
            found = (known, principal)
    return found


def _known_keys() -> tuple[tuple[bytes, Principal], ...]:
    return (*((d, _CONFIG_PRINCIPAL) for d in _config_digests(config().get("app.api_key") or "")), *_keys.get())


def key_digests() -> tuple[bytes, ...]:
    """Every accepted key's SHA-256 digest (`app.api_key` entries and enabled ApiKey rows)."""
    return tuple(d for d, _ in _known_keys())


async def api_auth(request) -> Principal | None:
    """Ninja auth callable: `Router(auth=api_auth)` or `@router.post(..., auth=api_auth)`."""
    principal = authenticate(request)
    trace = request_trace()
    if principal is not None and trace is not None:
        trace.key_label = principal.label
    if principal is None or principal.key_id is None or not principal.limits.any:
        return principal
    try:
        grant = await key_limits_acquire(key_id=principal.key_id, limits=principal.limits)
    except KeyLimitReached as exc:
        if trace is not None:
            trace.grant = exc.grant  # the 429 carries the headers too
        raise
    if trace is None:  # no request trace to release it at the end: do not hold a slot
        from gateway.limits import key_limits_release

        key_limits_release(grant=grant)
    else:
        trace.grant = grant
    return principal


def principal_allows(principal: Principal, model: str) -> bool:
    return not principal.allowed_models or model in principal.allowed_models


@receiver(post_save, sender=ApiKey, dispatch_uid="api_keys_stamp_save")
@receiver(post_delete, sender=ApiKey, dispatch_uid="api_keys_stamp_delete")
def _api_keys_changed(sender, **kwargs) -> None:
    stamp_bump("api_keys")
