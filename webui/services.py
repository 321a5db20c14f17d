"""Services used only by the web pages: the chat proxy check, the voice token, the image wall.

- `webui_chat(*, raw)`: the body of POST /webui/api/chat/completions is an OpenAI Chat Completions
  request; after the page-specific checks (a non-empty last user turn, no message over
  MAX_MESSAGE_CHARS) it runs through `gateway.services.chat_handle` exactly like /v1.
- `voice_token_issue(...)`: docs/upstream-protocol.md §10 — an account from the super/heavy pools with `auto` quota
  (accounts/attempt.py: the pool's lease, so quotas, cooldowns and in-flight caps apply, and its
  retry policy), `GrokClient.livekit_token`, the outcome reported back to the pool. Answer
  `{"token","url","participant_name","room_name"}`.
- `wall_request_parse(msg)` / `wall_round(*, req, emit)`: one generation round of the image wall.
  Standard/pro run over the Imagine WebSocket (`GrokClient.imagine_generate`) on a pool account
  (accounts/attempt.py; no retry once an image is on the wall) and call `emit` for each progress
  step and each finished image as it arrives; lite runs `count` parallel single-image requests through `media.images.images_generate` and emits each
  as it completes. Images are sent as `data:` URIs (upstream asset URLs need the account's
  cookie, which never reaches a browser).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accounts.attempt import AccountAttempt, account_attempt
from gateway import services
from grokweb.errors import GatewayError, InvalidRequest, RateLimited
from gateway.jsonbody import json_body_parse
from grokweb.registry import ModelSpec, model_get
from grokweb.classify import UpstreamError
from grokweb.events import ImageProgress, ImageResult
from media.images import images_generate
from webui.access import WEBUI_PRINCIPAL

log = logging.getLogger(__name__)

# Longest single message the chat page accepts (characters); the page checks it before sending too.
MAX_MESSAGE_CHARS = 32000

# --------------------------------------------------------------------------- chat


def _message_text(content: Any) -> tuple[str, bool]:
    """(text, has_image) of an OpenAI message content (string or list of parts)."""
    if isinstance(content, str):
        return content, False
    text, image = [], False
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    text.append(part["text"])
                elif part.get("type") == "image_url":
                    image = True
    return "\n".join(text), image


def webui_chat_check(body: Any) -> None:
    """The chat page's own rules, on top of the /v1 validation: raise InvalidRequest naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", param=None, code="invalid_json")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("Type a message first: the conversation is empty.", param="messages", code="empty_prompt")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        text, _ = _message_text(message.get("content"))
        if len(text) > MAX_MESSAGE_CHARS:
            raise InvalidRequest(
                f"Message {i + 1} is {len(text)} characters long; the limit is {MAX_MESSAGE_CHARS}.",
                param=f"messages[{i}].content", code="prompt_too_long",
            )
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    text, image = _message_text(last.get("content"))
    if last.get("role") == "user" and not text.strip() and not image:
        raise InvalidRequest("Type a message first: the prompt is empty.", param=f"messages[{len(messages) - 1}].content",
                             code="empty_prompt")


async def webui_chat(*, raw: bytes):
    body = json_body_parse(raw, require_object=False, empty=None)
    webui_chat_check(body)
    return await services.chat_handle(family="openai", raw=raw, principal=WEBUI_PRINCIPAL)


def webui_models() -> dict:
    return services.models_list(principal=WEBUI_PRINCIPAL)


# --------------------------------------------------------------------------- voice

# Spec §10: voice uses only super/heavy accounts with `auto` quota. Not a /v1 model (not listed).
VOICE_SPEC = ModelSpec("grok-voice", "voice", "auto", "super", ("super", "heavy"), "Grok Voice")
VOICES = ("ara", "eve", "leo", "rex", "sal", "gork")
MAX_INSTRUCTION_CHARS = 4000


