"""OpenAI Videos routes: POST /v1/videos, GET /v1/videos/{id}, GET /v1/videos/{id}/content.

Wire format (OpenAI Videos API): create takes multipart/form-data (what the SDK sends) or JSON
with `model`, `prompt`, `seconds` (6/10/12/16/20), `size`, `resolution_name` (480p/720p),
`preset` (fun/normal/spicy/custom) and `input_reference` / `input_reference[]` (up to 7 image
files, http(s) URLs or data URIs) and answers at once with the queued job:
`{"id":"video_<32 hex>","object":"video","created_at","status":"queued","model","progress":0,
"prompt","seconds":"6","size","quality":"standard",…}`. The job object is re-read by GET; the MP4
comes from /content with Range support (206/416) or 409 `video_not_ready`. Jobs of another API
key are 404. Each route: authenticate → parse (gateway/schemas/media.py) → one media service call → render.
"""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Router

from gateway.api._common import API_KEY, render
from gateway.schemas.answers import VideoJob, responses_for
from gateway.schemas.media import VideoCreateRequest
from media import videos
from media.forms import image_inputs, multipart_images
from media.params import MAX_VIDEO_REFERENCES, video_params
from media.ranges import file_response

router = Router(tags=["videos"])

REFERENCE_FIELDS = ("input_reference", "input_reference[]", "input_reference[image_url]")

# The same fields as multipart/form-data (what the SDK sends), with the reference images as files.
_MULTIPART = {"requestBody": {"content": {"multipart/form-data": {"schema": {
    "allOf": [{"$ref": "#/components/schemas/VideoCreateRequest"}],
    "properties": {"input_reference": {"type": "array", "items": {"type": "string", "format": "binary"}}},
}}}}}


@router.post("/videos", auth=API_KEY, response=responses_for("openai", VideoJob), openapi_extra=_MULTIPART)
async def videos_create(request: HttpRequest, body: VideoCreateRequest):
    params = video_params(
        model=body.model or None,
        prompt=body.prompt,
        seconds=body.seconds,
        size=body.size,
        resolution_name=body.resolution_name,
        preset=body.preset,
    )
    if request.content_type == "application/json":
        refs = body.input_reference or []
        refs = refs if isinstance(refs, list) else [refs]
        texts = [r.get("image_url") if isinstance(r, dict) else r for r in refs]
        references = await image_inputs(files=[], texts=texts, param="input_reference", limit=MAX_VIDEO_REFERENCES)
    else:
        references = await multipart_images(request, names=REFERENCE_FIELDS, param="input_reference", limit=MAX_VIDEO_REFERENCES)
    job = await sync_to_async(videos.video_job_create)(principal=request.auth, params=params, references=references)
    return render(videos.video_job_render(job))


@router.get("/videos/{video_id}", auth=API_KEY, response=responses_for("openai", VideoJob))
async def videos_retrieve(request: HttpRequest, video_id: str):
    job = await sync_to_async(videos.video_job_get)(principal=request.auth, job_id=video_id)
    return render(videos.video_job_render(job))


@router.get("/videos/{video_id}/content", auth=API_KEY, response=responses_for("openai", None, statuses=(401, 403, 404, 409, 416, 429, 500)),
            openapi_extra={"responses": {200: {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}},
                                         206: {"description": "Partial Content (Range)",
                                               "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}}}})
async def videos_content(request: HttpRequest, video_id: str):
    found = await sync_to_async(videos.video_job_content)(principal=request.auth, job_id=video_id)
    return file_response(request, found, allow_range=True)
