"""OpenAI Images routes: POST /v1/images/generations (JSON) and POST /v1/images/edits (multipart).

Wire format (OpenAI Images API): request `{"model","prompt","n","size","response_format"}`;
edits as multipart/form-data with `image` / `image[]` files (or http(s) URLs as text fields),
`prompt`, `n`, `size`, `response_format`, `model`; a `mask` part is refused. Response
`{"created": <epoch s>, "data": [{"url": …} | {"b64_json": …}]}`. Errors in OpenAI's envelope,
naming the parameter. Each route: authenticate → parse (gateway/schemas/media.py) → one media
service call → render.
"""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from gateway.api._common import API_KEY, read_body, render
from gateway.schemas.answers import ImagesResponse, responses_for
from gateway.schemas.media import ImageEditForm, ImageGenerationRequest
from media.images import images_edit, images_generate
from media.forms import multipart_fields, multipart_images
from media.params import MAX_EDIT_IMAGES

router = Router(tags=["images"])

DEFAULT_IMAGE_MODEL = "grok-imagine-image-lite"


@router.post("/images/generations", auth=API_KEY, response=responses_for("openai", ImagesResponse))
async def images_generations(request: HttpRequest, body: ImageGenerationRequest):
    result = await images_generate(
        model=body.model or DEFAULT_IMAGE_MODEL,
        prompt=body.prompt,
        n=body.n,
        size=body.size,
        response_format=body.response_format,
        principal=request.auth,
    )
    return render(result)


@router.post("/images/edits", auth=API_KEY, response=responses_for("openai", ImagesResponse),
             openapi_extra=ImageEditForm.request_body())
async def images_edits(request: HttpRequest):
    # Documented, not bound as a Ninja Form: the size guard (413) must come before multipart parsing,
    # and Ninja would parse the form first.
    read_body(request)
    fields = multipart_fields(request)
    has_mask = "mask" in request.FILES or "mask" in request.POST
    # Cheap field checks (mask, n, size, prompt…) come before any image is read or fetched.
    ImageEditForm.refusal(fields, has_mask=has_mask)
    images = await multipart_images(request, names=("image", "image[]"), param="image", limit=MAX_EDIT_IMAGES)
    result = await images_edit(
        model=fields.get("model") or None,
        prompt=fields.get("prompt"),
        images=images,
        n=fields.get("n"),
        size=fields.get("size"),
        response_format=fields.get("response_format"),
        has_mask=has_mask,
        principal=request.auth,
    )
    return render(result)
