"""Image generation and editing (docs/upstream-protocol.md §6, §7): POST /v1/images/generations and /v1/images/edits.

- grok-imagine-image-lite: `n` parallel E1 chat requests `"Drawing: <prompt>"` (mode from the
  lease, normally `fast`); the first finished, unmoderated image of each request is used.
- grok-imagine-image / -pro: the Imagine WebSocket (GrokClient.imagine_generate), rounds until
  `n` finals arrive; `enable_pro` for pro. Finals carry the bytes (`blob_b64`).
- grok-imagine-image-edit: upload each reference (E3), `@IMAGEn` → `@<fileId>`, an image media
  post (E10), then the edit chat stream (E1, Referer `/imagine/post/<postId>`), up to 2 attempts.

Each upstream call runs on a pool account through accounts/attempt.py (lease, report, retry on
another account per the operator's retry policy). Output `{"created", "data": [{"url"} |
{"b64_json"}]}`: `url` is a local cache link built from `app.app_url` when it is set; with
`app.app_url` empty the upstream URL is returned (assets URLs need the account's cookie: an
OperatorAlert explains the 403s clients will see). Public Imagine URLs are returned as they are
unless `features.imagine_public_image_proxy` is on. Moderated images are dropped; when none
remain, a 400 `content_policy_violation`.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from accounts.attempt import AccountAttempt, account_attempt
from core.config import config
from grokweb.errors import GatewayError, InternalError, InvalidRequest
from grokweb.registry import ModelSpec
from grokweb.classify import UpstreamError, UpstreamKind
from grokweb.events import ImageProgress, ImageResult
from grokweb.payloads import image_edit_payload
from media import cache
from media.common import (
    IMAGE_DOWNLOAD_MAX,
    Served,
    app_url,
    assets_url,
    call_sync,
    chat_flags,
    download_to_cache,
    media_ledger,
    media_links_alert,
    moderated_error,
    no_result_error,
    principal_check,
    url_is_public,
)
from media.params import MAX_EDIT_IMAGES, ImageInput, ImageParams, image_edit_params, image_generation_params, too_many

log = logging.getLogger(__name__)

EDIT_ATTEMPTS = 2


@dataclass
class GeneratedImage:
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


async def _lite_one(prompt: str, index: int, spec: ModelSpec, progress: ProgressFn, flag: Served | None) -> GeneratedImage:
    async def work(attempt: AccountAttempt) -> GeneratedImage:
        client, lease = attempt.client, attempt.lease
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
                    return GeneratedImage(url=ev.url, client=client, image_id=ev.image_id, blob_b64=ev.blob_b64)
        if moderated:
            raise moderated_error("image")
        raise no_result_error("an image", "/rest/app-chat/conversations/new")

    return await account_attempt(model=spec, work=work, served=flag or Served())


async def _gather_images(coros: list[Awaitable[GeneratedImage]]) -> list[GeneratedImage]:
    """Run per-image requests in parallel; keep successes, fail only when none succeeded."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    images = [r for r in results if isinstance(r, GeneratedImage)]
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


async def _imagine(params: ImageParams, progress: ProgressFn, flag: Served | None) -> list[GeneratedImage]:
    pro = params.spec.id.endswith("-pro")

    async def collect(stream: Any, got: list[GeneratedImage]) -> int:
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
                got.append(GeneratedImage(url=ev.url, client=stream_client[0], image_id=ev.image_id, blob_b64=ev.blob_b64))
                progress(len(got) - 1, 100)
                if len(got) >= params.n:
                    break
        return moderated

    stream_client: list[Any] = [None]

    async def work(attempt: AccountAttempt) -> list[GeneratedImage]:
        client = attempt.client
        stream_client[0] = client
        got: list[GeneratedImage] = []
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
                raise moderated_error("image")
            raise no_result_error("an image", "/ws/imagine/listen")
        return got

    return await account_attempt(model=params.spec, work=work, served=flag or Served())


def _edit_prompt(prompt: str, file_ids: list[str]) -> str:
    def repl(match: re.Match) -> str:
        i = int(match.group(1))
        return f"@{file_ids[i - 1]}" if 1 <= i <= len(file_ids) else match.group(0)

    return re.sub(r"@IMAGE(\d+)", repl, prompt, flags=re.IGNORECASE)


