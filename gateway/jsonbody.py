"""Request bodies: JSON text from a client, parsed once, with errors in the gateway's hierarchy.

Every JSON endpoint (the /v1 families, images, videos, the web pages' API) parses through here,
so an invalid body is the same 400 `invalid_json` everywhere, rendered in the caller's envelope.
"""
from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import InvalidRequest

_REQUIRED = object()


def json_body_parse(raw: bytes, *, require_object: bool = True, empty: Any = _REQUIRED) -> Any:
    """Parse `raw`. An empty body returns `empty` when given, else is an error.

    With require_object the top level must be a JSON object; without it the caller's own
    validation names what is wrong (the chat families report the body's type themselves).
    """
    if not raw or not raw.strip():
        if empty is not _REQUIRED:
            return empty
        raise InvalidRequest("The request body is empty; expected a JSON object.", param=None, code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = exc.args[0] if exc.args else "invalid JSON"
        raise InvalidRequest(f"We could not parse the JSON body of your request ({reason}).", param=None, code="invalid_json") from None
    if require_object and not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", param=None, code="invalid_json")
    return body
