"""One size cap for every file a client hands the gateway, whichever way it arrives.

An attachment is an image, document or audio clip given inline (`data:…;base64,` URIs and base64
`data` fields of the three chat families, data URIs in media form fields), as an http(s) URL the
gateway fetches, or as a multipart file part (image edits, video references). All of them are held
to `attachment_max_bytes()` — the `MAX_ATTACHMENT_MB` deployment variable (default 20), installed
by MediaConfig.ready() — and refused the same way: 400 `file_too_large` naming the parameter,
in the caller's envelope. Inline base64 is refused from its length before anything is decoded
when that length already proves the decoded bytes too big.

Importing this module pulls in neither Django nor an HTTP client (the translators use it);
`attachment_fetch` imports the SSRF-guarded fetcher when it is first called.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from grokweb.errors import GatewayError, InvalidRequest

DEFAULT_ATTACHMENT_MAX_BYTES = 20 * 1024 * 1024
_max_bytes = DEFAULT_ATTACHMENT_MAX_BYTES


def attachment_max_bytes() -> int:
    return _max_bytes


def attachment_max_bytes_set(*, max_bytes: int) -> None:
    """Install the deployment's cap (MediaConfig.ready(), from settings.MAX_ATTACHMENT_BYTES)."""
    global _max_bytes
    _max_bytes = int(max_bytes)


def attachment_too_large(*, param: str | None, size: str) -> InvalidRequest:
    limit = attachment_max_bytes()
    where = f"Invalid value for '{param}': " if param else ""
    return InvalidRequest(
        f"{where}the file is {size} bytes, the limit is {limit} bytes ({limit / 1048576:g} MB, MAX_ATTACHMENT_MB).",
        param=param,
        code="file_too_large",
    )


def attachment_size_check(*, size: int, param: str | None) -> None:
    if size > attachment_max_bytes():
        raise attachment_too_large(param=param, size=str(size))


def attachment_base64_decode(*, text: str, param: str | None) -> bytes:
    """Strict base64 (whitespace ignored) → bytes, held to the cap before and after decoding."""
    compact = "".join(text.split())
    # 4 characters carry 3 bytes, less at most 2 of padding: the smallest size this text can decode to.
    at_least = len(compact) // 4 * 3 - 2
    if at_least > attachment_max_bytes():
        raise attachment_too_large(param=param, size=f"at least {at_least}")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"Invalid base64 data in '{param}'.", param=param) from None
    attachment_size_check(size=len(data), param=param)
    return data


async def attachment_fetch(*, url: str, param: str | None, accept: tuple[str, ...]) -> Any:
    """Fetch a client-supplied URL (credential-free, SSRF-guarded) under the cap; errors name `param`."""
    from grokweb.transport import fetch_untrusted

    try:
        return await fetch_untrusted(url, max_bytes=attachment_max_bytes(), accept=accept)
    except GatewayError as exc:
        if exc.code == "too_large":
            raise attachment_too_large(param=param, size=f"more than {attachment_max_bytes()}") from None
        if param:
            exc.param = exc.param or param
            if f"'{param}'" not in exc.message:  # Anthropic's envelope has no `param`: the message names it
                exc.message = f"Invalid value for '{param}': {exc.message}"
                exc.args = (exc.message,)
        raise
