"""Validation of media request parameters, shared by the HTTP endpoints and the chat dispatch.

Pure (no Django, no I/O). Every failure is an InvalidRequest naming the parameter as the client
wrote it (`n`, `size`, `image_config.n`, `input_reference[2]`, …), rendered as a 400 in the
client's envelope by grok2api/api.py.

Limits (protocol docs/upstream-protocol.md §6, §7, §12.7):
- generations: `n` 1–4 for grok-imagine-image-lite, 1–10 otherwise; `size` one of IMAGE_SIZES;
  `response_format` url | b64_json;
- edits: at most MAX_EDIT_IMAGES images, `n` 1–2, `size` 1024x1024 only, `mask` refused;
- videos: `seconds` 6/10/12/16/20, `size` one of VIDEO_SIZES, `resolution_name` 480p/720p,
  `preset` fun/normal/spicy/custom, at most MAX_VIDEO_REFERENCES reference images;
- every uploaded image must be PNG, JPEG, WebP or GIF by its magic bytes, within the one attachment
  cap (media/attachments.py, MAX_ATTACHMENT_MB).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from media.attachments import attachment_size_check
from grokweb.errors import InvalidRequest, ModelNotFound
from grokweb.registry import ModelSpec, model_get

IMAGE_SIZES = {
    "1280x720": "16:9",
    "720x1280": "9:16",
    "1792x1024": "3:2",
    "1024x1792": "2:3",
    "1024x1024": "1:1",
}
VIDEO_SIZES = {
    "720x1280": "9:16",
    "1280x720": "16:9",
    "1024x1024": "1:1",
    "1024x1792": "9:16",
    "1792x1024": "16:9",
}
VIDEO_SECONDS = (6, 10, 12, 16, 20)
VIDEO_RESOLUTIONS = ("480p", "720p")
VIDEO_PRESETS = ("fun", "normal", "spicy", "custom")
RESPONSE_FORMATS = ("url", "b64_json")
MAX_EDIT_IMAGES = 5
MAX_VIDEO_REFERENCES = 7
MAX_PROMPT_CHARS = 8000
IMAGE_MIMES = ("image/png", "image/jpeg", "image/webp", "image/gif")


@dataclass(frozen=True, slots=True)
class ImageInput:
    """A validated reference image (bytes already in memory; the mime is sniffed, never trusted)."""

    data: bytes
    mime: str
    name: str


@dataclass(frozen=True, slots=True)
class ImageParams:
    spec: ModelSpec
    prompt: str
    n: int
    size: str
    aspect_ratio: str
    response_format: str


@dataclass(frozen=True, slots=True)
class VideoParams:
    spec: ModelSpec
    prompt: str
    seconds: int
    size: str
    resolution_name: str
    preset: str


def sniff_content_type(head: bytes) -> str | None:
    """Content type from magic bytes (never trust a header or a file name for what we serve)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    return None


def sniff_image(data: bytes) -> str | None:
    kind = sniff_content_type(data[:16])
    return kind if kind and kind.startswith("image/") else None


def image_input(data: bytes, *, name: str, param: str) -> ImageInput:
    """Check an uploaded or fetched reference image: size cap, then magic bytes."""
    attachment_size_check(size=len(data), param=param)
    mime = sniff_image(data)
    if mime is None:
        raise InvalidRequest(
            f"Invalid value for '{param}': the file is not an image (expected PNG, JPEG, WebP or GIF data).",
            param=param,
            code="invalid_image",
        )
    ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}[mime]
    # Only a safe stem survives: the name is used for the upstream upload and for files under DATA_DIR.
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", (name or "image").rsplit("/", 1)[-1].rsplit(".", 1)[0])[:60].strip("_") or "image"
    return ImageInput(data=data, mime=mime, name=f"{base}.{ext}")


_INT_TEXT = re.compile(r"-?[0-9]{1,9}", re.ASCII)
_INT_MAX = 10**9  # every integer parameter is small; bigger values are refused before any formatting


def _int(value: Any, param: str) -> int:
    if isinstance(value, bool):
        raise InvalidRequest(f"Invalid type for '{param}': expected an integer, got a boolean.", param=param, code="invalid_type")
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    # ASCII digits only and a bounded length: str.isdigit() accepts "²" and other unicode digits
    # that int() refuses, and int() refuses strings past Python's 4300-digit conversion limit.
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        number = int(value.strip())
    if number is not None and abs(number) > _INT_MAX:
        raise InvalidRequest(f"Invalid value for '{param}': the integer is out of range.", param=param)
    if number is None:
        shown = repr(value) if not isinstance(value, (int, float)) else type(value).__name__
        shown = shown if len(shown) <= 40 else shown[:40] + "…"
        raise InvalidRequest(f"Invalid type for '{param}': expected an integer, got {shown}.", param=param, code="invalid_type")
    return number


def _str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"Invalid type for '{param}': expected a string, got {type(value).__name__}.", param=param)
    return value.strip()


def _prompt(value: Any, param: str = "prompt") -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    prompt = _str(value, param)
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"Invalid value for '{param}': at most {MAX_PROMPT_CHARS} characters.", param=param)
    return prompt


def media_model(value: Any, *, capabilities: tuple[str, ...], default: str | None = None, param: str = "model") -> ModelSpec:
    if value is None or value == "":
        if default is None:
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
        value = default
    name = _str(value, param)
    spec = model_get(name)
    if spec is None:
        raise ModelNotFound(name, param=param)
    if spec.capability not in capabilities:
        wanted = ", ".join(m for m in _ids_for(capabilities))
        raise InvalidRequest(f"Invalid value for '{param}': '{name}' cannot be used here; use one of {wanted}.", param=param)
    return spec


