"""GET /v1/files/image?id=<id> and GET /v1/files/video?id=<id>: the local media cache, no auth.

No auth because the links are handed to chat clients and browsers that cannot add headers (as in
the reference). The id is validated strictly (media.cache.MEDIA_ID_RE): an invalid id is a 400,
an unknown one a 404; video answers honour Range (media/ranges.py).
"""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from gateway.errors import InvalidRequest, NotFound
from media.cache import media_cache_path, media_id_valid
from media.ranges import file_response

router = Router(tags=["files"])


def _serve(request: HttpRequest, media_type: str, media_id: str):
    if not media_id_valid(media_id or ""):
        raise InvalidRequest("Invalid value for 'id': expected 8-64 letters, digits, '-' or '_'.", param="id")
    found = media_cache_path(media_type=media_type, media_id=media_id)
    if found is None:
        raise NotFound(f"No cached {media_type} with id '{media_id}'.", param="id")
    return file_response(request, found, allow_range=(media_type == "video"))


@router.get("/files/image", auth=None, include_in_schema=True)
def file_image(request: HttpRequest, id: str = ""):
    return _serve(request, "image", id)


@router.get("/files/video", auth=None, include_in_schema=True)
def file_video(request: HttpRequest, id: str = ""):
    return _serve(request, "video", id)