def voice_params_parse(body: Any) -> dict[str, Any]:
    """Validate `{"voice","personality","speed","instruction"}` (all optional)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", param=None, code="invalid_json")
    voice = body.get("voice", "ara")
    if not isinstance(voice, str) or voice not in VOICES:
        raise InvalidRequest(f"voice must be one of {', '.join(VOICES)}.", param="voice")
    personality = body.get("personality", "assistant")
    if not isinstance(personality, str) or not personality.strip() or len(personality) > 64:
        raise InvalidRequest("personality must be a short non-empty string.", param="personality")
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.5 <= float(speed) <= 2.0:
        raise InvalidRequest("speed must be a number from 0.5 to 2.0.", param="speed")
    instruction = body.get("instruction", "")
    if not isinstance(instruction, str) or len(instruction) > MAX_INSTRUCTION_CHARS:
        raise InvalidRequest(f"instruction must be text of at most {MAX_INSTRUCTION_CHARS} characters.", param="instruction")
    return {"voice": voice, "personality": personality.strip(), "speed": float(speed), "instruction": instruction}


async def voice_token_issue(*, voice: str, personality: str, speed: float, instruction: str) -> dict[str, Any]:
    """A LiveKit token from a super/heavy account (accounts/attempt.py: the pool's lease, report and retry policy)."""

    async def work(attempt: AccountAttempt) -> dict[str, Any]:
        return await attempt.client.livekit_token(voice=voice, personality=personality, speed=speed, instruction=instruction)

    try:
        return await account_attempt(model=VOICE_SPEC, work=work)
    except RateLimited as exc:
        raise RateLimited(
            "No eligible account for voice (voice needs a super or heavy account with auto quota left). "
            + exc.message, code="no_eligible_account",
        ) from None


# --------------------------------------------------------------------------- image wall

WALL_MODELS = {"lite": "grok-imagine-image-lite", "standard": "grok-imagine-image", "pro": "grok-imagine-image-pro"}
# The reference relay's `quality` field: speed → standard, quality → pro.
WALL_QUALITY = {"speed": "standard", "quality": "pro"}
WALL_ASPECTS = ("1:1", "2:3", "3:2", "9:16", "16:9")
ASPECT_TO_SIZE = {"1:1": "1024x1024", "2:3": "1024x1792", "3:2": "1792x1024", "9:16": "720x1280", "16:9": "1280x720"}
WALL_MAX_COUNT = 6
WALL_MAX_ROUNDS = 10  # rounds one Start may spend (count × rounds images); more only by the user's click
WALL_MAX_PROMPT = 8000
IMAGE_DOWNLOAD_MAX = 20 * 1024 * 1024

Emit = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WallRequest:
    model: str  # lite | standard | pro
    spec: ModelSpec
    prompt: str
    aspect_ratio: str
    count: int
    rounds: int = 1  # rounds the user chose before Start: the run spends count × rounds images


def wall_request_parse(msg: dict[str, Any]) -> WallRequest:
    """A `start` message → WallRequest; InvalidRequest names the bad field."""
    prompt = msg.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("Enter a prompt before starting the wall.", param="prompt", code="empty_prompt")
    prompt = prompt.strip()
    if len(prompt) > WALL_MAX_PROMPT:
        raise InvalidRequest(f"The prompt is {len(prompt)} characters long; the limit is {WALL_MAX_PROMPT}.",
                             param="prompt", code="prompt_too_long")
    model = msg.get("model")
    if model is None:
        model = WALL_QUALITY.get(str(msg.get("quality") or "speed"))
    if model not in WALL_MODELS:
        raise InvalidRequest("model must be one of lite, standard, pro.", param="model")
    aspect = msg.get("aspect_ratio", "2:3")
    if aspect not in WALL_ASPECTS:
        raise InvalidRequest(f"aspect_ratio must be one of {', '.join(WALL_ASPECTS)}.", param="aspect_ratio")
    count = msg.get("count", 4)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= WALL_MAX_COUNT:
        raise InvalidRequest(f"count must be an integer from 1 to {WALL_MAX_COUNT}.", param="count")
    rounds = msg.get("rounds", 1)  # absent (the reference's relay): one round
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= WALL_MAX_ROUNDS:
        raise InvalidRequest(f"rounds must be an integer from 1 to {WALL_MAX_ROUNDS}.", param="rounds")
    spec = model_get(WALL_MODELS[model])
    assert spec is not None
    return WallRequest(model=model, spec=spec, prompt=prompt, aspect_ratio=aspect, count=count, rounds=rounds)


def _mime_of(head: bytes) -> str:
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:3] == b"GIF":
        return "image/gif"
    return "image/jpeg"


