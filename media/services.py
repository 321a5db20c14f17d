"""Media services: image generation and editing, video jobs, and image/video models through chat.

Upstream flows (protocol docs/upstream-protocol.md §6, §7, §8):
- grok-imagine-image-lite: `n` parallel E1 chat requests `"Drawing: <prompt>"` (mode from the
  lease, normally `fast`); the first finished, unmoderated image of each request is used.
- grok-imagine-image / -pro: the Imagine WebSocket (GrokClient.imagine_generate), rounds until
  `n` finals arrive; `enable_pro` for pro. Finals carry the bytes (`blob_b64`).
- grok-imagine-image-edit: upload each reference (E3), `@IMAGEn` → `@<fileId>`, an image media
  post (E10), then the edit chat stream (E1, Referer `/imagine/post/<postId>`), up to 2 attempts.
- grok-imagine-video: reference uploads + image posts (or one video post), the first segment and
  extension segments (12 = 6+6, 16 = 10+6, 20 = 10+10), progress scaled across segments, the
  result downloaded with the same account into the local cache.

Outputs:
- /v1/images: `{"created", "data": [{"url"} | {"b64_json"}]}`. `url` is a local cache link built
  from `app.app_url` when it is set; with `app.app_url` empty the upstream URL is returned (assets
  URLs need the account's cookie: an OperatorAlert explains the 403s clients will see). Public
  Imagine URLs are returned as they are unless `features.imagine_public_image_proxy` is on.
- Video jobs: OpenAI's video object `{"id","object":"video","created_at","status","model",
  "progress","prompt","seconds","size","quality","completed_at","error"}`.
- Through chat: progress as reasoning text, the result as text per `features.image_format` /
  `features.video_format` (media_chat_run).

Moderation (docs/upstream-protocol.md §11.4): moderated images are dropped; when none remain, a 400
`content_policy_violation`. A moderated video fails its job with that code.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from grok2api.config import config
from media.attachments import attachment_fetch
from grokweb.errors import Conflict, GatewayError, InternalError, InvalidRequest, NotFound, PermissionDenied, RateLimited
from grokweb.registry import ModelSpec
from grokweb.classify import UpstreamError, UpstreamKind
from media import cache
from media.models import VideoJob, VideoJobStatus
from media.params import (
    MAX_EDIT_IMAGES,
    ImageInput,
    ImageParams,
    VideoParams,
    image_edit_params,
    image_generation_params,
    image_input,
    too_many,
    video_params,
)

log = logging.getLogger(__name__)

IMAGE_DOWNLOAD_MAX = 25 * 1024 * 1024
VIDEO_DOWNLOAD_MAX = 512 * 1024 * 1024
EDIT_ATTEMPTS = 2
VIDEO_MAX_ATTEMPTS = 3  # runs of one job (first run + resumes after a lost worker)
HEARTBEAT_SECONDS = 10.0
PROGRESS_WRITE_SECONDS = 1.0
PUBLIC_IMAGE_HOSTS = ("imgen.x.ai",)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def _stale_after() -> float:
    try:
        return float(os.environ.get("MEDIA_VIDEO_STALE_SECONDS", "120"))
    except ValueError:
        return 120.0


# =========================================================================== helpers


def _moderated(what: str) -> UpstreamError:
    return UpstreamError(
        f"The {what} was blocked by the upstream content moderation; nothing was produced. Try a different prompt.",
        kind=UpstreamKind.MODERATED,
        status=400,
        type="invalid_request_error",
        code="content_policy_violation",
    )


def _no_result(what: str, endpoint: str) -> UpstreamError:
    return UpstreamError(
        f"The upstream finished without producing {what}.", kind=UpstreamKind.UPSTREAM_OTHER, endpoint=endpoint
    )


def _principal_check(principal: Any, spec: ModelSpec) -> None:
    allowed = tuple(getattr(principal, "allowed_models", ()) or ())
    if allowed and spec.id not in allowed:
        raise PermissionDenied(
            f"This API key is not allowed to use the model '{spec.id}'.", param="model", code="model_not_allowed"
        )


def _assets_url(path: str) -> str:
    if path.startswith(("http://", "https://")):
        return path
    return str(config().get("upstream.assets_base_url") or "").rstrip("/") + "/" + path.lstrip("/")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlparse(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _is_public(url: str) -> bool:
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


def _app_url() -> str:
    return str(config().get("app.app_url") or "").rstrip("/")


def _media_links_alert(reason: str) -> None:
    """Tell the operator that media links will not work for clients (one UPDATE per media answer;
    media answers cost seconds upstream, so this is not a hot path)."""
    try:
        media_links_alert_raise(reason=reason)
    except Exception:
        log.exception("could not record the media-links alert")


def media_links_alert_raise(*, reason: str) -> None:
    from grok2api.models import AlertKind, OperatorAlert

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


async def _call(fn: Callable[..., Any], **kwargs: Any) -> Any:
    return await sync_to_async(fn, thread_sensitive=True)(**kwargs)


def _max_attempts() -> int:
    try:
        return max(1, int(config().get("retry.max_retries")) + 1)
    except (TypeError, ValueError):
        return 2


@dataclass
class _Flag:
    """Set once something was shown to the client: from then on no retry on another account."""

    started: bool = False


async def _on_account(spec: ModelSpec, work: Callable[[Any, Any], Awaitable[Any]], *, flag: _Flag | None = None) -> Any:
    """Lease an account, run `work(client, lease)`, report the outcome; retry elsewhere when allowed."""
    from accounts.services import account_lease, account_report
    from grokweb.client import GrokClient

    tried: set[int] = set()
    last: UpstreamError | None = None
    for _attempt in range(_max_attempts()):
        try:
            lease = await account_lease(model=spec, exclude=frozenset(tried))
        except RateLimited:
            if last is not None:
                raise last from None
            raise
        tried.add(lease.account.id)
        client = GrokClient(token=lease.account.token, user_id=getattr(lease.account, "user_id", "") or "")
        outcome: UpstreamError | None = None
        try:
            return await work(client, lease)
        except UpstreamError as exc:
            # Moderation says nothing about the account (docs/upstream-protocol.md §11.4: no record change).
            outcome = None if exc.kind == UpstreamKind.MODERATED else exc
            if exc.retry_elsewhere and not (flag and flag.started):
                last = exc
                continue
            raise
        finally:
            try:
                account_report(lease=lease, outcome=outcome)
            except Exception:
                log.exception("account_report failed")
    assert last is not None
    raise last


def _ledger(*, endpoint: str, model: str, principal: Any, t0: float, error: BaseException | None, stream: bool = False) -> None:
    """One usage-ledger row per media request (queued in memory, batched by gateway/usage.py)."""
    try:
        from gateway.usage import UsageEntry, usage_record

        status = "ok" if error is None else ("cancelled" if isinstance(error, asyncio.CancelledError) else "error")
        code = ""
        if isinstance(error, GatewayError):
            code = (error.code or error.type or "")[:60]
        usage_record(entry=UsageEntry(
            endpoint=endpoint, model=model, stream=stream, api_key_id=getattr(principal, "key_id", None),
            api_key_label=getattr(principal, "label", "") or "", duration_ms=int((time.monotonic() - t0) * 1000),
            status=status, error_code=code,
        ))
    except Exception:
        log.debug("usage ledger entry failed", exc_info=True)


# =========================================================================== images


@dataclass
class _Img:
    """A finished upstream image and the client (account) that may download it."""

    url: str
    client: Any
    image_id: str = ""
    blob_b64: str = ""

    @property
    def media_id(self) -> str:
        if self.image_id and cache.media_id_valid(self.image_id):
            return self.image_id
        return cache.media_id_for_url(self.url)

    @property
    def download_urls(self) -> list[str]:
        """The URL, then the other documented form of the same generated image (docs/upstream-protocol.md §6.5):
        `users/<u>/<assetId>/content` ↔ `users/<u>/generated/<imageId>/image.jpg`."""
        urls = [self.url]
        match = re.search(r"/users/([^/]+)/[^/]+/content$", urlparse(self.url).path)
        if match and self.image_id:
            base = self.url[: self.url.index("/users/")]
            urls.append(f"{base}/users/{match.group(1)}/generated/{self.image_id}/image.jpg")
        return urls


ProgressFn = Callable[[int, int], None]  # (image index, percent)


def _chat_flags() -> dict[str, Any]:
    cfg = config()
    return {
        "temporary": bool(cfg.get("features.temporary", True)),
        "memory": bool(cfg.get("features.memory", False)),
    }


async def _lite_one(prompt: str, index: int, spec: ModelSpec, progress: ProgressFn, flag: _Flag | None) -> _Img:
    from grokweb.events import ImageProgress, ImageResult

    async def work(client: Any, lease: Any) -> _Img:
        payload = client.build_chat_payload(message=f"Drawing: {prompt}", mode=lease.mode)
        moderated = 0
        async with client.chat_stream(payload=payload, referer_path="/", mode=lease.mode) as events:
            async for ev in events:
                if isinstance(ev, ImageProgress):
                    progress(index, ev.progress)
                elif isinstance(ev, ImageResult):
                    if ev.moderated or not ev.url:
                        moderated += 1
                        continue
                    progress(index, 100)
                    # First finished image of this request; leaving the block closes the stream.
                    return _Img(url=ev.url, client=client, image_id=ev.image_id, blob_b64=ev.blob_b64)
        if moderated:
            raise _moderated("image")
        raise _no_result("an image", "/rest/app-chat/conversations/new")

    return await _on_account(spec, work, flag=flag)


async def _gather_images(coros: list[Awaitable[_Img]]) -> list[_Img]:
    """Run per-image requests in parallel; keep successes, fail only when none succeeded."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    images = [r for r in results if isinstance(r, _Img)]
    if images:
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, GatewayError):
                log.warning("an image request failed: %r", r)
        return images
    errors = [r for r in results if isinstance(r, BaseException)]
    for err in errors:
        if not isinstance(err, GatewayError):
            raise err
    # Prefer an error that is not moderation (it explains more), unless every request was moderated.
    errors.sort(key=lambda e: isinstance(e, UpstreamError) and e.kind == UpstreamKind.MODERATED)
    raise errors[0]


