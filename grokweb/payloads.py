"""Request bodies for grok.com (protocol docs/upstream-protocol.md §4.1, §6.2–§6.4, §7.2, §8, §10), as pure functions.

No I/O and no configuration reads: callers pass every variable part (GrokClient fills them from
the runtime config). Every dict returned here is serialised as-is to JSON and sent upstream.

Wire shapes:
- chat (E1, `POST /rest/app-chat/conversations/new`): the reference body of §4.1, where only
  `message`, `modeId`, `fileAttachments`, `temporary`, `disableMemory` and the optional
  `customPersonality` vary;
- image edit (E1 with `modelName: imagine-image-edit`): the legacy `modelConfigOverride` form (§6.3);
- video (E1 with `modelName: imagine-video-gen`): first segment and extension segments (§7.2);
- Imagine WebSocket frames (E11): `reset` + `input_text` per round, `enable_nsfw` fixed to false (§13);
- LiveKit token request (E12): `sessionPayload` is a JSON *string* (§10).
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from grokweb.errors import InvalidRequest

CHAT_MODES = ("auto", "fast", "expert", "heavy", "grok-420-computer-use-sa")

# §6.4: OpenAI-style image size → Imagine aspect ratio. Unknown sizes fall back to 2:3 (reference).
IMAGE_SIZE_TO_ASPECT = {
    "1280x720": "16:9",
    "720x1280": "9:16",
    "1792x1024": "3:2",
    "1024x1792": "2:3",
    "1024x1024": "1:1",
    # accepted by the reference rewrite [G]
    "1536x1024": "3:2",
    "1024x1536": "2:3",
}
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "3:2", "2:3", "4:3", "3:4", "2:1", "1:2", "19.5:9", "9:19.5", "20:9", "9:20")

# §7.2: video size → aspect ratio; resolution defaults to 720p.
VIDEO_SIZE_TO_ASPECT = {
    "720x1280": "9:16",
    "1280x720": "16:9",
    "1024x1024": "1:1",
    "1024x1792": "9:16",
    "1792x1024": "16:9",
}
VIDEO_RESOLUTIONS = ("480p", "720p")
VIDEO_PRESET_MODE = {
    "fun": "extremely-crazy",
    "normal": "normal",
    "spicy": "extremely-spicy-or-crazy",
    "custom": "custom",
}
# Client lengths → upstream segments (6 and 10 s are single segments; longer ones are extensions).
VIDEO_SEGMENTS = {6: (6,), 10: (10,), 12: (6, 6), 16: (10, 6), 20: (10, 10)}

# The fixed desktop description the reference sends (§4.1).
DEVICE_ENV_INFO = {
    "darkModeEnabled": False,
    "devicePixelRatio": 2,
    "screenHeight": 1329,
    "screenWidth": 2056,
    "viewportHeight": 1083,
    "viewportWidth": 2056,
}
TOOL_OVERRIDES = {
    "gmailSearch": False,
    "googleCalendarSearch": False,
    "outlookSearch": False,
    "outlookCalendarSearch": False,
    "googleDriveSearch": False,
}


def chat_payload(
    *,
    message: str,
    mode: str,
    file_ids: Sequence[str] = (),
    temporary: bool = True,
    memory: bool = False,
    custom_personality: str = "",
    image_generation_count: int = 2,
) -> dict[str, Any]:
    """The E1 chat body of docs/upstream-protocol.md §4.1 (keys in the reference's order)."""
    if mode not in CHAT_MODES:
        raise InvalidRequest(f"Unknown upstream mode {mode!r}.", param="model")
    body: dict[str, Any] = {
        "collectionIds": [],
        "connectors": [],
        "deviceEnvInfo": dict(DEVICE_ENV_INFO),
        "disableMemory": not memory,
        "disableSearch": False,
        "disableSelfHarmShortCircuit": False,
        "disableTextFollowUps": False,
        "enableImageGeneration": True,
        "enableImageStreaming": True,
        "enableSideBySide": True,
        "fileAttachments": list(file_ids),
        "forceConcise": False,
        "forceSideBySide": False,
        "imageAttachments": [],
        "imageGenerationCount": image_generation_count,
        "isAsyncChat": False,
        "message": message,
        "modeId": mode,
        "responseMetadata": {},
        "returnImageBytes": False,
        "returnRawGrokInXaiRequest": False,
        "searchAllConnectors": False,
        "sendFinalMetadata": True,
        "temporary": temporary,
        "toolOverrides": dict(TOOL_OVERRIDES),
    }
    if custom_personality:
        body["customPersonality"] = custom_personality
    return body


def image_edit_payload(
    *,
    prompt: str,
    image_references: Sequence[str],
    parent_post_id: str,
    temporary: bool = True,
    image_generation_count: int = 2,
) -> dict[str, Any]:
    """The legacy image-edit body of docs/upstream-protocol.md §6.3 step 4 (Referer `/imagine/post/<parent_post_id>`)."""
    if not image_references:
        raise InvalidRequest("At least one reference image is required.", param="image")
    return {
        "temporary": temporary,
        "modelName": "imagine-image-edit",
        "message": prompt,
        "enableImageGeneration": True,
        "returnImageBytes": False,
        "returnRawGrokInXaiRequest": False,
        "enableImageStreaming": True,
        "imageGenerationCount": image_generation_count,
        "forceConcise": False,
        "enableSideBySide": True,
        "sendFinalMetadata": True,
        "isReasoning": False,
        "disableTextFollowUps": True,
        "responseMetadata": {
            "modelConfigOverride": {
                "modelMap": {
                    "imageEditModel": "imagine",
                    "imageEditModelConfig": {
                        "imageReferences": list(image_references),
                        "parentPostId": parent_post_id,
                    },
                }
            }
        },
        "disableMemory": True,
        "forceSideBySide": False,
    }


def size_to_aspect_ratio(size: str | None) -> str:
    """Image size → aspect ratio (§6.4). Ratio strings pass through; anything else → 2:3.

    No size (or `auto`) means the OpenAI default 1024x1024, i.e. 1:1.
    """
    size = (size or "").strip().lower()
    if size in ("", "auto"):
        return "1:1"
    if size in IMAGE_SIZE_TO_ASPECT:
        return IMAGE_SIZE_TO_ASPECT[size]
    if size in ASPECT_RATIOS:
        return size
    return "2:3"


def video_segments(seconds: int) -> tuple[int, ...]:
    """Client video length → upstream segment lengths: 12 = 6+6, 16 = 10+6, 20 = 10+10 (§7.2)."""
    try:
        return VIDEO_SEGMENTS[int(seconds)]
    except (KeyError, TypeError, ValueError):
        raise InvalidRequest(
            f"seconds must be one of {', '.join(str(s) for s in VIDEO_SEGMENTS)}, got {seconds!r}.", param="seconds"
        ) from None


def video_aspect_ratio(size: str | None) -> str:
    if not size:
        return "16:9"
    ratio = VIDEO_SIZE_TO_ASPECT.get(size.strip().lower())
    if ratio is None:
        raise InvalidRequest(f"size must be one of {', '.join(VIDEO_SIZE_TO_ASPECT)}, got {size!r}.", param="size")
    return ratio


def _video_common(preset: str, resolution: str) -> str:
    if preset not in VIDEO_PRESET_MODE:
        raise InvalidRequest(f"preset must be one of {', '.join(VIDEO_PRESET_MODE)}, got {preset!r}.", param="preset")
    if resolution not in VIDEO_RESOLUTIONS:
        raise InvalidRequest(
            f"resolution_name must be one of {', '.join(VIDEO_RESOLUTIONS)}, got {resolution!r}.", param="resolution_name"
        )
    return VIDEO_PRESET_MODE[preset]


def video_message(prompt: str, preset: str) -> str:
    """`<prompt> --mode=<preset mode>` (the preset rides on the message, §7.2)."""
    return f"{prompt} --mode={VIDEO_PRESET_MODE[preset]}"


def video_payload(
    *,
    prompt: str,
    parent_post_id: str,
    size: str = "1280x720",
    video_length: int = 6,
    resolution: str = "720p",
    preset: str = "custom",
    image_references: Sequence[str] = (),
    temporary: bool = True,
) -> dict[str, Any]:
    """First (or only) video segment (§7.2). `image_references` switches to image-to-video."""
    _video_common(preset, resolution)
    if video_length not in (6, 10):
        raise InvalidRequest(f"A video segment is 6 or 10 seconds, got {video_length!r}.", param="seconds")
    config: dict[str, Any] = {
        "parentPostId": parent_post_id,
        "aspectRatio": video_aspect_ratio(size),
        "videoLength": video_length,
        "resolutionName": resolution,
    }
    if image_references:
        config["isVideoEdit"] = False
        config["isReferenceToVideo"] = True
        config["imageReferences"] = list(image_references)
    return {
        "temporary": temporary,
        "modelName": "imagine-video-gen",
        "message": video_message(prompt, preset),
        "enableSideBySide": True,
        "responseMetadata": {
            "experiments": [],
            "modelConfigOverride": {"modelMap": {"videoGenModelConfig": config}},
        },
    }


def video_extension_payload(
    *,
    prompt: str,
    parent_post_id: str,
    extend_post_id: str,
    elapsed_seconds: float,
    video_length: int,
    size: str = "1280x720",
    resolution: str = "720p",
    preset: str = "custom",
    temporary: bool = True,
) -> dict[str, Any]:
    """An extension segment (§7.2), Referer `/imagine/post/<parent_post_id>`.

    `elapsed_seconds` is the length already produced; the upstream starts the extension one
    frame (1/24 s) later. `extend_post_id` is the previous segment's `videoPostId || videoId`.
    """
    _video_common(preset, resolution)
    if video_length not in (6, 10):
        raise InvalidRequest(f"A video segment is 6 or 10 seconds, got {video_length!r}.", param="seconds")
    config = {
        "isVideoExtension": True,
        "videoExtensionStartTime": elapsed_seconds + 1 / 24,
        "extendPostId": extend_post_id,
        "stitchWithExtendPostId": True,
        "originalPrompt": prompt,
        "originalPostId": parent_post_id,
        "originalRefType": "ORIGINAL_REF_TYPE_VIDEO_EXTENSION",
        "mode": preset,
        "aspectRatio": video_aspect_ratio(size),
        "videoLength": video_length,
        "resolutionName": resolution,
        "parentPostId": parent_post_id,
        "isVideoEdit": False,
    }
    return {
        "temporary": temporary,
        "modelName": "imagine-video-gen",
        "message": video_message(prompt, preset),
        "enableSideBySide": True,
        "responseMetadata": {
            "experiments": [],
            "modelConfigOverride": {"modelMap": {"videoGenModelConfig": config}},
        },
    }


def media_post_payload(*, media_type: str, prompt: str | None = None, media_url: str | None = None) -> dict[str, Any]:
    """E10 body. `media_type` is `video` / `image` or the upstream enum name."""
    kinds = {"video": "MEDIA_POST_TYPE_VIDEO", "image": "MEDIA_POST_TYPE_IMAGE"}
    wire = kinds.get(media_type.lower(), media_type)
    if wire not in kinds.values():
        raise InvalidRequest(f"Unknown media post type {media_type!r}.", param="media_type")
    body: dict[str, Any] = {"mediaType": wire}
    if prompt is not None:
        body["prompt"] = prompt
    if media_url is not None:
        body["mediaUrl"] = media_url
    return body


def imagine_frames(
    *,
    prompt: str,
    aspect_ratio: str,
    pro: bool,
    n: int | None = None,
    request_id: str | None = None,
    now_ms: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two client frames of one Imagine round (§6.2): reset, then input_text.

    `enable_nsfw` is always false (policy, §13). `num_generations` (the rewrite's addition) asks
    for the number of images still missing; the server may produce a different count.
    """
    ts = int(time.time() * 1000) if now_ms is None else now_ms
    reset = {
        "type": "conversation.item.create",
        "timestamp": ts,
        "item": {"type": "message", "content": [{"type": "reset"}]},
    }
    properties: dict[str, Any] = {
        "section_count": 0,
        "is_kids_mode": False,
        "enable_nsfw": False,
        "skip_upsampler": False,
        "enable_side_by_side": True,
        "is_initial": False,
        "aspect_ratio": aspect_ratio,
        "enable_pro": bool(pro),
    }
    if n is not None:
        properties["num_generations"] = n
    text = {
        "type": "conversation.item.create",
        "timestamp": ts + 1,
        "item": {
            "type": "message",
            "content": [
                {
                    "requestId": request_id or str(uuid.uuid4()),
                    "text": prompt,
                    "type": "input_text",
                    "properties": properties,
                }
            ],
        },
    }
    return reset, text


def livekit_payload(
    *,
    livekit_url: str,
    voice: str = "ara",
    personality: str = "assistant",
    speed: float = 1.0,
    instruction: str = "",
) -> dict[str, Any]:
    """E12 body (§10): `sessionPayload` is a JSON string; custom instructions replace the personality."""
    session: dict[str, Any] = {"voice": voice}
    if instruction:
        session["personality"] = None
        session["instructions"] = instruction
        session["is_raw_instructions"] = True
    else:
        session["personality"] = personality
    session["playback_speed"] = float(speed)
    session["enable_vision"] = False
    session["turn_detection"] = {"type": "server_vad"}
    return {
        "sessionPayload": json.dumps(session, separators=(",", ":")),
        "requestAgentDispatch": False,
        "livekitUrl": livekit_url,
        "params": {"enable_markdown_transcript": "true"},
    }