def _data_uri(b64: str) -> str:
    head = base64.b64decode(b64[:24] + "=" * (-len(b64[:24]) % 4), validate=False)
    return f"data:{_mime_of(head)};base64,{b64}"


async def _image_src(client: Any, ev: Any) -> str:
    if ev.blob_b64:
        return _data_uri(ev.blob_b64)
    with tempfile.TemporaryDirectory(prefix="webui-img-") as tmp:
        dest = Path(tmp) / "image"
        got = await client.download_asset(url=ev.url, dest=dest, max_bytes=IMAGE_DOWNLOAD_MAX)
        data = Path(got.path).read_bytes()
    return f"data:{_mime_of(data[:16])};base64,{base64.b64encode(data).decode()}"


def _image_event(req: WallRequest, src: str, image_id: str) -> dict[str, Any]:
    return {"type": "image", "src": src, "image_id": image_id, "prompt": req.prompt, "model": req.model,
            "aspect_ratio": req.aspect_ratio}


async def _imagine_round(req: WallRequest, emit: Emit) -> int:
    emitted = 0

    async def work(attempt: AccountAttempt) -> int:
        nonlocal emitted
        client = attempt.client
        stream = client.imagine_generate(prompt=req.prompt, aspect_ratio=req.aspect_ratio, pro=req.model == "pro", n=req.count)
        async with contextlib.aclosing(stream):
            async for ev in stream:
                if isinstance(ev, ImageProgress):
                    await emit({"type": "progress", "image_index": ev.image_index, "progress": ev.progress})
                elif isinstance(ev, ImageResult):
                    if ev.moderated or not (ev.blob_b64 or ev.url):
                        await emit({"type": "moderated", "image_index": ev.image_index})
                        continue
                    await emit(_image_event(req, await _image_src(client, ev), ev.image_id))
                    emitted += 1
        return emitted

    # Images already on the wall end the retries (accounts/attempt.py `served`).
    try:
        return await account_attempt(model=req.spec, work=work, served=lambda: emitted > 0)
    except UpstreamError:
        if emitted:
            return emitted  # a later round failed after images were shown: keep them
        raise


async def _lite_round(req: WallRequest, emit: Emit) -> int:
    async def one() -> str:
        result = await images_generate(model=req.spec.id, prompt=req.prompt, n=1, size=ASPECT_TO_SIZE[req.aspect_ratio],
                                       response_format="b64_json", principal=WEBUI_PRINCIPAL)
        return result["data"][0]["b64_json"]

    tasks = [asyncio.ensure_future(one()) for _ in range(req.count)]
    emitted = 0
    errors: list[GatewayError] = []
    try:
        for fut in asyncio.as_completed(tasks):
            try:
                b64 = await fut
            except GatewayError as exc:
                errors.append(exc)
                continue
            await emit(_image_event(req, _data_uri(b64), ""))
            emitted += 1
    finally:
        for task in tasks:
            task.cancel()
    if not emitted and errors:
        raise errors[0]
    return emitted


async def wall_round(*, req: WallRequest, emit: Emit) -> int:
    """Run one round (up to `req.count` images); returns how many images were emitted."""
    if req.model == "lite":
        return await _lite_round(req, emit)
    return await _imagine_round(req, emit)
