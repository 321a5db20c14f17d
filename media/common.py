"""What the media services share: upstream errors of media calls, the principal check, asset and
public-image URLs, the media-links operator alert, downloads into the local cache and the usage
ledger row of a media request.

Moderation (docs/upstream-protocol.md §11.4): a moderated image or video is an UpstreamError of kind
MODERATED (400 `content_policy_violation`); it teaches the pool nothing about the account.
"""
from __future__ import annotations


import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from asgiref.sync import sync_to_async
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from core.config import config
from core.models import AlertKind, OperatorAlert
from grokweb.errors import GatewayError, InternalError, PermissionDenied
from grokweb.registry import ModelSpec
from grokweb.classify import UpstreamError, UpstreamKind
from media import cache

log = logging.getLogger(__name__)

IMAGE_DOWNLOAD_MAX = 25 * 1024 * 1024
VIDEO_DOWNLOAD_MAX = 512 * 1024 * 1024
PUBLIC_IMAGE_HOSTS = ("imgen.x.ai",)


def moderated_error(what: str) -> UpstreamError:
    return UpstreamError(
        f"The {what} was blocked by the upstream content moderation; nothing was produced. Try a different prompt.",
        kind=UpstreamKind.MODERATED,
        status=400,
        type="invalid_request_error",
        code="content_policy_violation",
    )


def no_result_error(what: str, endpoint: str) -> UpstreamError:
    return UpstreamError(
        f"The upstream finished without producing {what}.", kind=UpstreamKind.UPSTREAM_OTHER, endpoint=endpoint
    )


def principal_check(principal: Any, spec: ModelSpec) -> None:
    allowed = tuple(getattr(principal, "allowed_models", ()) or ())
    if allowed and spec.id not in allowed:
        raise PermissionDenied(
            f"This API key is not allowed to use the model '{spec.id}'.", param="model", code="model_not_allowed"
        )


def assets_url(path: str) -> str:
    if path.startswith(("http://", "https://")):
        return path
    return str(config().get("upstream.assets_base_url") or "").rstrip("/") + "/" + path.lstrip("/")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlparse(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def url_is_public(url: str) -> bool:
    """A publicly fetchable Imagine image (no cookie needed), per upstream.imagine_public_base_url.

    When the public and the assets roles share one origin (the simulator), the `/imagine-public/`
    path tells them apart.
    """
    cfg = config()
    public = str(cfg.get("upstream.imagine_public_base_url") or "")
    if (urlparse(url).hostname or "") in PUBLIC_IMAGE_HOSTS:
        return True
    if not public or _origin(url) != _origin(public):
        return False
    return _origin(public) != _origin(str(cfg.get("upstream.assets_base_url") or "")) or "/imagine-public/" in urlparse(url).path


def app_url() -> str:
    return str(config().get("app.app_url") or "").rstrip("/")


def media_links_alert(reason: str) -> None:
    """Tell the operator that media links will not work for clients (one UPDATE per media answer;
    media answers cost seconds upstream, so this is not a hot path)."""
    try:
        media_links_alert_raise(reason=reason)
    except Exception:
        log.exception("could not record the media-links alert")


def media_links_alert_raise(*, reason: str) -> None:
    now = timezone.now()
    message = (
        "app.app_url is empty, so media links handed to clients are either upstream URLs on the private "
        "assets host (they need the account's SSO cookie: clients get HTTP 403) or relative /v1/files/... "
        f"links that only work for clients that know this server's address. ({reason})"
    )
    hint = "Set app.app_url (Runtime config) to the public base URL of this gateway, e.g. https://grok2api.example.com."
    updated = OperatorAlert.objects.filter(kind=AlertKind.MEDIA_LINKS, endpoint="/v1/files", egress="", resolved=False).update(
        count=F("count") + 1, last_at=now, message=message, hint=hint
    )
    if not updated:
        OperatorAlert.objects.create(kind=AlertKind.MEDIA_LINKS, endpoint="/v1/files", egress="", message=message, hint=hint)


async def call_sync(fn: Callable[..., Any], **kwargs: Any) -> Any:
    return await sync_to_async(fn, thread_sensitive=True)(**kwargs)


@dataclass
class Served:
    """Set once something was shown to the client: from then on no retry on another account
    (accounts/attempt.py asks by calling it)."""

    started: bool = False

    def __call__(self) -> bool:
        return self.started


# Sent once per media request as it ends (kwargs: endpoint, model, stream, api_key_id, api_key_label,
# duration_ms, status, error_code). The usage ledger is the API's (gateway/usage.py, a layer above
# media), so the gateway connects its writer here at start-up (gateway/apps.py) instead of media
# importing it.
media_request_finished = Signal()


def media_ledger(*, endpoint: str, model: str, principal: Any, t0: float, error: BaseException | None, stream: bool = False) -> None:
    """One usage-ledger row per media request (media_request_finished → gateway/usage.py, batched there)."""
    try:
        status = "ok" if error is None else ("cancelled" if isinstance(error, asyncio.CancelledError) else "error")
        code = ""
        if isinstance(error, GatewayError):
            code = (error.code or error.type or "")[:60]
        media_request_finished.send(
            sender=None, endpoint=endpoint, model=model, stream=stream, api_key_id=getattr(principal, "key_id", None),
            api_key_label=getattr(principal, "label", "") or "", duration_ms=int((time.monotonic() - t0) * 1000),
            status=status, error_code=code,
        )
    except Exception:
        log.warning("usage ledger entry of a media request failed", exc_info=True)


def chat_flags() -> dict[str, Any]:
    cfg = config()
    return {
        "temporary": bool(cfg.get("features.temporary", True)),
        "memory": bool(cfg.get("features.memory", False)),
    }


async def download_to_cache(*, client: Any, url: str, media_type: str, media_id: str, max_bytes: int) -> Any:
    """Download an upstream file with the account that produced it, into the cache (atomic)."""
    found = cache.media_cache_path(media_type=media_type, media_id=media_id)
    if found is not None:
        return found
    tmp = cache.media_cache_tempfile(media_type=media_type)
    try:
        got = await client.download_asset(url=url, dest=tmp, max_bytes=max_bytes)
        try:
            await call_sync(
                cache.media_cache_store,
                media_type=media_type,
                media_id=media_id,
                source=tmp,
                content_type=getattr(got, "content_type", "") or "",
                source_url=url,
            )
        except cache.CacheError as exc:
            raise UpstreamError(
                f"The upstream answered the {media_type} download with something that is not {media_type} data ({exc}).",
                kind=UpstreamKind.UPSTREAM_OTHER,
                endpoint=urlparse(url).path,
            ) from None
    finally:
        tmp.unlink(missing_ok=True)
    found = cache.media_cache_path(media_type=media_type, media_id=media_id)
    if found is None:  # evicted at once by a tiny cap: still serve what we fetched
        raise InternalError(f"The {media_type} was downloaded but the cache dropped it at once; check cache.local caps.")
    return found