def _ids_for(capabilities: tuple[str, ...]) -> list[str]:
    from grokweb.registry import MODELS

    return [m.id for m in MODELS if m.capability in capabilities]


def image_generation_params(
    *, model: Any, prompt: Any, n: Any = None, size: Any = None, response_format: Any = None, prefix: str = ""
) -> ImageParams:
    """POST /v1/images/generations (prefix "") or a chat `image_config` (prefix "image_config.")."""
    spec = media_model(model, capabilities=("image",))
    text = _prompt(prompt, "prompt" if not prefix else "messages")
    count = 1 if n is None else _int(n, prefix + "n")
    top = 4 if spec.id == "grok-imagine-image-lite" else 10
    if not 1 <= count <= top:
        raise InvalidRequest(
            f"Invalid value for '{prefix}n': {spec.id} produces 1 to {top} images per request, got {count}.",
            param=prefix + "n",
        )
    size_s = "1024x1024" if size in (None, "") else _str(size, prefix + "size").lower()
    if size_s not in IMAGE_SIZES:
        raise InvalidRequest(
            f"Invalid value for '{prefix}size': expected one of {', '.join(IMAGE_SIZES)}, got {size_s!r}.",
            param=prefix + "size",
        )
    fmt = "url" if response_format in (None, "") else _str(response_format, prefix + "response_format")
    if fmt not in RESPONSE_FORMATS:
        raise InvalidRequest(
            f"Invalid value for '{prefix}response_format': expected url or b64_json, got {fmt!r}.",
            param=prefix + "response_format",
        )
    return ImageParams(spec=spec, prompt=text, n=count, size=size_s, aspect_ratio=IMAGE_SIZES[size_s], response_format=fmt)


def image_edit_params(
    *, model: Any, prompt: Any, n: Any = None, size: Any = None, response_format: Any = None, has_mask: bool = False, prefix: str = ""
) -> ImageParams:
    if has_mask:
        raise InvalidRequest(
            "Invalid value for 'mask': masks are not supported by Grok image editing; describe the change in the prompt "
            "and reference images as @IMAGE1, @IMAGE2, ….",
            param="mask",
        )
    spec = media_model(model, capabilities=("image_edit",), default="grok-imagine-image-edit")
    text = _prompt(prompt, "prompt" if not prefix else "messages")
    count = 1 if n is None else _int(n, prefix + "n")
    if not 1 <= count <= 2:
        raise InvalidRequest(f"Invalid value for '{prefix}n': image edits produce 1 or 2 images, got {count}.", param=prefix + "n")
    size_s = "1024x1024" if size in (None, "") else _str(size, prefix + "size").lower()
    if size_s != "1024x1024":
        raise InvalidRequest(f"Invalid value for '{prefix}size': image edits support only 1024x1024, got {size_s!r}.", param=prefix + "size")
    fmt = "url" if response_format in (None, "") else _str(response_format, prefix + "response_format")
    if fmt not in RESPONSE_FORMATS:
        raise InvalidRequest(
            f"Invalid value for '{prefix}response_format': expected url or b64_json, got {fmt!r}.", param=prefix + "response_format"
        )
    return ImageParams(spec=spec, prompt=text, n=count, size=size_s, aspect_ratio="1:1", response_format=fmt)


def video_params(
    *, model: Any, prompt: Any, seconds: Any = None, size: Any = None, resolution_name: Any = None, preset: Any = None, prefix: str = ""
) -> VideoParams:
    spec = media_model(model, capabilities=("video",), default="grok-imagine-video")
    text = _prompt(prompt, "prompt" if not prefix else "messages")
    secs = 6 if seconds in (None, "") else _int(seconds, prefix + "seconds")
    if secs not in VIDEO_SECONDS:
        raise InvalidRequest(
            f"Invalid value for '{prefix}seconds': expected one of {', '.join(map(str, VIDEO_SECONDS))}, got {secs}.",
            param=prefix + "seconds",
        )
    size_s = "1280x720" if size in (None, "") else _str(size, prefix + "size").lower()
    if size_s not in VIDEO_SIZES:
        raise InvalidRequest(
            f"Invalid value for '{prefix}size': expected one of {', '.join(VIDEO_SIZES)}, got {size_s!r}.", param=prefix + "size"
        )
    res = "720p" if resolution_name in (None, "") else _str(resolution_name, prefix + "resolution_name").lower()
    if res not in VIDEO_RESOLUTIONS:
        raise InvalidRequest(
            f"Invalid value for '{prefix}resolution_name': expected 480p or 720p, got {res!r}.", param=prefix + "resolution_name"
        )
    pre = "custom" if preset in (None, "") else _str(preset, prefix + "preset").lower()
    if pre not in VIDEO_PRESETS:
        raise InvalidRequest(
            f"Invalid value for '{prefix}preset': expected one of {', '.join(VIDEO_PRESETS)}, got {pre!r}.", param=prefix + "preset"
        )
    return VideoParams(spec=spec, prompt=text, seconds=secs, size=size_s, resolution_name=res, preset=pre)


def too_many(count: int, limit: int, param: str) -> None:
    if count > limit:
        raise InvalidRequest(f"Invalid value for '{param}': at most {limit} images, got {count}.", param=param, code="too_many_images")
