"""OpenAI Videos routes: POST /v1/videos, GET /v1/videos/{id}, GET /v1/videos/{id}/content.

Wire format (OpenAI Videos API): create takes multipart/form-data (what the SDK sends) or JSON
with `model`, `prompt`, `seconds` (6/10/12/16/20), `size`, `resolution_name` (480p/720p),
`preset` (fun/normal/spicy/custom) and `input_reference` / `input_reference[]` (up to 7 image
files, http(s) URLs or data URIs) and answers at once with the queued job:
`{"id":"video_<32 hex>","object":"video","created_at","status":"queued","model","progress":0,
"prompt","seconds":"6","size","quality":"standard",…}`. The job object is re-read by GET; the MP4
comes from /content with Range support (206/416) or 409 `video_not_ready`. Jobs of another API
key are 404. Each route: authenticate → parse → one media service call → render.
"""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Router

from gateway.api._common import read_body, render
from gateway.auth import api_auth
from gateway.jsonbody import json_body_parse
from media import videos
from media.forms import image_inputs, multipart_fields, multipart_images
from media.params import MAX_VIDEO_REFERENCES, video_params
from media.ranges import file_response

router = Router(tags=["videos"])

REFERENCE_FIELDS = ("input_reference", "input_reference[]", "input_reference[image_url]")


def _fields(request: HttpRequest, raw: bytes) -> dict:
    if request.content_type == "application/json":
        return json_body_parse(raw)
    return multipart_fields(request)


@router.post("/videos", auth=api_auth)
async def videos_create(request: HttpRequest):
    raw = read_body(request)
    fields = _fields(request, raw)
    params = video_params(
        model=fields.get("model") or None,
        prompt=fields.get("prompt"),
        seconds=fields.get("seconds"),
        size=fields.get("size"),
        resolution_name=fields.get("resolution_name"),
        preset=fields.get("preset"),
    )
    if request.content_type == "application/json":
        refs = fields.get("input_reference") or []
        refs = refs if isinstance(refs, list) else [refs]
        texts = [r.get("image_url") if isinstance(r, dict) else r for r in refs]
        references = await image_inputs(files=[], texts=texts, param="input_reference", limit=MAX_VIDEO_REFERENCES)
    else:
        references = await multipart_images(request, names=REFERENCE_FIELDS, param="input_reference", limit=MAX_VIDEO_REFERENCES)
    job = await sync_to_async(videos.video_job_create)(principal=request.auth, params=params, references=references)
    return render(videos.video_job_render(job))


@router.get("/videos/{video_id}", auth=api_auth)
async def videos_retrieve(request: HttpRequest, video_id: str):
    job = await sync_to_async(videos.video_job_get)(principal=request.auth, job_id=video_id)
    return render(videos.video_job_render(job))


@router.get("/videos/{video_id}/content", auth=api_auth)
async def videos_content(request: HttpRequest, video_id: str):
    found = await sync_to_async(videos.video_job_content)(principal=request.auth, job_id=video_id)
    return file_response(request, found, allow_range=True)
