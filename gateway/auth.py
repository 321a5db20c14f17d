"""Client authentication for /v1: `Authorization: Bearer <key>` or `x-api-key: <key>`.

A key is accepted when it matches one of `app.api_key` (comma-separated) or an enabled ApiKey
row. Both sets are held in memory (the "config" and "api_keys" snapshots), as SHA-256 digests;
the presented key's digest is compared with every known digest using hmac.compare_digest and no
early exit, so timing says nothing about which keys exist. When no key is configured at all
(empty `app.api_key` and no enabled ApiKey row) /v1 is open, as in the reference.

`api_auth` is the Ninja auth callable (async, so async operations do not hop threads);
`authenticate(request)` is the same check for sync callers. Both return a `Principal` or None.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import lru_cache

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.config import config
from gateway.models import ApiKey
from grok2api.crypto import hash_api_key
from grok2api.snapshots import Snapshot, stamp_bump


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int | None  # ApiKey row id; None for app.api_key keys and for open access
    label: str
    allowed_models: tuple[str, ...] = ()  # empty = every model


OPEN = Principal(key_id=None, label="open")
_CONFIG_PRINCIPAL = Principal(key_id=None, label="app.api_key")


def _load_keys() -> tuple[tuple[bytes, Principal], ...]:
    rows = ApiKey.objects.filter(enabled=True).values_list("id", "label", "key_hash", "allowed_models")
    return tuple(
        (bytes.fromhex(key_hash), Principal(key_id=pk, label=label, allowed_models=tuple(models or ())))
        for pk, label, key_hash, models in rows
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
    return found


def api_access_open() -> bool:
    """True while /v1 takes requests without a key: no `app.api_key` and no enabled ApiKey row."""
    return not _config_digests(config().get("app.api_key") or "") and not _keys.get()


async def api_auth(request) -> Principal | None:
    """Ninja auth callable: `Router(auth=api_auth)` or `@router.post(..., auth=api_auth)`."""
    return authenticate(request)


def principal_allows(principal: Principal, model: str) -> bool:
    return not principal.allowed_models or model in principal.allowed_models


@receiver(post_save, sender=ApiKey, dispatch_uid="api_keys_stamp_save")
@receiver(post_delete, sender=ApiKey, dispatch_uid="api_keys_stamp_delete")
def _api_keys_changed(sender, **kwargs) -> None:
    stamp_bump("api_keys")
