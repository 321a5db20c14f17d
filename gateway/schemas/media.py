"""Image and video request bodies: POST /v1/images/generations (JSON), /v1/images/edits
(multipart/form-data) and /v1/videos (JSON or multipart/form-data), checked by media/params.py.

Sizes, resolutions and presets are matched case-insensitively and integers may arrive as decimal
text (multipart fields are text), so those fields are documented with their values but checked at
run time only as JSON types; media/params.py checks the values with its own wording.
"""
from __future__ import annotations

from typing import Annotated, Any

from gateway.schemas.base import Part, RequestBody, documented
from media.params import IMAGE_SIZES, RESPONSE_FORMATS, VIDEO_PRESETS, VIDEO_RESOLUTIONS, VIDEO_SECONDS, VIDEO_SIZES
from media.params import image_edit_params, image_generation_params, video_params

IntLike = int | float | str  # an integer, an integral float, or its decimal text (media.params._int)
_FORMAT = {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "url"}


def _model(default: str) -> Any:
    return Annotated[str | None, documented({"type": "string", "default": default})]


class ImageGenerationRequest(RequestBody):
    """An OpenAI Images generation request."""

    refusal = staticmethod(lambda body: image_generation_params(
        model=body.get("model") or "grok-imagine-image-lite", prompt=body.get("prompt"), n=body.get("n"),
        size=body.get("size"), response_format=body.get("response_format")))

    prompt: Annotated[str, documented({"type": "string", "minLength": 1, "maxLength": 8000})]
    model: _model("grok-imagine-image-lite") = None
    n: Annotated[IntLike | None, documented({"type": "integer", "minimum": 1, "maximum": 10, "default": 1,
                                             "description": "at most 4 for grok-imagine-image-lite"})] = None
    size: Annotated[str | None, documented({"type": "string", "enum": list(IMAGE_SIZES), "default": "1024x1024"})] = None
    response_format: Annotated[str | None, documented(_FORMAT)] = None


class ImageEditForm(Part):
    """The text fields of an OpenAI Images edit (multipart/form-data); the images are file parts
    `image` / `image[]`, or http(s) URLs / data URIs sent as text parts of the same names."""

    # Multipart fields are text: every field is checked as text here and by value in media/params.py
    # (run by the view, so a `mask` part is refused first, as before); `prompt` is required there.
    prompt: Annotated[str | None, documented({"type": "string", "minLength": 1, "maxLength": 8000,
                                              "description": "required"})] = None
    model: _model("grok-imagine-image-edit") = None
    n: Annotated[str | None, documented({"type": "integer", "minimum": 1, "maximum": 2, "default": 1})] = None
    size: Annotated[str | None, documented({"type": "string", "enum": ["1024x1024"], "default": "1024x1024"})] = None
    response_format: Annotated[str | None, documented(_FORMAT)] = None

    @classmethod
    def request_body(cls) -> dict:
        """The multipart body for /v1/openapi.json (`openapi_extra`): these fields plus the files."""
        schema = cls.model_json_schema()
        files = {"type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": 5}
        schema["properties"] |= {"image": files, "image[]": files}
        schema["required"] = ["prompt", "image"]
        return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}

    @staticmethod
    def refusal(fields: dict, *, has_mask: bool) -> None:
        image_edit_params(model=fields.get("model") or None, prompt=fields.get("prompt"), n=fields.get("n"),
                          size=fields.get("size"), response_format=fields.get("response_format"), has_mask=has_mask)


class VideoCreateRequest(RequestBody):
    """An OpenAI Videos create request (JSON; multipart/form-data carries the same fields as text
    and the reference images as file parts)."""

    refusal = staticmethod(lambda body: video_params(
        model=body.get("model") or None, prompt=body.get("prompt"), seconds=body.get("seconds"),
        size=body.get("size"), resolution_name=body.get("resolution_name"), preset=body.get("preset")))

    prompt: Annotated[str, documented({"type": "string", "minLength": 1, "maxLength": 8000})]
    model: _model("grok-imagine-video") = None
    seconds: Annotated[IntLike | None, documented({"type": "string", "enum": [str(s) for s in VIDEO_SECONDS],
                                                   "default": "6", "description": "an integer or its text"})] = None
    size: Annotated[str | None, documented({"type": "string", "enum": list(VIDEO_SIZES), "default": "1280x720"})] = None
    resolution_name: Annotated[str | None, documented({"type": "string", "enum": list(VIDEO_RESOLUTIONS),
                                                       "default": "720p"})] = None
    preset: Annotated[str | None, documented({"type": "string", "enum": list(VIDEO_PRESETS), "default": "custom"})] = None
    input_reference: Annotated[Any, documented({
        "description": "up to 7 reference images: http(s) URLs or data URIs, or {image_url} objects",
        "anyOf": [{"type": "string"}, {"type": "object", "properties": {"image_url": {"type": "string"}}},
                  {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object"}]}}]})] = None
