"""Image and video model ids through the chat endpoints: the media half of the chat bridge.

`media_chat_pieces` validates the request's `image_config` / `video_config`, runs the generation
(media/images.py, media/videos.py) and yields the turn as pieces — progress as ReasoningPiece
lines, the result as one TextPiece formatted per `features.image_format` / `features.video_format`.
The gateway renders them in the family's wire format (gateway/services.py), so the SSE stream,
keep-alives and the usage ledger row are the gateway's.

`media_chat_urls` turns images and videos that ordinary chat answers carry into local links or
data URIs, with the account that produced them.
"""
from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

from accounts.attempt import AccountAttempt, account_attempt
from core.config import config
from media.attachments import attachment_fetch
from grokweb.errors import InvalidRequest
from grokweb.registry import ModelSpec
from gateway.translate.assembler import ReasoningPiece, TextPiece, TurnResult
from media import cache
from media.common import VIDEO_DOWNLOAD_MAX, Served, app_url, call_sync, download_to_cache, media_links_alert, principal_check
from media.images import GeneratedImage, image_bytes, image_link, images_edit_run, images_produce
from media.params import (
    MAX_EDIT_IMAGES,
    MAX_VIDEO_REFERENCES,
    ImageInput,
    image_edit_params,
    image_generation_params,
    image_input,
    too_many,
    video_params,
)
from media.videos import VideoOut, video_generate

log = logging.getLogger(__name__)

def _chat_image_text(links: list[str], fmt: str) -> str:
    if fmt in ("grok_md", "local_md", "base64"):
        return "\n".join(f"![image {i + 1}]({url})" for i, url in enumerate(links))
    return "\n".join(links)


async def _chat_image_link(img: GeneratedImage, fmt: str, response_format: str | None) -> str:
    if fmt == "base64" or response_format == "b64_json":
        data, mime = await image_bytes(img)
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"
    if fmt in ("local_url", "local_md"):
        return await image_link(img, local=True)
    return img.url


async def _chat_video_link(*, client: Any, out: VideoOut, fmt: str) -> str:
    url = out.url
    if fmt in ("local_url", "local_html"):
        media_id = cache.media_id_for_url(out.url)
        await download_to_cache(client=client, url=out.url, media_type="video", media_id=media_id, max_bytes=VIDEO_DOWNLOAD_MAX)
        if not app_url():
            await call_sync(media_links_alert, reason="a relative /v1/files/video link was returned")
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


async def media_chat_pieces(*, req: Any, spec: ModelSpec, principal: Any) -> AsyncIterator[Any]:
    """Validate, then yield ReasoningPiece (progress) and TextPiece (result) for one media request.

    Validation and failures before the first piece raise from the first `__anext__`; the caller
    holds its answer until then, so they stay HTTP errors."""
    principal_check(principal, spec)
    prompt = req.last_user_text
    cfg = config()
    queue: asyncio.Queue = asyncio.Queue()
    flag = Served()
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
                images = await images_produce(params, progress, flag)
            else:
                images = await images_edit_run(params, refs, progress, flag)
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
            async def work(attempt: AccountAttempt) -> str:
                client, lease = attempt.client, attempt.lease
                out = await video_generate(
                    client=client, lease=lease, params=vparams, references=refs, state={}, on_progress=on_progress, save_state=nothing
                )
                return await _chat_video_link(client=client, out=out, fmt=fmt)

            return await account_attempt(model=vparams.spec, work=work, served=flag or Served())

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


def media_chat_result(pieces: list[Any]) -> TurnResult:
    """The finished turn of a media request, from its pieces."""
    return TurnResult(
        text="".join(p.text for p in pieces if isinstance(p, TextPiece)),
        reasoning="".join(p.text for p in pieces if isinstance(p, ReasoningPiece)),
        finish_reason="stop",
    )


async def media_chat_urls(*, client: Any, images: list[Any], videos: list[Any]) -> dict[str, str]:
    """For in-chat images/videos of ordinary chat models: upstream URL → local link or data URI,
    per features.image_format / video_format (what TurnAssembler.finish(media_urls=...) expects)."""
    cfg = config()
    ifmt = str(cfg.get("features.image_format") or "grok_url")
    vfmt = str(cfg.get("features.video_format") or "grok_url")
    out: dict[str, str] = {}
    for piece in images:
        img = GeneratedImage(url=piece.url, client=client, image_id=getattr(piece, "image_id", ""), blob_b64=getattr(piece, "blob_b64", ""))
        if ifmt == "base64":
            out[piece.url] = await _chat_image_link(img, "base64", None)
        elif ifmt in ("local_url", "local_md"):
            out[piece.url] = await image_link(img, local=True)
    for piece in videos:
        if vfmt in ("local_url", "local_html"):
            media_id = cache.media_id_for_url(piece.url)
            await download_to_cache(client=client, url=piece.url, media_type="video", media_id=media_id, max_bytes=VIDEO_DOWNLOAD_MAX)
            out[piece.url] = cache.media_local_url(media_type="video", media_id=media_id)
    return out