async def _imagine(params: ImageParams, progress: ProgressFn, flag: _Flag | None) -> list[_Img]:
    from grokweb.events import ImageProgress, ImageResult

    pro = params.spec.id.endswith("-pro")

    async def collect(stream: Any, got: list[_Img]) -> int:
        seen: set[str] = set()
        moderated = 0
        async for ev in stream:
            if isinstance(ev, ImageProgress):
                progress(ev.image_index, ev.progress)
            elif isinstance(ev, ImageResult):
                if ev.moderated or not (ev.url or ev.blob_b64):
                    moderated += 1
                    continue
                key = ev.image_id or ev.url
                if key in seen:
                    continue
                seen.add(key)
                got.append(_Img(url=ev.url, client=stream_client[0], image_id=ev.image_id, blob_b64=ev.blob_b64))
                progress(len(got) - 1, 100)
                if len(got) >= params.n:
                    break
        return moderated

    stream_client: list[Any] = [None]

    async def work(client: Any, lease: Any) -> list[_Img]:
        stream_client[0] = client
        got: list[_Img] = []
        async with contextlib.aclosing(
            client.imagine_generate(prompt=params.prompt, aspect_ratio=params.aspect_ratio, pro=pro, n=params.n)
        ) as stream:
            try:
                moderated = await collect(stream, got)
            except UpstreamError:
                # Fewer finals than asked (rounds exhausted, a later round refused): keep what arrived.
                if not got:
                    raise
                log.info("imagine returned %d of %d images", len(got), params.n)
                moderated = 0
        if not got:
            if moderated:
                raise _moderated("image")
            raise _no_result("an image", "/ws/imagine/listen")
        return got

    return await _on_account(params.spec, work, flag=flag)


