"""Who may read a file of the local media cache: the one owner rule of GET /v1/files/image and
GET /v1/files/video (gateway/api/files.py).

Above media/cache.py (the storage) and media/videos.py (whose jobs own their files), so neither of
those has to import the other's caller.
"""
from __future__ import annotations

from grokweb.errors import AuthenticationFailed, GatewayError, InvalidRequest, NotFound
from media import cache
from media.videos import video_job_content


def media_file_get(*, media_type: str, media_id: str, sig: str, principal, open_api: bool) -> cache.CachedFile:
    """The file behind `GET /v1/files/<type>?id=…&sig=…`, under one owner rule.

    - A video job's file (`video_<32 hex>`) belongs to the API key that created the job: the rule
      of `/v1/videos/{id}/content` (401 without a key, 404 for another key's job, 409 not ready).
    - Any other cached file is served to whoever holds the link the gateway handed out (a valid
      `sig`), with or without a key; without it, 401 to a caller without a key and 404 to a key,
      whichever key (the link is the only record of who received the file). With /v1 open (no key
      configured at all) there are no owners and unsigned links are served as before.
    `principal` is gateway.auth.authenticate()'s answer (None = no or a wrong key); `open_api` says
    it is the open-access principal (no key configured at all).
    """
    if not cache.media_id_valid(media_id or ""):
        raise InvalidRequest("Invalid value for 'id': expected 8-64 letters, digits, '-' or '_'.", param="id")
    if media_type == "video" and cache.VIDEO_JOB_ID_RE.fullmatch(media_id):
        if principal is None:
            raise AuthenticationFailed("This video belongs to an API key: send it as 'Authorization: Bearer <key>'.")
        try:
            return video_job_content(principal=principal, job_id=media_id)
        except GatewayError as exc:
            exc.param = "id"  # the job's parameter is called `id` on this path
            raise
    if not cache.media_link_valid(media_type=media_type, media_id=media_id, sig=sig or ""):
        if principal is None:
            raise AuthenticationFailed(
                f"This {media_type} link is incomplete: use the whole link the gateway returned (with its 'sig').",
                param="sig",
            )
        if not open_api:
            raise NotFound(f"No cached {media_type} with id '{media_id}'.", param="id")
    found = cache.media_cache_path(media_type=media_type, media_id=media_id)
    if found is None:
        raise NotFound(f"No cached {media_type} with id '{media_id}'.", param="id")
    return found
