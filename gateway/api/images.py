"""OpenAI Images routes: POST /v1/images/generations (JSON) and POST /v1/images/edits (multipart).

Wire format (OpenAI Images API): request `{"model","prompt","n","size","response_format"}`;
edits as multipart/form-data with `image` / `image[]` files (or http(s) URLs as text fields),
`prompt`, `n`, `size`, `response_format`, `model`; a `mask` part is refused. Response
`{"created": <epoch s>, "data": [{"url": …} | {"b64_json": …}]}`. Errors in OpenAI's envelope,
naming the parameter. Each route: authenticate → parse → one media service call → render.
"""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from gateway.api._common import read_body, render
from gateway.auth import api_auth
from gateway.jsonbody import json_body_parse
from media.images import images_edit, images_generate
from media.forms import multipart_fields, multipart_images
from media.params import MAX_EDIT_IMAGES, image_edit_params

router = Router(tags=["images"])

DEFAULT_IMAGE_MODEL = "grok-imagine-image-lite"


@router.post("/images/generations", auth=api_auth)
async def images_generations(request: HttpRequest):
    body = json_body_parse(read_body(request))
    result = await images_generate(
        model=body.get("model") or DEFAULT_IMAGE_MODEL,
        prompt=body.get("prompt"),
        n=body.get("n"),
        size=body.get("size"),
        response_format=body.get("response_format"),
        principal=request.auth,
    )
    return render(result)


@router.post("/images/edits", auth=api_auth)
async def images_edits(request: HttpRequest):
    read_body(request)  # size guard (413) before multipart parsing
    fields = multipart_fields(request)
    has_mask = "mask" in request.FILES or "mask" in request.POST
    # Cheap field checks (mask, n, size, prompt…) come before any image is read or fetched.
    image_edit_params(model=fields.get("model") or None, prompt=fields.get("prompt"), n=fields.get("n"),
                      size=fields.get("size"), response_format=fields.get("response_format"), has_mask=has_mask)
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
