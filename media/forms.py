"""Multipart parsing for the media endpoints (images/edits, videos): text fields and image inputs.

An image input is a file part (`image`, `image[]`, `input_reference`, `input_reference[]`) or a
text part holding an http(s) URL (fetched credential-free and SSRF-guarded by
grokweb.transport.fetch_untrusted) or a `data:image/...;base64,` URI. Every input is
checked by media.params.image_input (magic bytes) before anything goes upstream; all three ways are
held to the one attachment cap of media/attachments.py (MAX_ATTACHMENT_MB).
"""
from __future__ import annotations

from django.http import HttpRequest

from media.attachments import attachment_base64_decode, attachment_fetch, attachment_size_check
from grokweb.errors import InvalidRequest
from media.params import ImageInput, image_input


def multipart_fields(request: HttpRequest) -> dict[str, str]:
    """First value of every text field (an unparsable body becomes a 400, not a 500)."""
    try:
        post = request.POST
    except Exception as exc:  # MultiPartParserError and friends
        raise InvalidRequest(f"The request body is not valid multipart/form-data ({exc}).", param=None, code="invalid_body") from None
    return {key: post.get(key, "") for key in post.keys()}


def _data_uri(value: str, param: str) -> bytes:
    head, _, payload = value.partition(",")
    if ";base64" not in head:
        raise InvalidRequest(f"Invalid value for '{param}': data URIs must be base64-encoded.", param=param)
    return attachment_base64_decode(text=payload, param=param)


async def multipart_images(request: HttpRequest, *, names: tuple[str, ...], param: str, limit: int | None = None) -> list[ImageInput]:
    """Image inputs from the multipart fields `names`: file parts first, then text parts."""
    files = [f for name in names for f in request.FILES.getlist(name)]
    texts = [v for name in names for v in request.POST.getlist(name) if v.strip()]
    return await image_inputs(files=files, texts=texts, param=param, limit=limit)


async def image_inputs(*, files: list, texts: list[str], param: str, limit: int | None = None) -> list[ImageInput]:
    """Validate uploaded files and fetch/decode URL or data-URI values; the count is checked first."""
    from media.params import too_many

    if limit is not None:
        too_many(len(files) + len(texts), limit, param)
    out: list[ImageInput] = []
    for i, upload in enumerate(files):
        attachment_size_check(size=upload.size, param=param)  # before the part is read
        out.append(image_input(upload.read(), name=upload.name or f"image{i + 1}", param=param))
    for value in texts:
        if not isinstance(value, str):
            raise InvalidRequest(f"Invalid value for '{param}': expected image URLs or data URIs.", param=param)
        value = value.strip()
        if value.startswith("data:"):
            out.append(image_input(_data_uri(value, param), name=f"image{len(out) + 1}", param=param))
        elif value.lower().startswith(("http://", "https://")):
            got = await attachment_fetch(url=value, param=param, accept=("image/",))
            out.append(image_input(got.data, name=f"image{len(out) + 1}", param=param))
        else:
            raise InvalidRequest(
                f"Invalid value for '{param}': expected an image file, an http(s) URL or a data: URI.", param=param
            )
    return out
