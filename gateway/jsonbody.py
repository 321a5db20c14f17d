"""Request bodies: JSON text from a client, parsed once, with errors in the gateway's hierarchy.

Every JSON endpoint (the /v1 families, images, videos, the web pages' API) parses through here,
so an invalid body is the same 400 `invalid_json` everywhere, rendered in the caller's envelope.

Nesting is bounded here too (MAX_JSON_DEPTH levels of objects/arrays, the body itself being
level 1): orjson reads up to 1024 levels but writes at most 255, and the translators re-serialise
tool schemas and arguments, so a deeper body would fail later as a 500. A body past the bound is a
400 `json_too_deep` naming the field it sits under. JSON that arrives inside a string (OpenAI
tool-call `arguments`) is checked with the same `json_depth_check` where it is parsed.
"""
from __future__ import annotations

from typing import Any

import orjson

from grokweb.errors import InvalidRequest

_REQUIRED = object()

MAX_JSON_DEPTH = 64
# The field named in the error: the first few keys/indexes of the path to the too-deep value
# (`tools[0].function.parameters`), not the 60-odd segments of the whole path.
_NAMED_SEGMENTS = 4


def _too_deep(value: Any, budget: int) -> list | None:
    """Reversed path to a container nested more than `budget` levels below `value`, else None.

    Recursion is bounded by `budget` (≤ MAX_JSON_DEPTH + 1 frames), so it cannot exhaust the stack.
    """
    if isinstance(value, dict):
        children = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return None
    if budget <= 0:
        return []
    for key, child in children:
        if isinstance(child, (dict, list)):
            found = _too_deep(child, budget - 1)
            if found is not None:
                found.append(key)
                return found
    return None


def json_path(segments: list) -> str:
    """`["tools", 0, "function"]` → `tools[0].function`."""
    out = ""
    for seg in segments:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += f".{seg}" if out else str(seg)
    return out


def json_too_deep(value: Any, *, limit: int = MAX_JSON_DEPTH) -> bool:
    return _too_deep(value, limit - 1) is not None


def json_depth_check(value: Any, *, param: str | None = None, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise InvalidRequest when `value` nests objects/arrays more than `limit` levels deep.

    `param` is where `value` sits in the request (a field holding JSON text); for the body itself
    (None) the error names the first keys of the path that goes too deep.
    """
    found = _too_deep(value, limit - 1)
    if found is None:
        return
    found.reverse()
    named = param or json_path(found[:_NAMED_SEGMENTS]) or None
    raise InvalidRequest(
        f"Invalid value for '{named}': JSON is nested too deeply; requests may nest objects and arrays "
        f"at most {limit} levels deep.",
        param=named,
        code="json_too_deep",
    )


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
    # Depth cannot exceed the number of opening brackets: most bodies skip the walk.
    opener = ("[", "{") if isinstance(raw, str) else (b"[", b"{")
    if raw.count(opener[0]) + raw.count(opener[1]) > MAX_JSON_DEPTH:
        json_depth_check(body)
    if require_object and not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", param=None, code="invalid_json")
    return body
