"""Serving cached files with HTTP Range support (RFC 9110 §14): one `bytes=` range per request.

`Range: bytes=a-b`, `bytes=a-` and `bytes=-n` answer 206 with `Content-Range: bytes a-b/size`;
a range starting past the end answers 416 with `Content-Range: bytes */size`; a malformed or
multi-range header is ignored (200, whole body), which RFC 9110 allows.
"""
from __future__ import annotations

import re

from django.http import HttpResponse, StreamingHttpResponse

from media.cache import CachedFile

CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """(start, end inclusive), None (serve everything) or "unsatisfiable"."""
    header = (header or "").strip()
    if not header or "," in header:
        return None
    match = _RANGE.match(header)
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix range: the last n bytes
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return (max(0, size - n), size - 1) if size else "unsatisfiable"
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return start, min(end, size - 1)


async def _read_span(path, start: int, length: int):
    # Local disk reads of CHUNK bytes are short; reading inline keeps one code path for WSGI and ASGI.
    with open(path, "rb") as fh:
        fh.seek(start)
        left = length
        while left > 0:
            data = fh.read(min(CHUNK, left))
            if not data:
                break
            left -= len(data)
            yield data


def file_response(request, cached: CachedFile, *, allow_range: bool) -> HttpResponse:
    size = cached.size
    span = parse_range(request.headers.get("Range", ""), size) if allow_range else None
    if span == "unsatisfiable":
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        response["Accept-Ranges"] = "bytes"
        return response
    start, end = span if isinstance(span, tuple) else (0, size - 1)
    length = max(0, end - start + 1)
    response = StreamingHttpResponse(_read_span(cached.path, start, length), content_type=cached.content_type)
    response["Content-Length"] = str(length)
    response["Cache-Control"] = "public, max-age=86400"
    response["X-Content-Type-Options"] = "nosniff"
    if allow_range:
        response["Accept-Ranges"] = "bytes"
    if isinstance(span, tuple):
        response.status_code = 206
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response
