"""GET /v1/files/image?id=<id>&sig=<sig> and GET /v1/files/video?id=<id>&sig=<sig>: the local media cache.

Who may read a file is media.files.media_file_get's one owner rule: a video job's file needs the
key that created the job (as /v1/videos/{id}/content does); any other file needs the signed link
the gateway handed out (`sig`, an HMAC under SECRET_KEY), because those links end up in chat
answers that browsers load without headers. The id is validated strictly (media.cache.MEDIA_ID_RE);
video answers honour Range (media/ranges.py). Errors are in OpenAI's envelope.
"""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from gateway.auth import OPEN, authenticate
from gateway.schemas.answers import OpenAIError
from media.files import media_file_get
from media.ranges import file_response

router = Router(tags=["files"])

_BINARY = {"schema": {"type": "string", "format": "binary"}}
# Documented for /v1/openapi.json (gateway/schemas/answers.py): the file, or OpenAI's error envelope.
_ANSWERS = {"response": {200: None, (400, 403, 404, 416, 500): OpenAIError},
            "openapi_extra": {"responses": {200: {"content": {"image/*": _BINARY, "video/mp4": _BINARY}},
                                            206: {"description": "Partial Content (Range)", "content": {"video/mp4": _BINARY}}}}}


def _serve(request: HttpRequest, media_type: str, media_id: str, sig: str):
    principal = authenticate(request)
    found = media_file_get(media_type=media_type, media_id=media_id, sig=sig, principal=principal,
                           open_api=principal is OPEN)
    return file_response(request, found, allow_range=(media_type == "video"))


@router.get("/files/image", auth=None, include_in_schema=True, **_ANSWERS)
def file_image(request: HttpRequest, id: str = "", sig: str = ""):
    return _serve(request, "image", id, sig)


@router.get("/files/video", auth=None, include_in_schema=True, **_ANSWERS)
def file_video(request: HttpRequest, id: str = "", sig: str = ""):
    return _serve(request, "video", id, sig)