def _edit_prompt(prompt: str, file_ids: list[str]) -> str:
    def repl(match: re.Match) -> str:
        i = int(match.group(1))
        return f"@{file_ids[i - 1]}" if 1 <= i <= len(file_ids) else match.group(0)

    return re.sub(r"@IMAGE(\d+)", repl, prompt, flags=re.IGNORECASE)


async def _edit(params: ImageParams, images: list[ImageInput], progress: ProgressFn, flag: _Flag | None) -> list[_Img]:
    from grokweb.events import ImageProgress, ImageResult
    from grokweb.payloads import image_edit_payload

    async def work(client: Any, lease: Any) -> list[_Img]:
        uploads = [await client.upload_file(name=img.name, mime=img.mime, data=img.data) for img in images]
        refs = [_assets_url(u.file_uri) for u in uploads]
        prompt = _edit_prompt(params.prompt, [u.file_id for u in uploads])
        post_id = await client.media_post_create(media_type="image", prompt=prompt)
        got: list[_Img] = []
        seen: set[str] = set()
        moderated = 0
        for _ in range(EDIT_ATTEMPTS):
            payload = image_edit_payload(
                prompt=prompt, image_references=refs, parent_post_id=post_id, temporary=_chat_flags()["temporary"]
            )
            async with client.chat_stream(payload=payload, referer_path=f"/imagine/post/{post_id}", mode=lease.mode) as events:
                async for ev in events:
                    if isinstance(ev, ImageProgress):
                        progress(ev.image_index, ev.progress)
                    elif isinstance(ev, ImageResult):
                        if ev.moderated or not ev.url:
                            moderated += 1
                            continue
                        if ev.url in seen:
                            continue
                        seen.add(ev.url)
                        got.append(_Img(url=ev.url, client=client, image_id=ev.image_id, blob_b64=ev.blob_b64))
                        if len(got) >= params.n:
                            break
            if len(got) >= params.n:
                break
        if not got:
            if moderated:
                raise _moderated("image edit")
            raise _no_result("an edited image", "/rest/app-chat/conversations/new")
        return got[: params.n]

    return await _on_account(params.spec, work, flag=flag)


