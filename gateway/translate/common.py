"""The neutral request model shared by the three client protocols, and history flattening.

Wire output of this module: the single upstream `message` string of docs/upstream-protocol.md §4.3 —
`[<role>]: <text>` blocks joined by a blank line, tool results as
`[tool result for <id>]:\\n<content>`, earlier assistant tool calls re-serialised as the
`<tool_calls>` XML of docs/upstream-protocol.md §5.1, and (when tools are declared) the tool prompt prepended as a
leading `[system]: …` block.

Pure: no Django, no httpx. Parsers in openai_chat.py / responses.py / anthropic.py build a
ChatRequest; the service flattens it, uploads `req.attachments` and sends the message upstream.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from media.attachments import attachment_base64_decode
from grokweb.errors import InvalidRequest

if TYPE_CHECKING:
    from gateway.translate.structured import OutputFormat

IdFactory = Callable[[str, int], str]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
REASONING_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
SOURCES_MARKER = "[grok2api-sources]: #"


def new_id(prefix: str, nhex: int = 8) -> str:
    """`<prefix><epoch-ms><nhex hex digits>` — the id shape of docs/upstream-protocol.md §12.6 (chatcmpl-, resp_, call_, …)."""
    return f"{prefix}{int(time.time() * 1000)}{os.urandom((nhex + 1) // 2).hex()[:nhex]}"


# --------------------------------------------------------------------------- request model


@dataclass(slots=True)
class Attachment:
    kind: str  # "image" | "file" | "audio"
    mime: str
    name: str
    data: bytes | None = None
    url: str | None = None
    param: str = ""  # the client field it came from, for error messages when fetching fails


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # compact JSON text

    def as_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(slots=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolChoice:
    mode: str = "auto"  # "auto" | "none" | "required" | "function"
    name: str | None = None


@dataclass(slots=True)
class Turn:
    role: str
    parts: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        return "\n\n".join(self.parts)


@dataclass(slots=True)
class ChatRequest:
    model: str
    turns: list[Turn]
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    stream: bool = False
    show_reasoning: bool = True
    include_usage: bool = False
    image_config: dict[str, Any] | None = None
    video_config: dict[str, Any] | None = None
    family: str = "openai"  # "openai" | "responses" | "anthropic"
    max_tokens: int | None = None  # answer budget (reasoning + text), enforced by TurnAssembler
    stop: tuple[str, ...] = ()  # stop sequences, enforced by TurnAssembler
    output_format: OutputFormat | None = None  # response_format / text.format (structured.py)

    @property
    def attachments(self) -> list[Attachment]:
        return [a for t in self.turns for a in t.attachments]

    @property
    def last_user_text(self) -> str:
        """The prompt for image/video models dispatched through a chat endpoint."""
        for turn in reversed(self.turns):
            if turn.role == "user" and turn.parts:
                return turn.text
        return ""

    @property
    def tools_active(self) -> bool:
        return bool(self.tools) and self.tool_choice.mode != "none"


# --------------------------------------------------------------------------- validation helpers
# Shared by the three parsers: each names the offending parameter the way the client wrote it.


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def bad_type(param: str, expected: str, value: Any) -> InvalidRequest:
    exc = InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)}.",
        param=param,
        code="invalid_type",
    )
    exc.expected = expected  # type: ignore[attr-defined]  # for the Anthropic wording (anthropic.py)
    return exc


def req_str(obj: dict, key: str, param: str, *, required: bool = False, nonempty: bool = False) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise bad_type(param, "a string", value)
    if nonempty and not value.strip():
        raise InvalidRequest(f"'{param}' must not be empty.", param=param)
    return value


def opt_bool(obj: dict, key: str, param: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise bad_type(param, "a boolean", value)
    return value


def opt_number(obj: dict, key: str, param: str, lo: float | None = None, hi: float | None = None) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_type(param, "a number", value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidRequest(
            f"Invalid value for '{param}': {value} is out of range; it must be between {lo:g} and {hi:g}.",
            param=param,
        )
    return float(value)


def opt_int(obj: dict, key: str, param: str, lo: int | None = None, *, required: bool = False) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_type(param, "an integer", value)
    if lo is not None and value < lo:
        raise InvalidRequest(f"Invalid value for '{param}': {value}; it must be at least {lo}.", param=param)
    return value


def opt_dict(obj: dict, key: str, param: str) -> dict | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_type(param, "an object", value)
    return value


def opt_list(obj: dict, key: str, param: str) -> list | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_type(param, "an array", value)
    return value


MAX_STOP_CHARS = 1000  # per stop sequence: the stream holds back at most this much text


def opt_stop(obj: dict, key: str, param: str, *, max_items: int, allow_string: bool = True) -> tuple[str, ...]:
    """Stop sequences: a string (chat) or an array of strings, at most `max_items`, each bounded."""
    value = obj.get(key)
    if value is None:
        return ()
    if allow_string and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_type(param, "a string or an array of strings" if allow_string else "an array of strings", value)
    if len(value) > max_items:
        raise InvalidRequest(f"Invalid value for '{param}': at most {max_items} stop sequences are allowed, "
                             f"got {len(value)}.", param=param)
    for i, seq in enumerate(value):
        if len(seq) > MAX_STOP_CHARS:
            raise InvalidRequest(f"Invalid value for '{param}[{i}]': a stop sequence is limited to "
                                 f"{MAX_STOP_CHARS} characters.", param=f"{param}[{i}]")
    return tuple(dict.fromkeys(v for v in value if v))


def require_body(body: Any) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", param=None, code="invalid_json")
    return body


def decode_base64(data: str, param: str) -> bytes:
    """Inline file data, held to the one attachment cap (refused before decoding when too long)."""
    return attachment_base64_decode(text=data, param=param)


def parse_data_uri(uri: str, param: str) -> tuple[str, bytes]:
    """`data:<mime>[;base64],<payload>` → (mime, bytes). Only base64 payloads are accepted."""
    head, sep, payload = uri.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise InvalidRequest(f"Invalid data URI in '{param}': expected data:<mime>;base64,<data>.", param=param)
    mime = head[5:-7].split(";")[0] or "application/octet-stream"
    return mime, decode_base64(payload, param)


_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp", "application/pdf": "pdf",
        "text/plain": "txt", "audio/wav": "wav", "audio/mpeg": "mp3"}


def image_attachment(url: str, param: str, index: int) -> Attachment:
    """An image given as a data URI (decoded now) or an http(s) URL (fetched later, SSRF-guarded)."""
    if url.startswith("data:"):
        mime, data = parse_data_uri(url, param)
        return Attachment("image", mime, f"image-{index}.{_EXT.get(mime, 'bin')}", data=data, param=param)
    if url.startswith(("http://", "https://")):
        return Attachment("image", "", f"image-{index}", url=url, param=param)
    raise InvalidRequest(f"Unsupported image URL in '{param}': use an https URL or a base64 data URI.", param=param)


def file_name_for(mime: str, index: int, kind: str = "file") -> str:
    return f"{kind}-{index}.{_EXT.get(mime, 'bin')}"


# --------------------------------------------------------------------------- flattening (docs/upstream-protocol.md §4.3)


def strip_sources(text: str) -> str:
    """Drop the "## Sources" block the gateway itself appended to an earlier answer."""
    at = text.find(SOURCES_MARKER)
    if at < 0:
        return text
    if at > 0 and text[at - 1] != "\n":
        return text  # not at a line start: the marker is quoted, keep it
    return text[:at].rstrip()


def flatten(req: ChatRequest) -> str:
    from gateway.translate.tools import calls_to_xml, tool_prompt

    blocks: list[str] = []
    if req.tools_active:
        blocks.append(f"[system]: {tool_prompt(req.tools, req.tool_choice)}")
    for turn in req.turns:
        role = turn.role
        if role == "tool":
            blocks.append(f"[tool result for {turn.tool_call_id or ''}]:\n{turn.text}")
            continue
        parts = turn.parts
        if role == "assistant":
            parts = [p for p in (strip_sources(p) for p in parts) if p]
        if turn.tool_calls:
            xml = calls_to_xml(turn.tool_calls)
            head = parts[:-1]
            last = parts[-1] if parts else ""
            blocks.extend(f"[{role}]: {p}" for p in head)
            blocks.append(f"[{role}]: {last}\n{xml}" if last else f"[{role}]:\n{xml}")
            continue
        blocks.extend(f"[{role}]: {p}" for p in parts)
    if req.output_format is not None and req.output_format.active:
        from gateway.translate.structured import format_prompt

        blocks.append(f"[system]: {format_prompt(req.output_format, tools=req.tools_active)}")  # last: the rule nearest to the answer
    return "\n\n".join(blocks)