async def images_edit_run(params: ImageParams, images: list[ImageInput], progress: ProgressFn, flag: Served | None) -> list[GeneratedImage]:
    async def work(attempt: AccountAttempt) -> list[GeneratedImage]:
        client, lease = attempt.client, attempt.lease
        uploads = [await client.upload_file(name=img.name, mime=img.mime, data=img.data) for img in images]
        refs = [assets_url(u.file_uri) for u in uploads]
        prompt = _edit_prompt(params.prompt, [u.file_id for u in uploads])
        post_id = await client.media_post_create(media_type="image", prompt=prompt)
        got: list[GeneratedImage] = []
        seen: set[str] = set()
        moderated = 0
        for _ in range(EDIT_ATTEMPTS):
            payload = image_edit_payload(
                prompt=prompt, image_references=refs, parent_post_id=post_id, temporary=chat_flags()["temporary"]
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
                        got.append(GeneratedImage(url=ev.url, client=client, image_id=ev.image_id, blob_b64=ev.blob_b64))
                        if len(got) >= params.n:
                            break
            if len(got) >= params.n:
                break
        if not got:
            if moderated:
                raise moderated_error("image edit")
            raise no_result_error("an edited image", "/rest/app-chat/conversations/new")
        return got[: params.n]

    return await account_attempt(model=params.spec, work=work, served=flag or Served())


async def _image_cache(img: GeneratedImage) -> str:
    """Ensure the image is in the local cache; return its media id."""
    media_id = img.media_id
    if cache.media_cache_path(media_type="image", media_id=media_id) is None:
        if img.blob_b64:
            await call_sync(
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
                    await download_to_cache(client=img.client, url=url, media_type="image", media_id=media_id, max_bytes=IMAGE_DOWNLOAD_MAX)
                    break
                except UpstreamError as exc:
                    if exc.kind != UpstreamKind.NOT_FOUND or i == len(urls) - 1:
                        raise
    return media_id


async def image_bytes(img: GeneratedImage) -> tuple[bytes, str]:
    if img.blob_b64:
        data = base64.b64decode(img.blob_b64)
        return data, cache.sniff_content_type(data[:16]) or "image/jpeg"
    media_id = await _image_cache(img)
    found = cache.media_cache_path(media_type="image", media_id=media_id)
    if found is None:
        raise InternalError("The image left the cache before it could be read.")
    return found.path.read_bytes(), found.content_type


async def image_link(img: GeneratedImage, *, local: bool) -> str:
    """The URL a client gets. `local` asks for a cached copy (local_url formats, or app_url set)."""
    if url_is_public(img.url) and not config().get("features.imagine_public_image_proxy"):
        return img.url
    if local:
        media_id = await _image_cache(img)
        if not app_url():
            await call_sync(media_links_alert, reason="a relative /v1/files/image link was returned")
        return cache.media_local_url(media_type="image", media_id=media_id)
    if not url_is_public(img.url):
        await call_sync(media_links_alert, reason="a private assets URL was returned")
    return img.url


async def _render_api_image(img: GeneratedImage, response_format: str) -> dict[str, str]:
    if response_format == "b64_json":
        data, _ = await image_bytes(img)
        return {"b64_json": base64.b64encode(data).decode()}
    if app_url():
        return {"url": await image_link(img, local=True)}
    return {"url": await image_link(img, local=False)}


async def images_produce(params: ImageParams, progress: ProgressFn, flag: Served | None = None) -> list[GeneratedImage]:
    if params.spec.id == "grok-imagine-image-lite":
        return await _gather_images([_lite_one(params.prompt, i, params.spec, progress, flag) for i in range(params.n)])
    return await _imagine(params, progress, flag)


def _no_progress(_index: int, _percent: int) -> None:
    return None


async def images_generate(*, model: Any, prompt: Any, n: Any = None, size: Any = None, response_format: Any = None, principal: Any = None) -> dict:
    """POST /v1/images/generations."""
    params = image_generation_params(model=model, prompt=prompt, n=n, size=size, response_format=response_format)
    principal_check(principal, params.spec)
    t0, error = time.monotonic(), None
    try:
        images = await images_produce(params, _no_progress)
        data = [await _render_api_image(img, params.response_format) for img in images]
    except BaseException as exc:
        error = exc
        raise
    finally:
        media_ledger(endpoint="images.generations", model=params.spec.id, principal=principal, t0=t0, error=error)
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
    principal_check(principal, params.spec)
    if not images:
        raise InvalidRequest("Missing required parameter: 'image'.", param="image", code="missing_required_parameter")
    too_many(len(images), MAX_EDIT_IMAGES, "image")
    t0, error = time.monotonic(), None
    try:
        results = await images_edit_run(params, images, _no_progress, None)
        data = [await _render_api_image(img, params.response_format) for img in results]
    except BaseException as exc:
        error = exc
        raise
    finally:
        media_ledger(endpoint="images.edits", model=params.spec.id, principal=principal, t0=t0, error=error)
    return {"created": int(time.time()), "data": data}