async def _download_to_cache(*, client: Any, url: str, media_type: str, media_id: str, max_bytes: int) -> Any:
    """Download an upstream file with the account that produced it, into the cache (atomic)."""
    found = cache.media_cache_path(media_type=media_type, media_id=media_id)
    if found is not None:
        return found
    tmp = cache.media_cache_tempfile(media_type=media_type)
    try:
        got = await client.download_asset(url=url, dest=tmp, max_bytes=max_bytes)
        try:
            await _call(
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


async def _image_cache(img: _Img) -> str:
    """Ensure the image is in the local cache; return its media id."""
    media_id = img.media_id
    if cache.media_cache_path(media_type="image", media_id=media_id) is None:
        if img.blob_b64:
            await _call(
                cache.media_cache_store,
                media_type="image",
                media_id=media_id,
                source=base64.b64decode(img.blob_b64),
                content_type="",
                source_url=img.url,
            )
        else:
            urls = img.download_urls
            for i, url in enumerate(urls):
                try:
                    await _download_to_cache(client=img.client, url=url, media_type="image", media_id=media_id, max_bytes=IMAGE_DOWNLOAD_MAX)
                    break
                except UpstreamError as exc:
                    if exc.kind != UpstreamKind.NOT_FOUND or i == len(urls) - 1:
                        raise
    return media_id


async def _image_bytes(img: _Img) -> tuple[bytes, str]:
    if img.blob_b64:
        data = base64.b64decode(img.blob_b64)
        return data, cache.sniff_content_type(data[:16]) or "image/jpeg"
    media_id = await _image_cache(img)
    found = cache.media_cache_path(media_type="image", media_id=media_id)
    if found is None:
        raise InternalError("The image left the cache before it could be read.")
    return found.path.read_bytes(), found.content_type


async def _image_link(img: _Img, *, local: bool) -> str:
    """The URL a client gets. `local` asks for a cached copy (local_url formats, or app_url set)."""
    if _is_public(img.url) and not config().get("features.imagine_public_image_proxy"):
        return img.url
    if local:
        media_id = await _image_cache(img)
        if not _app_url():
            await _call(_media_links_alert, reason="a relative /v1/files/image link was returned")
        return cache.media_local_url(media_type="image", media_id=media_id)
    if not _is_public(img.url):
        await _call(_media_links_alert, reason="a private assets URL was returned")
    return img.url


async def _render_api_image(img: _Img, response_format: str) -> dict[str, str]:
    if response_format == "b64_json":
        data, _ = await _image_bytes(img)
        return {"b64_json": base64.b64encode(data).decode()}
    if _app_url():
        return {"url": await _image_link(img, local=True)}
    return {"url": await _image_link(img, local=False)}


async def _produce_images(params: ImageParams, progress: ProgressFn, flag: _Flag | None = None) -> list[_Img]:
    if params.spec.id == "grok-imagine-image-lite":
        return await _gather_images([_lite_one(params.prompt, i, params.spec, progress, flag) for i in range(params.n)])
    return await _imagine(params, progress, flag)


def _no_progress(_index: int, _percent: int) -> None:
    return None


async def images_generate(*, model: Any, prompt: Any, n: Any = None, size: Any = None, response_format: Any = None, principal: Any = None) -> dict:
    """POST /v1/images/generations."""
    params = image_generation_params(model=model, prompt=prompt, n=n, size=size, response_format=response_format)
    _principal_check(principal, params.spec)
    t0, error = time.monotonic(), None
    try:
        images = await _produce_images(params, _no_progress)
        data = [await _render_api_image(img, params.response_format) for img in images]
    except BaseException as exc:
        error = exc
        raise
    finally:
        _ledger(endpoint="images.generations", model=params.spec.id, principal=principal, t0=t0, error=error)
    return {"created": int(time.time()), "data": data}


async def images_edit(
    *,
    model: Any,
    prompt: Any,
    images: list[ImageInput],
    n: Any = None,
    size: Any = None,
    response_format: Any = None,
    has_mask: bool = False,
    principal: Any = None,
) -> dict:
    """POST /v1/images/edits (`images` already validated by media.params.image_input)."""
    params = image_edit_params(model=model, prompt=prompt, n=n, size=size, response_format=response_format, has_mask=has_mask)
    _principal_check(principal, params.spec)
    if not images:
        raise InvalidRequest("Missing required parameter: 'image'.", param="image", code="missing_required_parameter")
    too_many(len(images), MAX_EDIT_IMAGES, "image")
    t0, error = time.monotonic(), None
    try:
        results = await _edit(params, images, _no_progress, None)
        data = [await _render_api_image(img, params.response_format) for img in results]
    except BaseException as exc:
        error = exc
        raise
    finally:
        _ledger(endpoint="images.edits", model=params.spec.id, principal=principal, t0=t0, error=error)
    return {"created": int(time.time()), "data": data}


# =========================================================================== video (shared core)


@dataclass
class _VideoOut:
    url: str
    video_id: str
    thumbnail_url: str = ""


async def _video_generate(
    *,
    client: Any,
    lease: Any,
    params: VideoParams,
    references: list[ImageInput],
    state: dict,
    on_progress: Callable[[int], Awaitable[None]],
    save_state: Callable[[dict], Awaitable[None]],
) -> _VideoOut:
    """Run (or resume, from `state`) the segments of one video on one account."""
    from grokweb.events import VideoProgress, VideoResult
    from grokweb.payloads import video_extension_payload, video_payload, video_segments

    segments = video_segments(params.seconds)
    temporary = _chat_flags()["temporary"]
    if not state.get("parent_post_id"):
        refs: list[str] = []
        parent = ""
        for img in references:
            up = await client.upload_file(name=img.name, mime=img.mime, data=img.data)
            ref_url = _assets_url(up.file_uri)
            refs.append(ref_url)
            post = await client.media_post_create(media_type="image", media_url=ref_url)
            parent = parent or post
        if not parent:
            parent = await client.media_post_create(media_type="video", prompt=params.prompt)
        state.clear()
        state.update({"parent_post_id": parent, "image_refs": refs, "segments": []})
        await save_state(state)
    parent = state["parent_post_id"]
    done: list[dict] = state.setdefault("segments", [])
    total = sum(segments)
    elapsed = sum(int(s["seconds"]) for s in done)
    for i, seconds in enumerate(segments):
        if i < len(done):
            continue
        if i == 0:
            payload = video_payload(
                prompt=params.prompt,
                parent_post_id=parent,
                size=params.size,
                video_length=seconds,
                resolution=params.resolution_name,
                preset=params.preset,
                image_references=state.get("image_refs") or (),
                temporary=temporary,
            )
            referer = "/imagine"
        else:
            payload = video_extension_payload(
                prompt=params.prompt,
                parent_post_id=parent,
                extend_post_id=done[-1]["post_id"],
                elapsed_seconds=float(elapsed),
                video_length=seconds,
                size=params.size,
                resolution=params.resolution_name,
                preset=params.preset,
                temporary=temporary,
            )
            referer = f"/imagine/post/{parent}"
        result = None
        async with client.chat_stream(payload=payload, referer_path=referer, mode=lease.mode) as events:
            async for ev in events:
                if isinstance(ev, VideoProgress):
                    overall = (elapsed + seconds * max(0, min(100, ev.progress)) / 100) / total * 100
                    await on_progress(max(1, min(99, int(overall))))
                elif isinstance(ev, VideoResult):
                    result = ev
                    break
        if result is None:
            raise _no_result("a video", "/rest/app-chat/conversations/new")
        if result.moderated:
            raise _moderated("video")
        url = result.url or (_assets_url(f"users/{lease.account.user_id}/{result.asset_id}/content") if result.asset_id else "")
        if not url:
            raise _no_result("a video URL", "/rest/app-chat/conversations/new")
        done.append(
            {
                "seconds": seconds,
                "post_id": result.video_post_id or result.video_id,
                "video_id": result.video_id,
                "url": url,
                "thumbnail_url": result.thumbnail_url,
            }
        )
        elapsed += seconds
        await save_state(state)
        await on_progress(max(1, min(99, int(elapsed / total * 100))))
    last = done[-1]
    return _VideoOut(url=last["url"], video_id=last.get("video_id", ""), thumbnail_url=last.get("thumbnail_url", ""))


# =========================================================================== video jobs


def _job_owner_q(principal: Any) -> dict:
    return {"api_key_id": getattr(principal, "key_id", None)}


def video_job_create(*, principal: Any, params: VideoParams, references: list[ImageInput]) -> VideoJob:
    """Persist the job and its reference images (DATA_DIR/videojobs/<id>/), then enqueue it."""
    _principal_check(principal, params.spec)
    from media.params import MAX_VIDEO_REFERENCES

    too_many(len(references), MAX_VIDEO_REFERENCES, "input_reference")
    job_id = "video_" + uuid.uuid4().hex
    paths: list[str] = []
    if references:
        folder = Path(settings.DATA_DIR) / "videojobs" / job_id
        folder.mkdir(parents=True, exist_ok=True)
        for i, ref in enumerate(references):
            path = folder / f"ref{i}_{ref.name}"
            path.write_bytes(ref.data)
            paths.append(str(path.relative_to(settings.DATA_DIR)))
    job = VideoJob.objects.create(
        id=job_id,
        api_key_id=getattr(principal, "key_id", None),
        model=params.spec.id,
        prompt=params.prompt,
        seconds=params.seconds,
        size=params.size,
        resolution_name=params.resolution_name,
        preset=params.preset,
        reference_paths=paths,
    )
    video_job_enqueue(job_id=job.id)
    return job


def video_job_enqueue(*, job_id: str) -> None:
    """Hand the job to Celery. In eager mode (no worker) run it on a thread so the POST answers at once."""
    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        threading.Thread(target=_run_guarded, args=(job_id,), name=f"video-{job_id[-8:]}", daemon=True).start()
        return
    from media.tasks import video_job_run as task

    task.delay(job_id)


def _run_guarded(job_id: str) -> None:
    from django.db import close_old_connections, connection

    try:
        video_job_run(job_id=job_id)
    except Exception:
        log.exception("video job %s crashed", job_id)
    finally:
        close_old_connections()
        connection.close()


def video_job_get(*, principal: Any, job_id: str) -> VideoJob:
    job = VideoJob.objects.filter(id=job_id, **_job_owner_q(principal)).first() if re.fullmatch(r"video_[0-9a-f]{32}", job_id or "") else None
    if job is None:
        raise NotFound(f"No video job with id '{job_id}'.", param="video_id", code="video_not_found")
    return job


def video_job_content(*, principal: Any, job_id: str) -> cache.CachedFile:
    job = video_job_get(principal=principal, job_id=job_id)
    if job.status != VideoJobStatus.COMPLETED:
        detail = f"it is {job.status.replace('_', ' ')}"
        if job.status == VideoJobStatus.FAILED:
            detail += f": {job.error_message}"
        raise Conflict(f"The video '{job_id}' is not ready ({detail}).", param="video_id", code="video_not_ready")
    found = cache.media_cache_path(media_type="video", media_id=job.id)
    if found is None:
        raise NotFound(
            f"The video '{job_id}' was removed from the local media cache (cache.local.video_max_mb).",
            param="video_id",
            code="video_expired",
        )
    return found


def video_job_render(job: VideoJob) -> dict:
    """OpenAI's video object (docs/upstream-protocol.md §12.7)."""
    out: dict[str, Any] = {
        "id": job.id,
        "object": "video",
        "created_at": int(job.created_at.timestamp()),
        "status": job.status,
        "model": job.model,
        "progress": 100 if job.status == VideoJobStatus.COMPLETED else int(job.progress),
        "prompt": job.prompt,
        "seconds": str(job.seconds),
        "size": job.size,
        "quality": "standard",
        "completed_at": int(job.completed_at.timestamp()) if job.completed_at and job.status == VideoJobStatus.COMPLETED else None,
        "expires_at": None,
        "remixed_from_video_id": None,
        "error": {"code": job.error_code or "video_generation_failed", "message": job.error_message}
        if job.status == VideoJobStatus.FAILED
        else None,
    }
    return out


def _job_fail(job_id: str, *, code: str, message: str) -> None:
    VideoJob.objects.filter(id=job_id).exclude(status=VideoJobStatus.COMPLETED).update(
        status=VideoJobStatus.FAILED, error_code=code[:60], error_message=message, completed_at=timezone.now(), worker_id=""
    )


def video_job_run(*, job_id: str) -> None:
    """Run one queued job to completion or failure (the Celery task `video_job_run` calls this).

    The job is claimed with a conditional update (queued → in_progress), so a duplicate delivery or
    a re-enqueue of a job that another worker already took is a no-op.
    """
    now = timezone.now()
    claimed = VideoJob.objects.filter(id=job_id, status=VideoJobStatus.QUEUED).update(
        status=VideoJobStatus.IN_PROGRESS,
        started_at=Coalesce(F("started_at"), now),
        heartbeat_at=now,
        worker_id=WORKER_ID,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        log.info("video job %s: not queued any more, skipped", job_id)
        return
    job = VideoJob.objects.get(id=job_id)
    t0, error = time.monotonic(), None
    try:
        asyncio.run(_video_job_async(job))
    except GatewayError as exc:
        error = exc
        log.info("video job %s failed: %r", job_id, exc)
        _job_fail(job_id, code=exc.code or exc.type or "video_generation_failed", message=exc.message)
    except Exception as exc:
        error = InternalError(f"Internal error while generating the video ({type(exc).__name__}).", code="video_generation_failed")
        log.exception("video job %s crashed", job_id)
        _job_fail(job_id, code="video_generation_failed", message=error.message)
    owner = type("Owner", (), {"key_id": job.api_key_id, "label": ""})()
    _ledger(endpoint="videos", model=job.model, principal=owner, t0=t0, error=error)


def _job_references(job: VideoJob) -> list[ImageInput]:
    refs = []
    for i, rel in enumerate(job.reference_paths or []):
        path = Path(settings.DATA_DIR) / rel
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidRequest(f"Reference image {i + 1} of this job is missing from DATA_DIR ({rel}).", param="input_reference") from None
        refs.append(image_input(data, name=path.name, param=f"input_reference[{i}]"))
    return refs


def _job_write(job_id: str, **fields: Any) -> None:
    VideoJob.objects.filter(id=job_id, status=VideoJobStatus.IN_PROGRESS).update(**fields)


def _job_complete(job_id: str, *, size: int, account_id: int | None) -> None:
    VideoJob.objects.filter(id=job_id, status=VideoJobStatus.IN_PROGRESS).update(
        status=VideoJobStatus.COMPLETED,
        progress=100,
        completed_at=timezone.now(),
        heartbeat_at=timezone.now(),
        file_name=f"{job_id}.mp4",
        file_size=size,
        worker_id="",
        error_code="",
        error_message="",
    )


async def _video_job_async(job: VideoJob) -> None:
    from grokweb.registry import model_get

    spec = model_get(job.model)
    if spec is None:
        raise InvalidRequest(f"Unknown model '{job.model}'.", param="model")
    params = VideoParams(spec=spec, prompt=job.prompt, seconds=job.seconds, size=job.size, resolution_name=job.resolution_name, preset=job.preset)
    references = await _call(_job_references, job=job)
    state: dict = dict(job.upstream_state or {})
    last = {"progress": int(job.progress), "at": 0.0}

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await _call(_job_write, job_id=job.id, heartbeat_at=timezone.now())

    async def on_progress(pct: int) -> None:
        now = time.monotonic()
        if pct <= last["progress"]:
            return
        # Throttled: at most one write per PROGRESS_WRITE_SECONDS unless the jump is large.
        if now - last["at"] < PROGRESS_WRITE_SECONDS and pct - last["progress"] < 10:
            return
        last.update(progress=pct, at=now)
        await _call(_job_write, job_id=job.id, progress=pct, heartbeat_at=timezone.now())

    async def save_state(st: dict) -> None:
        await _call(_job_write, job_id=job.id, upstream_state=dict(st), heartbeat_at=timezone.now())

    async def work(client: Any, lease: Any) -> _VideoOut:
        # Upstream posts belong to the account that created them: resume only on the same account.
        if state.get("account_id") not in (None, lease.account.id):
            state.clear()
        state["account_id"] = lease.account.id
        await _call(_job_write, job_id=job.id, account_id=lease.account.id)
        out = await _video_generate(
            client=client, lease=lease, params=params, references=references, state=state, on_progress=on_progress, save_state=save_state
        )
        found = await _download_to_cache(client=client, url=out.url, media_type="video", media_id=job.id, max_bytes=VIDEO_DOWNLOAD_MAX)
        await _call(_job_complete, job_id=job.id, size=found.size, account_id=lease.account.id)
        return out

    beat = asyncio.create_task(heartbeat())
    try:
        await _on_account(spec, work)
    finally:
        beat.cancel()
        try:
            await beat
        except (asyncio.CancelledError, Exception):
            pass
        # The ORM calls above ran on asgiref's shared thread: do not leave its connection open
        # between jobs (PostgreSQL counts it; Django reopens one when needed).
        await _call(_close_connection)


def _close_connection() -> None:
    from django.db import connection

    connection.close()


def _worker_dead(worker_id: str) -> bool:
    """True when the worker that holds a job is known to be gone (same host, process not alive)."""
    host, _, pid = (worker_id or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def video_jobs_recover(*, now=None, stale_after: float | None = None) -> dict[str, list[str]]:
    """Find jobs nobody is running and resume (re-enqueue) or fail them. Never leaves a job in progress forever.

    - in_progress with a heartbeat older than `stale_after` seconds, or held by a dead local worker:
      attempts < VIDEO_MAX_ATTEMPTS → back to queued and enqueued (resumes from `upstream_state`);
      otherwise failed with a reason;
    - queued for longer than `stale_after` (the broker message was lost): enqueued again (the
      conditional claim makes duplicates harmless).
    """
    now = now or timezone.now()
    limit = now - timedelta(seconds=_stale_after() if stale_after is None else stale_after)
    out: dict[str, list[str]] = {"resumed": [], "failed": [], "requeued": []}
    candidates = VideoJob.objects.filter(status=VideoJobStatus.IN_PROGRESS).values_list("id", "heartbeat_at", "worker_id", "attempts")
    for job_id, beat, worker, attempts in candidates:
        stale = beat is None or beat < limit
        if not stale and not _worker_dead(worker):
            continue
        if attempts >= VIDEO_MAX_ATTEMPTS:
            reason = (
                f"The worker running this job stopped (no heartbeat since {beat.isoformat() if beat else 'start'}); "
                f"gave up after {attempts} attempts."
            )
            n = VideoJob.objects.filter(id=job_id, status=VideoJobStatus.IN_PROGRESS, heartbeat_at=beat).update(
                status=VideoJobStatus.FAILED, error_code="video_worker_lost", error_message=reason, completed_at=now, worker_id=""
            )
            if n:
                out["failed"].append(job_id)
            continue
        n = VideoJob.objects.filter(id=job_id, status=VideoJobStatus.IN_PROGRESS, heartbeat_at=beat).update(
            status=VideoJobStatus.QUEUED, worker_id=""
        )
        if n:
            out["resumed"].append(job_id)
            video_job_enqueue(job_id=job_id)
    for job_id in VideoJob.objects.filter(status=VideoJobStatus.QUEUED, created_at__lt=limit).values_list("id", flat=True):
        if job_id not in out["resumed"]:
            out["requeued"].append(job_id)
            video_job_enqueue(job_id=job_id)
    if any(out.values()):
        log.warning("video job recovery: %s", out)
    return out


def video_job_retry(*, job_id: str) -> bool:
    """Admin "retry": a failed (or stuck) job starts again from scratch on a fresh attempt budget."""
    n = VideoJob.objects.filter(id=job_id).exclude(status=VideoJobStatus.COMPLETED).update(
        status=VideoJobStatus.QUEUED,
        progress=0,
        error_code="",
        error_message="",
        completed_at=None,
        heartbeat_at=None,
        worker_id="",
        attempts=0,
        upstream_state={},
    )
    if n:
        video_job_enqueue(job_id=job_id)
    return bool(n)


# =========================================================================== through chat


def _chat_image_text(links: list[str], fmt: str) -> str:
    if fmt in ("grok_md", "local_md", "base64"):
        return "\n".join(f"![image {i + 1}]({url})" for i, url in enumerate(links))
    return "\n".join(links)


async def _chat_image_link(img: _Img, fmt: str, response_format: str | None) -> str:
    if fmt == "base64" or response_format == "b64_json":
        data, mime = await _image_bytes(img)
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"
    if fmt in ("local_url", "local_md"):
        return await _image_link(img, local=True)
    return img.url


async def _chat_video_link(*, client: Any, out: _VideoOut, fmt: str) -> str:
    url = out.url
    if fmt in ("local_url", "local_html"):
        media_id = cache.media_id_for_url(out.url)
        await _download_to_cache(client=client, url=out.url, media_type="video", media_id=media_id, max_bytes=VIDEO_DOWNLOAD_MAX)
        if not _app_url():
            await _call(_media_links_alert, reason="a relative /v1/files/video link was returned")
        url = cache.media_local_url(media_type="video", media_id=media_id)
    if fmt.endswith("_html"):
        poster = f' poster="{out.thumbnail_url}"' if out.thumbnail_url and not fmt.startswith("local") else ""
        return f'<video controls src="{url}"{poster}></video>'
    return url


async def _chat_references(req: Any) -> list[ImageInput]:
    """Images of the chat request (data URIs or URLs fetched credential-free, SSRF-guarded)."""
    out: list[ImageInput] = []
    for i, att in enumerate(getattr(req, "attachments", []) or []):
        if att.kind != "image":
            continue
        param = att.param or f"image_url[{i}]"
        data = att.data
        if data is None and att.url:
            data = (await attachment_fetch(url=att.url, param=param, accept=("image/",))).data
        if data is not None:
            out.append(image_input(data, name=att.name or f"image{i + 1}", param=param))
    return out


async def _chat_pieces(req: Any, spec: ModelSpec, principal: Any) -> AsyncIterator[Any]:
    """Validate, then yield ReasoningPiece (progress) and TextPiece (result) for one media request."""
    from gateway.translate.assembler import ReasoningPiece, TextPiece

    _principal_check(principal, spec)
    prompt = req.last_user_text
    cfg = config()
    queue: asyncio.Queue = asyncio.Queue()
    flag = _Flag()
    show = bool(getattr(req, "show_reasoning", True))
    last_pct: dict[int, int] = {}

    def progress(index: int, pct: int) -> None:
        # One line per 25 % step per image keeps the reasoning readable.
        step = min(100, max(0, int(pct))) // 25 * 25
        if show and step > last_pct.get(index, -1):
            last_pct[index] = step
            queue.put_nowait(ReasoningPiece(f"Image {index + 1}: {step}%\n"))

    if spec.capability in ("image", "image_edit"):
        ic = req.image_config or {}
        if not isinstance(ic, dict):
            raise InvalidRequest("Invalid type for 'image_config': expected an object.", param="image_config")
        if spec.capability == "image":
            params = image_generation_params(
                model=spec.id, prompt=prompt, n=ic.get("n"), size=ic.get("size"), response_format=ic.get("response_format"), prefix="image_config."
            )
            refs: list[ImageInput] = []
        else:
            params = image_edit_params(
                model=spec.id, prompt=prompt, n=ic.get("n"), size=ic.get("size"), response_format=ic.get("response_format"), prefix="image_config."
            )
            refs = await _chat_references(req)
            if not refs:
                raise InvalidRequest(
                    f"The model '{spec.id}' edits images: attach at least one image to the last user message.", param="messages"
                )
            too_many(len(refs), MAX_EDIT_IMAGES, "messages")
        fmt = str(cfg.get("features.image_format") or "grok_url")

        async def produce() -> str:
            if spec.capability == "image":
                images = await _produce_images(params, progress, flag)
            else:
                images = await _edit(params, refs, progress, flag)
            links = [await _chat_image_link(img, fmt, ic.get("response_format")) for img in images]
            return _chat_image_text(links, fmt if ic.get("response_format") != "b64_json" else "base64")

    elif spec.capability == "video":
        vc = req.video_config or {}
        if not isinstance(vc, dict):
            raise InvalidRequest("Invalid type for 'video_config': expected an object.", param="video_config")
        vparams = video_params(
            model=spec.id,
            prompt=prompt,
            seconds=vc.get("seconds"),
            size=vc.get("size"),
            resolution_name=vc.get("resolution_name"),
            preset=vc.get("preset"),
            prefix="video_config.",
        )
        refs = await _chat_references(req)
        from media.params import MAX_VIDEO_REFERENCES

        too_many(len(refs), MAX_VIDEO_REFERENCES, "messages")
        fmt = str(cfg.get("features.video_format") or "grok_url")
        shown = {"pct": -1}

        async def on_progress(pct: int) -> None:
            step = pct // 10 * 10
            if show and step > shown["pct"]:
                shown["pct"] = step
                queue.put_nowait(ReasoningPiece(f"Video: {pct}%\n"))

        async def nothing(_st: dict) -> None:
            return None

        async def produce() -> str:
            async def work(client: Any, lease: Any) -> str:
                out = await _video_generate(
                    client=client, lease=lease, params=vparams, references=refs, state={}, on_progress=on_progress, save_state=nothing
                )
                return await _chat_video_link(client=client, out=out, fmt=fmt)

            return await _on_account(vparams.spec, work, flag=flag)

    else:
        raise InvalidRequest(f"The model '{spec.id}' is not a media model.", param="model")

    task = asyncio.create_task(produce())
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                flag.started = True
                yield getter.result()
                continue
            getter.cancel()
            while not queue.empty():
                flag.started = True
                yield queue.get_nowait()
            text = task.result()  # raises the task's error
            yield TextPiece(text)
            return
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


def media_chat_result(pieces: list[Any]) -> Any:
    from gateway.translate.assembler import ReasoningPiece, TextPiece, TurnResult

    return TurnResult(
        text="".join(p.text for p in pieces if isinstance(p, TextPiece)),
        reasoning="".join(p.text for p in pieces if isinstance(p, ReasoningPiece)),
        finish_reason="stop",
    )


async def media_chat_run(*, req: Any, spec: ModelSpec, principal: Any, family: str = "openai") -> Any:
    """Image/video model ids through /v1/chat/completions, /v1/responses or /v1/messages.

    Returns the family's non-stream body (dict) or a StreamingHttpResponse. Validation and failures
    before the first piece raise (the caller renders an HTTP error); later failures become the
    family's mid-stream error event.
    """
    from django.http import StreamingHttpResponse

    from gateway.services import FAMILIES
    from gateway.sse import KEEPALIVE, SSE_HEADERS, with_keepalive
    from gateway.translate.common import flatten
    from gateway.translate.tokens import prompt_tokens, usage_for

    mod = importlib.import_module(FAMILIES[family])
    ptokens = prompt_tokens(flatten(req))
    pieces_iter = _chat_pieces(req, spec, principal).__aiter__()

    from gateway.services import ENDPOINTS

    endpoint = ENDPOINTS.get(family, family)
    t0 = time.monotonic()
    if not req.stream:
        try:
            pieces = [p async for p in pieces_iter]
        except BaseException as exc:
            _ledger(endpoint=endpoint, model=spec.id, principal=principal, t0=t0, error=exc)
            raise
        _ledger(endpoint=endpoint, model=spec.id, principal=principal, t0=t0, error=None)
        return mod.body(result=media_chat_result(pieces), model=req.model, prompt_tokens=ptokens)

    # Hold the response until the first piece: validation errors stay HTTP errors.
    try:
        first = await pieces_iter.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException as exc:
        _ledger(endpoint=endpoint, model=spec.id, principal=principal, t0=t0, error=exc, stream=True)
        raise
    encoder = mod.StreamEncoder(model=req.model, prompt_tokens=ptokens, include_usage=bool(getattr(req, "include_usage", False)))

    async def body():
        seen = [first] if first is not None else []
        source = with_keepalive(pieces_iter, interval=15.0)
        failure: BaseException | None = None
        try:
            yield encoder.feed(seen) or encoder.keepalive()
            async for item in source:
                if item is KEEPALIVE:
                    yield encoder.keepalive()
                    continue
                seen.append(item)
                out = encoder.feed([item])
                if out:
                    yield out
            result = media_chat_result(seen)
            usage_for(prompt_tokens=ptokens, result=result)
            yield encoder.finish(result)
        except GatewayError as exc:
            failure = exc
            yield encoder.error(exc)
        except (asyncio.CancelledError, GeneratorExit) as exc:
            failure = asyncio.CancelledError() if isinstance(exc, GeneratorExit) else exc
            raise
        except Exception:
            log.exception("media stream for %s failed", spec.id)
            failure = InternalError("Internal server error")
            yield encoder.error(failure)
        finally:
            await source.aclose()
            _ledger(endpoint=endpoint, model=spec.id, principal=principal, t0=t0, error=failure, stream=True)

    response = StreamingHttpResponse(body(), content_type="text/event-stream; charset=utf-8")
    for name, value in SSE_HEADERS.items():
        response[name] = value
    return response


async def media_chat_urls(*, client: Any, images: list[Any], videos: list[Any]) -> dict[str, str]:
    """For in-chat images/videos of ordinary chat models: upstream URL → local link or data URI,
    per features.image_format / video_format (what TurnAssembler.finish(media_urls=...) expects)."""
    cfg = config()
    ifmt = str(cfg.get("features.image_format") or "grok_url")
    vfmt = str(cfg.get("features.video_format") or "grok_url")
    out: dict[str, str] = {}
    for piece in images:
        img = _Img(url=piece.url, client=client, image_id=getattr(piece, "image_id", ""), blob_b64=getattr(piece, "blob_b64", ""))
        if ifmt == "base64":
            out[piece.url] = await _chat_image_link(img, "base64", None)
        elif ifmt in ("local_url", "local_md"):
            out[piece.url] = await _image_link(img, local=True)
    for piece in videos:
        if vfmt in ("local_url", "local_html"):
            media_id = cache.media_id_for_url(piece.url)
            await _download_to_cache(client=client, url=piece.url, media_type="video", media_id=media_id, max_bytes=VIDEO_DOWNLOAD_MAX)
            out[piece.url] = cache.media_local_url(media_type="video", media_id=media_id)
    return out
